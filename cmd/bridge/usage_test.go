package main

import (
	"flag"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// runCLI runs the command line args as main does, with env as the whole
// environment, and returns what it wrote and its exit status. It must not be
// given a command line that starts a bridge.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut strings.Builder
	code = run(t.Context(), args, stdio{
		stdin:     strings.NewReader(""),
		stdout:    &out,
		stderr:    &errOut,
		lookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	return out.String(), errOut.String(), code
}

// commandLines are the command lines whose flags --help shows in groups,
// with the flags each hides on purpose.
func commandLines() map[string]struct {
	cmd    *cmdLine
	hidden func(string) bool
} {
	none := func(string) bool { return false }
	return map[string]struct {
		cmd    *cmdLine
		hidden func(string) bool
	}{
		"bridge":  {&newServeFlags().cmd, func(name string) bool { _, old := deprecatedFlags[name]; return old }},
		"publish": {newPublishCmdLine(&publishArgs{}), none},
		"tail":    {newTailCmdLine(&tailArgs{}), none},
	}
}

// TestEveryFlagHasOneGroup: every flag is under exactly one heading of
// --help, but the deprecated names, which are under none.
func TestEveryFlagHasOneGroup(t *testing.T) {
	t.Parallel()
	for name, c := range commandLines() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			seen := map[string]int{}
			for _, g := range c.cmd.groups {
				for _, f := range g.flags {
					seen[f]++
					if c.cmd.fs.Lookup(f) == nil {
						t.Errorf("group %q lists %q, which is no flag", g.title, f)
					}
				}
			}
			c.cmd.fs.VisitAll(func(f *flag.Flag) {
				switch n := seen[f.Name]; {
				case c.hidden(f.Name) && n > 0:
					t.Errorf("--%s is hidden, but group lists it", f.Name)
				case !c.hidden(f.Name) && n == 0:
					t.Errorf("--%s is in no group: add it to one (serveGroups in flags.go)", f.Name)
				case n > 1:
					t.Errorf("--%s is in %d groups, want one", f.Name, n)
				}
			})
		})
	}
}

func TestHelpGoesToStdout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string // how stdout starts
	}{
		{[]string{"--help"}, "Usage: bridge [serve]"},
		{[]string{"-h"}, "Usage: bridge [serve]"},
		{[]string{"-help"}, "Usage: bridge [serve]"},
		{[]string{"help"}, "Usage: bridge [serve]"},
		{[]string{"help", "serve"}, "Usage: bridge [serve]"},
		{[]string{"serve", "--help"}, "Usage: bridge [serve]"},
		{[]string{"--grpc-addr", ":0", "--help"}, "Usage: bridge [serve]"},
		{[]string{"publish", "--help"}, "Usage: bridge publish"},
		{[]string{"publish", "-h"}, "Usage: bridge publish"},
		{[]string{"help", "publish"}, "Usage: bridge publish"},
		{[]string{"tail", "--help"}, "Usage: bridge tail"},
		{[]string{"help", "tail"}, "Usage: bridge tail"},
		{[]string{"hash-token", "--help"}, "Usage: bridge hash-token"},
		{[]string{"help", "hash-token"}, "Usage: bridge hash-token"},
		{[]string{"help", "version"}, "Usage: bridge version"},
		{[]string{"help", "config-markdown"}, "# Configuration\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, nil, tc.args...)
			if code != 0 || stderr != "" || !strings.HasPrefix(stdout, tc.want) {
				t.Errorf("exit %d, stderr %q, stdout %.60q...; want exit 0, no stderr, stdout starting %q", code, stderr, stdout, tc.want)
			}
		})
	}
}

// TestHelpShowsEveryFlag: each command's --help shows its groups in order,
// and under them each flag as --name ARG, its usage, its environment
// variable (when it has one) and its default.
func TestHelpShowsEveryFlag(t *testing.T) {
	t.Parallel()
	for name, c := range commandLines() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			c.cmd.printHelp(&b)
			help := b.String()
			at := 0
			for _, g := range c.cmd.groups {
				i := strings.Index(help[at:], "\n"+g.title+":\n")
				if i < 0 {
					t.Fatalf("help has no heading %q after offset %d:\n%s", g.title, at, help)
				}
				at += i + 1
				for _, fname := range g.flags {
					f := c.cmd.fs.Lookup(fname)
					arg, usage := flagArg(f)
					entry := "  --" + f.Name + arg + "\n"
					i := strings.Index(help[at:], entry)
					if i < 0 {
						t.Fatalf("help has no %q under %q, in order", entry, g.title)
					}
					at += i + len(entry)
					end := strings.Index(help[at:], "\n  --")
					if end < 0 {
						end = len(help) - at
					}
					body := strings.Join(strings.Fields(help[at:at+end]), " ")
					want := strings.Join(strings.Fields(usage), " ")
					if c.cmd.env != nil && c.cmd.env(f.Name) != "" {
						want += " env " + c.cmd.env(f.Name) + ","
					}
					want += " default " + flagDefault(f)
					if !strings.HasPrefix(body, want) {
						t.Errorf("--%s shows %q, want %q", f.Name, body, want)
					}
				}
			}
			for line := range strings.Lines(help) {
				if len(line) > helpWidth+1 && strings.HasPrefix(line, "      ") && strings.Contains(strings.TrimSpace(line), " ") {
					t.Errorf("line longer than %d columns: %q", helpWidth, line)
				}
			}
		})
	}
}

// singleDash finds a flag written -name, as Go's flag package writes it.
var singleDash = regexp.MustCompile(`(^|[\s"(])-[a-z]`)

// TestCommandLineMistakes: a mistake on the command line (or in a BRIDGE_*
// variable) is at most three lines on stderr that say what is wrong, by
// example where a value does not parse, suggest a close flag and where to
// look; flags are always --name.
func TestCommandLineMistakes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string // stderr, exactly
	}{
		{
			name: "unknown flag, one close",
			args: []string{"--htp-addr", "x"},
			code: exitCommandLine,
			want: "bridge: unknown flag --htp-addr\nbridge: did you mean --http-addr?\nbridge: see bridge --help\n",
		},
		{
			name: "unknown flag, given with a single dash",
			args: []string{"-htp-addr=x"},
			code: exitCommandLine,
			want: "bridge: unknown flag --htp-addr\nbridge: did you mean --http-addr?\nbridge: see bridge --help\n",
		},
		{
			name: "unknown flag, part of one",
			args: []string{"--replicas", "3"},
			code: exitCommandLine,
			want: "bridge: unknown flag --replicas\nbridge: did you mean --nats-replicas?\nbridge: see bridge --help\n",
		},
		{
			name: "unknown flag, none close",
			args: []string{"--colour"},
			code: exitCommandLine,
			want: "bridge: unknown flag --colour\nbridge: see bridge --help\n",
		},
		{
			name: "unknown command",
			args: []string{"pubish"},
			code: exitCommandLine,
			want: "bridge: unknown command \"pubish\"\nbridge: did you mean bridge publish?\nbridge: see bridge --help\n",
		},
		{
			name: "duration",
			args: []string{"--heartbeat", "5"},
			code: exitCommandLine,
			want: "bridge: invalid value \"5\" for --heartbeat: a duration such as 15s, 500ms or 1m30s\nbridge: see bridge --help\n",
		},
		{
			name: "integer",
			args: []string{"--queue-size", "many"},
			code: exitCommandLine,
			want: "bridge: invalid value \"many\" for --queue-size: an integer such as 1000\nbridge: see bridge --help\n",
		},
		{
			name: "integer out of range",
			args: []string{"--queue-size", "99999999999999999999"},
			code: exitCommandLine,
			want: "bridge: invalid value \"99999999999999999999\" for --queue-size: out of range for an integer such as 1000\nbridge: see bridge --help\n",
		},
		{
			name: "bytes",
			args: []string{"--max-payload", "64k"},
			code: exitCommandLine,
			want: "bridge: invalid value \"64k\" for --max-payload: a number of bytes such as 65536\nbridge: see bridge --help\n",
		},
		{
			name: "float",
			args: []string{"--connect-rate", "fast"},
			code: exitCommandLine,
			want: "bridge: invalid value \"fast\" for --connect-rate: a number such as 1000 or 0.5\nbridge: see bridge --help\n",
		},
		{
			name: "bool",
			args: []string{"--eager-streams=maybe"},
			code: exitCommandLine,
			want: "bridge: invalid value \"maybe\" for --eager-streams: true or false\nbridge: see bridge --help\n",
		},
		{
			name: "choice",
			args: []string{"--log-format", "xml"},
			code: exitCommandLine,
			want: "bridge: invalid value \"xml\" for --log-format: one of text, json\nbridge: see bridge --help\n",
		},
		{
			name: "no value",
			args: []string{"--heartbeat"},
			code: exitCommandLine,
			want: "bridge: --heartbeat needs a value: a duration such as 15s, 500ms or 1m30s\nbridge: see bridge --help\n",
		},
		{
			name: "bool value as its own argument",
			args: []string{"--eager-streams", "false"},
			code: exitCommandLine,
			want: "bridge: unexpected argument \"false\"\nbridge: did you mean --eager-streams=false? (the value of an on/off flag goes after =)\nbridge: see bridge --help\n",
		},
		{
			name: "duration variable",
			env:  map[string]string{"BRIDGE_HEARTBEAT": "5"},
			code: exitCommandLine,
			want: "bridge: BRIDGE_HEARTBEAT=\"5\": a duration such as 15s, 500ms or 1m30s\nbridge: see bridge --help\n",
		},
		{
			name: "bytes variable",
			env:  map[string]string{"BRIDGE_MAX_HEADER_BYTES": "32KiB"},
			code: exitCommandLine,
			want: "bridge: BRIDGE_MAX_HEADER_BYTES=\"32KiB\": a number of bytes such as 65536\nbridge: see bridge --help\n",
		},
		{
			name: "level variable",
			env:  map[string]string{"BRIDGE_LOG_LEVEL": "loud"},
			code: exitCommandLine,
			want: "bridge: BRIDGE_LOG_LEVEL=\"loud\": one of debug, info, warn, error\nbridge: see bridge --help\n",
		},
		{
			name: "settings that do not go together",
			args: []string{"--tls-cert", "cert.pem"},
			code: exitCommandLine,
			want: "bridge: TLS certificate (--tls-cert) and key (--tls-key) go together: set both or neither\n",
		},
		{
			name: "publish: unknown flag",
			args: []string{"publish", "--strem", "orders", "1"},
			code: exitUsage,
			want: "bridge: unknown flag --strem\nbridge: did you mean --stream?\nbridge: see bridge publish --help\n",
		},
		{
			name: "publish: duration",
			args: []string{"publish", "--timeout", "10", "--stream", "orders", "1"},
			code: exitUsage,
			want: "bridge: invalid value \"10\" for --timeout: a duration such as 15s, 500ms or 1m30s\nbridge: see bridge publish --help\n",
		},
		{
			name: "publish: no stream",
			args: []string{"publish", "1"},
			code: exitUsage,
			want: "bridge: give --stream and exactly one PAYLOAD argument (or none, to read one event per line from stdin)\nbridge: see bridge publish --help\n",
		},
		{
			name: "tail: unknown flag",
			args: []string{"tail", "--last-event", "5", "--stream", "orders"},
			code: exitUsage,
			want: "bridge: unknown flag --last-event\nbridge: did you mean --last-event-id?\nbridge: see bridge tail --help\n",
		},
		{
			name: "tail: integer",
			args: []string{"tail", "--count", "all", "--stream", "orders"},
			code: exitUsage,
			want: "bridge: invalid value \"all\" for --count: an integer such as 1000\nbridge: see bridge tail --help\n",
		},
		{
			name: "tail: bool value as its own argument",
			args: []string{"tail", "--stream", "orders", "--reconnect", "false"},
			code: exitUsage,
			want: "bridge: give at least one --stream and no other arguments\nbridge: did you mean --reconnect=false? (the value of an on/off flag goes after =)\nbridge: see bridge tail --help\n",
		},
		{
			name: "hash-token: unknown flag",
			args: []string{"hash-token", "--hlep"},
			code: exitUsage,
			want: "bridge: unknown flag --hlep\nbridge: did you mean --help?\nbridge: see bridge hash-token --help\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, tc.env, tc.args...)
			if code != tc.code || stderr != tc.want || stdout != "" {
				t.Errorf("bridge %q: exit %d, stderr:\n%s\nstdout %q; want exit %d, stderr:\n%s", tc.args, code, stderr, stdout, tc.code, tc.want)
			}
			if n := strings.Count(stderr, "\n"); n > 3 {
				t.Errorf("%d lines on stderr, want at most 3", n)
			}
			if singleDash.MatchString(stderr) {
				t.Errorf("stderr names a flag -name, want --name:\n%s", stderr)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	names := []string{"http-addr", "grpc-addr", "nats-replicas", "nats-url", "nats-user", "tls-cert", "tls-key", "jwks", "jwks-ca", "stream", "help"}
	for _, tc := range []struct {
		typed string
		want  []string
		names []string // instead of names
	}{
		{"htp-addr", []string{"http-addr"}, nil},
		{"HTTP-ADDR", []string{"http-addr"}, nil},
		{"http_addr", []string{"http-addr"}, nil},
		{"grcp-addr", []string{"grpc-addr"}, nil},
		{"stram", []string{"stream"}, nil},
		{"jwk", []string{"jwks"}, nil},
		{"nats-usr", []string{"nats-user"}, nil},
		{"nats-ur", []string{"nats-url"}, nil},
		{"nats-use", []string{"nats-user", "nats-uses"}, []string{"nats-user", "nats-uses"}}, // two equally close: both
		{"nats-use", nil, []string{"nats-user", "nats-uses", "nats-used"}},                   // three: none
		{"replicas", []string{"nats-replicas"}, nil},                                         // a part of one
		{"http-address", []string{"http-addr"}, nil},                                         // one is a prefix of it
		{"tls", nil, nil},  // a prefix of several
		{"nats", nil, nil}, // a prefix of several, and far from the rest
		{"colour", nil, nil},
		{"x", nil, nil}, // one letter is close to nothing
		{"addr", nil, nil},
	} {
		t.Run(tc.typed, func(t *testing.T) {
			t.Parallel()
			from := names
			if tc.names != nil {
				from = tc.names
			}
			if got := suggest(tc.typed, from); !slices.Equal(got, tc.want) {
				t.Errorf("suggest(%q) = %q, want %q", tc.typed, got, tc.want)
			}
		})
	}
}

func TestLevenshtein(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "abc", 0}, {"htp-addr", "http-addr", 1},
		{"kitten", "sitting", 3}, {"nats", "jwks", 3}, {"grcp", "grpc", 2},
	} {
		if got := levenshtein(tc.a, tc.b); got != tc.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestShortDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"1h0m0s": "1h", "2m0s": "2m", "1h30m0s": "1h30m", "1h0m5s": "1h0m5s", "10s": "10s", "0s": "0s", "1m30s": "1m30s"} {
		if got := shortDuration(in); got != want {
			t.Errorf("shortDuration(%q) = %q, want %q", in, got, want)
		}
	}
}
