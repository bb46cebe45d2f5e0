package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestDefaultConfig pins the contract the command line relies on: a zero
// Config validates to exactly DefaultConfig, and DefaultConfig is valid and
// left unchanged by Validate.
func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	ignore := cmp.Options{cmpopts.IgnoreFields(Config{}, "Logger"), cmp.AllowUnexported(Config{})}

	var zero Config
	if err := zero.Validate(); err != nil {
		t.Fatalf("Config{}.Validate() = %v, want nil", err)
	}
	def := DefaultConfig()
	if diff := cmp.Diff(def, zero, ignore); diff != "" {
		t.Errorf("Config{} after Validate differs from DefaultConfig() (-want +got):\n%s", diff)
	}
	if def.Logger != nil {
		t.Errorf("DefaultConfig().Logger = %v, want nil", def.Logger)
	}

	again := DefaultConfig()
	if err := again.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v, want nil", err)
	}
	if diff := cmp.Diff(def, again, ignore); diff != "" {
		t.Errorf("Validate changed DefaultConfig() (-want +got):\n%s", diff)
	}
	if def.GRPCAddr != ":50051" || def.HTTPAddr != ":8080" || def.Engine != EngineMemory || def.MaxConnections != 10_000 {
		t.Errorf("DefaultConfig() = %+v, want the documented names users type (:50051, :8080, memory, 10000)", def)
	}
}

func TestConfigHistoryMemory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want int64  // the budget after Validate, when valid
		err  string // part of the error, when not
	}{
		{name: "zero means the default", cfg: Config{}, want: 256 << 20},
		{name: "the floor", cfg: Config{HistoryMemory: 1 << 20}, want: 1 << 20},
		{name: "large", cfg: Config{HistoryMemory: 64 << 30}, want: 64 << 30},
		{name: "negative", cfg: Config{HistoryMemory: -1}, err: "history memory must not be negative"},
		{name: "under the floor", cfg: Config{HistoryMemory: 1<<20 - 1}, err: "must be at least 1048576 bytes (1 MiB)"},
		{name: "under 16 events of max payload", cfg: Config{HistoryMemory: 8 << 20, MaxPayload: 1 << 20}, err: "set it to at least 16777216, or lower --max-payload"},
		{name: "16 events of max payload", cfg: Config{HistoryMemory: 16 << 20, MaxPayload: 1 << 20}, want: 16 << 20},
		{name: "the default with a large max payload", cfg: Config{MaxPayload: 32 << 20}, err: "must hold at least 16 events of --max-payload"},
		{name: "nats ignores it", cfg: Config{Engine: EngineNATS, HistoryMemory: 1, MaxPayload: 32 << 20}, want: 1},
		{name: "nats: negative still an error", cfg: Config{Engine: EngineNATS, HistoryMemory: -1}, err: "history memory must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.err)
			case tt.err == "" && tt.cfg.HistoryMemory != tt.want:
				t.Errorf("HistoryMemory after Validate() = %d, want %d", tt.cfg.HistoryMemory, tt.want)
			}
		})
	}
}

func TestConfigPresence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		err  string // part of the error; empty when valid
	}{
		{name: "defaults", cfg: Config{}},
		{name: "timeout of three intervals", cfg: Config{PresenceInterval: time.Second, PresenceTimeout: 3 * time.Second}},
		{name: "timeout under three intervals", cfg: Config{PresenceInterval: 2 * time.Second}, err: "must be at least 3 times the presence interval"},
		{name: "negative", cfg: Config{PresenceEventInterval: -time.Second}, err: "must not be negative"},
		{name: "patterns", cfg: Config{PresenceEvents: []string{"room.*", "rooms.>"}}},
		{name: "invalid pattern", cfg: Config{PresenceEvents: []string{"room..x"}}, err: `presence events pattern "room..x" is invalid`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}
