package load

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

// procSample is a process's resident memory and CPU time at one moment.
type procSample struct {
	at     time.Time
	rssKiB int64
	cpu    time.Duration // user + system
}

// sampleProc reads /proc/pid/status (VmRSS) and /proc/pid/stat (utime and
// stime). pid 0 means this process.
func sampleProc(pid int) (procSample, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	s := procSample{at: time.Now()}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, fmt.Errorf("read process status: %w", err)
	}
	if s.rssKiB, err = parseVMRSS(status); err != nil {
		return s, err
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, fmt.Errorf("read process stat: %w", err)
	}
	ticks, err := parseStatCPU(stat)
	if err != nil {
		return s, err
	}
	s.cpu = time.Duration(ticks) * time.Second / clockTicks
	return s, nil
}

// sampleMachine returns the CPU time all processors spent busy since boot,
// from /proc/stat: user, nice, system, irq and softirq (not idle, iowait,
// steal, which another virtual machine used, nor guest, already in user).
func sampleMachine() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 6 || string(f[0]) != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // steal, guest, guest_nice
			break
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// parseVMRSS returns the VmRSS line of /proc/PID/status in KiB.
func parseVMRSS(status []byte) (int64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, errors.New("no VmRSS in process status (a zombie?)")
}

// parseStatCPU returns utime+stime of /proc/PID/stat in clock ticks. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed process stat")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("malformed process stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed process stat: %w", err)
	}
	return utime + stime, nil
}
