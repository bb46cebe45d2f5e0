package main

import (
	"bytes"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sse-bridge/bridge/internal/bridge"
)

func TestCgroupMemoryLimit(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name     string
		fs       fstest.MapFS
		want     int64 // 0: no limit
		wantFile string
	}{
		{
			name: "v2, container with its own cgroup namespace",
			fs:   fstest.MapFS{"proc/self/cgroup": file("0::/\n"), "sys/fs/cgroup/memory.max": file("1073741824\n")},
			want: 1 << 30, wantFile: "sys/fs/cgroup/memory.max",
		},
		{
			name: "v2, no limit",
			fs:   fstest.MapFS{"proc/self/cgroup": file("0::/\n"), "sys/fs/cgroup/memory.max": file("max\n")},
		},
		{
			name: "v2, nested: the lowest limit on the way up",
			fs: fstest.MapFS{
				"proc/self/cgroup":                          file("0::/kubepods/pod1/c1\n"),
				"sys/fs/cgroup/kubepods/pod1/c1/memory.max": file("max\n"),
				"sys/fs/cgroup/kubepods/pod1/memory.max":    file("536870912\n"),
				"sys/fs/cgroup/kubepods/memory.max":         file("2147483648\n"),
			},
			want: 512 << 20, wantFile: "sys/fs/cgroup/kubepods/pod1/memory.max",
		},
		{
			name: "v2, the named cgroup is not mounted there: the root's file",
			fs: fstest.MapFS{
				"proc/self/cgroup":         file("0::/system.slice/docker-abc.scope\n"),
				"sys/fs/cgroup/memory.max": file("268435456\n"),
			},
			want: 256 << 20, wantFile: "sys/fs/cgroup/memory.max",
		},
		{
			name: "v1",
			fs: fstest.MapFS{
				"proc/self/cgroup":                           file("5:devices:/docker/abc\n4:memory:/docker/abc\n0::/\n"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes": file("536870912\n"),
			},
			want: 512 << 20, wantFile: "sys/fs/cgroup/memory/memory.limit_in_bytes",
		},
		{
			name: "v1, controllers mounted together",
			fs: fstest.MapFS{
				"proc/self/cgroup": file("3:cpu,memory:/app\n"),
				"sys/fs/cgroup/memory/app/memory.limit_in_bytes": file("104857600\n"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes":     file("9223372036854771712\n"),
			},
			want: 100 << 20, wantFile: "sys/fs/cgroup/memory/app/memory.limit_in_bytes",
		},
		{
			name: "v1, no limit",
			fs: fstest.MapFS{
				"proc/self/cgroup": file("4:memory:/process_api/x\n0::/\n"),
				"sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": file("9223372036854771712\n"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes":               file("9223372036854771712\n"),
			},
		},
		{
			name: "a limit file that does not parse",
			fs:   fstest.MapFS{"proc/self/cgroup": file("0::/\n"), "sys/fs/cgroup/memory.max": file("lots\n")},
		},
		{
			name: "no cgroup file",
			fs:   fstest.MapFS{"sys/fs/cgroup/memory.max": file("1073741824\n")},
		},
		{
			name: "a path that tries to climb out",
			fs: fstest.MapFS{
				"proc/self/cgroup":         file("0::/../../etc\n"),
				"sys/fs/cgroup/memory.max": file("1073741824\n"),
				"etc/memory.max":           file("1\n"),
			},
			want: 1 << 30, wantFile: "sys/fs/cgroup/memory.max",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, file, ok := cgroupMemoryLimit(tt.fs)
			if ok != (tt.want != 0) || got != tt.want && ok || file != tt.wantFile {
				t.Errorf("cgroupMemoryLimit() = %d, %q, %t; want %d, %q, %t", got, file, ok, tt.want, tt.wantFile, tt.want != 0)
			}
		})
	}
}

// TestSetMemoryLimit is not parallel: it sets the process's Go memory
// limit (and puts it back).
func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	cgroup := fstest.MapFS{
		"proc/self/cgroup":         &fstest.MapFile{Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": &fstest.MapFile{Data: []byte("1073741824\n")},
	}
	tests := []struct {
		name    string
		env     map[string]string
		root    fstest.MapFS
		engine  string
		history int64
		want    int64 // the Go memory limit after
		tune    bool  // Config.TuneMemoryLimit after
		logs    []string
	}{
		{
			name: "90% of the cgroup's", root: cgroup, history: 256 << 20,
			want: 1 << 30 / 100 * 90, tune: true, logs: []string{"Go memory limit set to 90% of the cgroup's", "bytes=966367620", "file=/sys/fs/cgroup/memory.max"},
		},
		{
			name: "GOMEMLIMIT wins", env: map[string]string{"GOMEMLIMIT": "512MiB"}, root: cgroup, history: 256 << 20,
			want: math.MaxInt64, logs: []string{"Go memory limit set by GOMEMLIMIT"},
		},
		{
			name: "no cgroup limit: nothing set, the bridge tunes it", root: fstest.MapFS{}, history: 256 << 20,
			want: math.MaxInt64, tune: true,
		},
		{
			name: "NATS: no history to tune for", engine: bridge.EngineNATS, root: fstest.MapFS{}, history: 256 << 20,
			want: math.MaxInt64,
		},
		{
			name: "history over half the limit", root: cgroup, history: 600 << 20,
			want: 1 << 30 / 100 * 90, tune: true, logs: []string{"level=WARN", "--history-memory (629145600 bytes) is more than half the Go memory limit (966367620 bytes)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64) // as a process starts, the runtime's own GOMEMLIMIT aside
			var logs bytes.Buffer
			cfg := bridge.DefaultConfig()
			cfg.HistoryMemory = tt.history
			if tt.engine != "" {
				cfg.Engine = tt.engine
			}
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			setMemoryLimit(lookup, tt.root, &cfg)
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Errorf("Go memory limit = %d, want %d", got, tt.want)
			}
			if cfg.TuneMemoryLimit != tt.tune {
				t.Errorf("TuneMemoryLimit = %t, want %t", cfg.TuneMemoryLimit, tt.tune)
			}
			for _, want := range tt.logs {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("logs %q, want them to contain %q", logs.String(), want)
				}
			}
			if len(tt.logs) == 0 && logs.Len() > 0 {
				t.Errorf("logs %q, want none", logs.String())
			}
		})
	}
}
