package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const acmeWeb = "../../examples/acme/web"

// TestAcmeFrontEndIsFresh: the example's committed TypeScript module is what
// bridge types --format ts prints for its descriptor set, and its committed
// JavaScript is what the pinned TypeScript compiler makes of the page
// (checked when the compiler is installed, as .ci/run does).
func TestAcmeFrontEndIsFresh(t *testing.T) {
	t.Parallel()
	const rebuild = "run bash examples/acme/web/build.sh"
	module, err := typesCLI(t, "--format", "ts", "--descriptor-set", acmeSet, "acme.billing.v1.*")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join(acmeWeb, "bridge-events.ts"))
	if err != nil {
		t.Fatal(err)
	}
	if module != string(committed) {
		t.Errorf("examples/acme/web/bridge-events.ts is not what bridge types --format ts prints: %s", rebuild)
	}

	tsc, err := filepath.Abs("../../.ci/node/node_modules/.bin/tsc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tsc); err != nil {
		t.Skip("no TypeScript compiler in .ci/node: run npm install --prefix .ci/node typescript@5.9.3 (as .ci/run does) to check the compiled page")
	}
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), tsc, "-p", acmeWeb, "--outDir", out)
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		t.Fatalf("tsc -p examples/acme/web: %v\n%s", err, msg.String())
	}
	for _, name := range []string{"app.js", "bridge-events.js"} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(acmeWeb, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("examples/acme/web/%s is not what tsc makes of the page: %s", name, rebuild)
		}
	}
}
