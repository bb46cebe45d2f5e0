package load

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestParseProc(t *testing.T) {
	t.Parallel()
	// A command name may hold spaces and parentheses.
	stat := []byte("4242 (a) (b c) S 1 4242 4242 0 -1 4194560 1000 0 0 0 731 269 0 0 20 0 9 0 123 1000000 500 18446744073709551615\n")
	if ticks, err := parseStatCPU(stat); err != nil || ticks != 1000 {
		t.Errorf("parseStatCPU = %d, %v; want 731+269 = 1000", ticks, err)
	}
	if _, err := parseStatCPU([]byte("4242 (a) S 1")); err == nil {
		t.Error("parseStatCPU of a short line: want an error")
	}
	status := []byte("Name:\tbridge\nVmPeak:\t  100 kB\nVmRSS:\t   53424 kB\nThreads:\t9\n")
	if kib, err := parseVMRSS(status); err != nil || kib != 53424 {
		t.Errorf("parseVMRSS = %d, %v; want 53424", kib, err)
	}
	if _, err := parseVMRSS([]byte("Name:\tz\n")); err == nil {
		t.Error("parseVMRSS without VmRSS: want an error")
	}
}

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// user nice system idle iowait irq softirq steal guest guest_nice
	b := []byte("cpu  100 5 50 1000 7 1 9 3 40 2\ncpu0 50 2 25 500 3 0 4 1 20 1\n")
	if d, err := parseProcStat(b); err != nil || d != 1650*time.Millisecond {
		t.Errorf("parseProcStat = %v, %v; want (100+5+50+1+9) ticks = 1.65s", d, err)
	}
	if _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("parseProcStat without a cpu line: want an error")
	}
}

func TestSampleProc(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	for _, pid := range []int{0, os.Getpid()} {
		s, err := sampleProc(pid)
		if err != nil || s.rssKiB <= 0 {
			t.Errorf("sampleProc(%d) = %+v, %v; want a positive RSS", pid, s, err)
		}
	}
	if _, err := sampleProc(1 << 30); err == nil {
		t.Error("sampleProc of no process: want an error")
	}
}
