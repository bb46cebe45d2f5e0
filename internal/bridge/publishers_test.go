package bridge_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// hashToken is a publisher token's token_sha256.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// pubEntry is one publishers file entry, as the file spells it.
type pubEntry struct {
	Name        string   `json:"name,omitempty"`
	TokenSHA256 string   `json:"token_sha256,omitempty"`
	Cert        string   `json:"cert,omitempty"`
	Streams     []string `json:"streams,omitempty"`
	Rate        float64  `json:"rate,omitempty"`
	Burst       int      `json:"burst,omitempty"`
	Read        []string `json:"read,omitempty"`
}

// writePublishers writes a publishers file of entries and returns its path.
func writePublishers(t *testing.T, entries ...pubEntry) string {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"publishers": entries})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "publishers.json", string(raw))
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPublishersFileErrors: a bad publishers file stops the bridge from
// starting, with a message naming the file, the entry and what to fix.
func TestPublishersFileErrors(t *testing.T) {
	t.Parallel()
	good := hashToken("orders-token")
	for _, tc := range []struct {
		name    string
		content string
		want    []string
	}{
		{"bad JSON", `{"publishers": [{"name": "a",}]}`, []string{"not valid", "invalid character"}},
		{"not an object", `[{"name": "a"}]`, []string{"not valid", `{"publishers": [`}},
		{"no publishers list", `{}`, []string{`no "publishers" list`}},
		{"trailing data", `{"publishers": []} {}`, []string{"data after the JSON object"}},
		{"unknown field", `{"publishers": [{"name": "a", "token_sha265": "x", "streams": ["a"]}]}`, []string{`unknown field "token_sha265"`}},
		{"hash too short", `{"publishers": [{"name": "orders-svc", "token_sha256": "abc123", "streams": ["orders"]}]}`,
			[]string{`entry 1 ("orders-svc")`, "64 hex digits", "got 6 characters", "sha256sum"}},
		{"hash not hex", `{"publishers": [{"name": "orders-svc", "token_sha256": "` + strings.Repeat("z", 64) + `", "streams": ["orders"]}]}`,
			[]string{`entry 1 ("orders-svc")`, "not all hex digits"}},
		{"token in clear", `{"publishers": [{"name": "a", "token_sha256": "` + good + `", "streams": ["a"]}, {"name": "b", "token_sha256": "s3cret-token", "streams": ["b"]}]}`,
			[]string{`entry 2 ("b")`, "64 hex digits"}},
		{"bad pattern", `{"publishers": [{"name": "orders-svc", "token_sha256": "` + good + `", "streams": ["orders.>.x"]}]}`,
			[]string{`entry 1 ("orders-svc")`, `stream pattern "orders.>.x" is invalid`}},
		{"duplicate names", `{"publishers": [{"name": "svc", "token_sha256": "` + good + `", "streams": ["a"]}, {"name": "svc", "cert": "svc.example", "streams": ["b"]}]}`,
			[]string{`entry 2 ("svc")`, `name "svc" is also the name of entry 1`}},
		{"duplicate tokens", `{"publishers": [{"name": "a", "token_sha256": "` + good + `", "streams": ["a"]}, {"name": "b", "token_sha256": "` + strings.ToUpper(good) + `", "streams": ["b"]}]}`,
			[]string{`entry 2 ("b")`, "also the token of entry 1"}},
		{"duplicate certs", `{"publishers": [{"name": "a", "cert": "svc.example", "streams": ["a"]}, {"name": "b", "cert": "svc.example", "streams": ["b"]}]}`,
			[]string{`entry 2 ("b")`, `cert "svc.example" is also the cert of "a"`}},
		{"neither token nor cert", `{"publishers": [{"name": "orders-svc", "streams": ["orders"]}]}`,
			[]string{`entry 1 ("orders-svc")`, "no credential", "token_sha256", "cert"}},
		{"both token and cert", `{"publishers": [{"name": "orders-svc", "token_sha256": "` + good + `", "cert": "x", "streams": ["orders"]}]}`,
			[]string{`entry 1 ("orders-svc")`, "both token_sha256 and cert"}},
		{"no name", `{"publishers": [{"token_sha256": "` + good + `", "streams": ["orders"]}]}`,
			[]string{"entry 1:", "no name"}},
		{"no streams", `{"publishers": [{"name": "orders-svc", "token_sha256": "` + good + `"}]}`,
			[]string{`entry 1 ("orders-svc")`, "no streams"}},
		{"negative rate", `{"publishers": [{"name": "orders-svc", "token_sha256": "` + good + `", "streams": ["orders"], "rate": -1}]}`,
			[]string{`entry 1 ("orders-svc")`, "rate must be"}},
		{"burst without rate", `{"publishers": [{"name": "orders-svc", "token_sha256": "` + good + `", "streams": ["orders"], "burst": 5}]}`,
			[]string{`entry 1 ("orders-svc")`, "burst without rate"}},
		{"every problem reported", `{"publishers": [{"name": "a", "streams": ["a"]}, {"name": "b", "cert": "b", "streams": ["b c"]}]}`,
			[]string{`entry 1 ("a"): no credential`, `entry 2 ("b"): stream pattern "b c"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, "publishers.json", tc.content)
			_, err := bridge.New(bridge.Config{Publishers: file})
			if err == nil {
				t.Fatalf("New with publishers file %s = nil error, want one", tc.content)
			}
			for _, w := range append([]string{"publishers file " + file}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestPublishersFileMissing(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "nope.json")
	_, err := bridge.New(bridge.Config{Publishers: file})
	if err == nil || !strings.Contains(err.Error(), "publishers file") || !strings.Contains(err.Error(), file) {
		t.Errorf("New with a missing publishers file = %v, want an error naming it", err)
	}
}

func TestPublisherConfigErrors(t *testing.T) {
	t.Parallel()
	key := writeFile(t, "key", string(testHMACKey))
	pubs := writePublishers(t, pubEntry{Name: "a", TokenSHA256: hashToken("a"), Streams: []string{"a"}})
	for _, tc := range []struct {
		name string
		cfg  bridge.Config
		want string
	}{
		{"publisher JWTs without a key", bridge.Config{PublisherJWT: true}, "set --jwt-key too"},
		{"insecure with publishers", bridge.Config{GRPCInsecure: true, Publishers: pubs}, "drop --grpc-insecure"},
		{"insecure with publisher JWTs", bridge.Config{GRPCInsecure: true, PublisherJWT: true, JWTKey: key}, "drop --grpc-insecure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
