package bridge

import (
	"testing"

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
