package main

import (
	"bufio"
	"bytes"
	"io/fs"
	"math"
	"path"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// memoryLimitPercent is the share of its cgroup's memory limit the bridge
// gives the Go runtime as its memory limit (GOMEMLIMIT), unless GOMEMLIMIT
// is set. Past that limit Go collects more often rather than let the heap
// grow into the cgroup's limit, where the kernel would kill the process.
// The rest is for what Go does not count: the kernel's socket buffers of
// every connection (charged to the cgroup), the binary, and slack for the
// limit being soft.
const memoryLimitPercent = 90

// noCgroupLimit: a cgroup v1 without a limit reports a number near
// math.MaxInt64 (9223372036854771712), not "max" as v2 does.
const noCgroupLimit = math.MaxInt64 / 2

// setMemoryLimit gives Go a memory limit of memoryLimitPercent of the
// memory limit of the process's cgroup, read under root (the file system's
// root; nil means none is read), unless GOMEMLIMIT is set; it logs what it
// did, and warns when cfg's history budget leaves little of that limit for
// the rest.
func setMemoryLimit(lookup func(string) (string, bool), root fs.FS, cfg *bridge.Config) {
	log := cfg.Logger
	_, userLimit := lookup("GOMEMLIMIT")
	if userLimit {
		log.Info("Go memory limit set by GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
	} else if root != nil {
		if limit, file, ok := cgroupMemoryLimit(root); ok {
			goLimit := limit / 100 * memoryLimitPercent
			debug.SetMemoryLimit(goLimit)
			log.Info("Go memory limit set to 90% of the cgroup's (set GOMEMLIMIT to choose another)", "bytes", goLimit, "cgroup_bytes", limit, "file", "/"+file)
		}
	}
	// Without a limit of the operator's, the memory engine's bridge keeps
	// Go's limit just above what is live, so that GOGC does not multiply a
	// full history (Config.TuneMemoryLimit); the cgroup's stays the ceiling.
	cfg.TuneMemoryLimit = !userLimit && (cfg.Engine == bridge.EngineMemory || cfg.Engine == "")
	if warning := historyMemoryWarning(cfg, debug.SetMemoryLimit(-1)); warning != "" {
		log.Warn(warning)
	}
}

// historyMemoryWarning says why the history budget of cfg does not fit a
// Go memory limit of goLimit bytes, or nothing when it fits: history is
// part of the heap, and connections, their buffers and the runtime need
// the rest (docs/operations.md: "Memory").
func historyMemoryWarning(cfg *bridge.Config, goLimit int64) string {
	if cfg.Engine != bridge.EngineMemory || goLimit == math.MaxInt64 || cfg.HistoryMemory <= goLimit/2 {
		return ""
	}
	return "--history-memory (" + strconv.FormatInt(cfg.HistoryMemory, 10) + " bytes) is more than half the Go memory limit (" +
		strconv.FormatInt(goLimit, 10) + " bytes): connections and the runtime need the rest, and near the limit Go spends its time collecting; lower --history-memory or raise the memory limit"
}

// cgroupMemoryLimit returns the memory limit of the cgroup the process runs
// in, read under root: for cgroup v2, memory.max of the process's cgroup
// (from proc/self/cgroup) and of each cgroup above it, the lowest; for v1,
// memory.limit_in_bytes of the memory hierarchy, the same way. In a
// container the cgroup file system usually shows the container's own cgroup
// at its root, whatever path proc/self/cgroup names: the path's directories
// that do not exist are skipped, so the root's file still counts. file is
// the one the limit was read from; ok is false when no cgroup sets one.
func cgroupMemoryLimit(root fs.FS) (limit int64, file string, ok bool) {
	self, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0, "", false
	}
	limit = math.MaxInt64
	consider := func(dir, name string) {
		for {
			f := path.Join(dir, name)
			if n, found := readLimit(root, f); found && n < limit {
				limit, file = n, f
			}
			if !strings.Contains(dir, "/") || dir == "sys/fs/cgroup" || dir == "sys/fs/cgroup/memory" {
				return
			}
			dir = path.Dir(dir)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		// hierarchy-ID:controllers:path; v2 is 0::PATH.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		cgroup := strings.TrimPrefix(path.Clean("/"+parts[2]), "/")
		switch {
		case parts[0] == "0" && parts[1] == "":
			consider(path.Join("sys/fs/cgroup", cgroup), "memory.max")
		case containsWord(parts[1], "memory"):
			consider(path.Join("sys/fs/cgroup/memory", cgroup), "memory.limit_in_bytes")
		}
	}
	return limit, file, limit < math.MaxInt64
}

// readLimit reads a cgroup memory limit file; found is false when it does
// not exist, does not parse, or says there is no limit.
func readLimit(root fs.FS, file string) (n int64, found bool) {
	b, err := fs.ReadFile(root, file)
	if err != nil {
		return 0, false
	}
	n, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= noCgroupLimit { // "max", or v1's near-MaxInt64
		return 0, false
	}
	return n, true
}

// containsWord reports whether the comma-separated list holds word.
func containsWord(list, word string) bool {
	for w := range strings.SplitSeq(list, ",") {
		if w == word {
			return true
		}
	}
	return false
}
