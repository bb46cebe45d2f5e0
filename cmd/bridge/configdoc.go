package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
)

// configDocIntro opens the configuration reference, docs/configuration.md.
const configDocIntro = `# Configuration

<!-- Generated from the flags of cmd/bridge (flags.go) by bridge help config-markdown.
     Edit the flags, then run: go test ./cmd/bridge -run TestConfigDoc -update -->

Every setting of ` + "`bridge`" + ` (the same as ` + "`bridge serve`" + `), in the groups of
` + "`bridge --help`" + `, which prints the same list. The other commands are in
[the command line](cli.md).

- **Flag or environment.** Every flag can also be set with an environment variable:
  ` + "`BRIDGE_`" + ` and the flag's name in upper snake case, so ` + "`--grpc-addr`" + ` is
  ` + "`BRIDGE_GRPC_ADDR`" + `. A flag on the command line wins over the environment.
  Secrets are better in the environment or in files than in flags, which show in ` + "`ps`" + `.
- **Values.** Durations are written as in Go: ` + "`15s`, `500ms`, `1m30s`, `1h`" + `. Sizes
  are numbers of bytes (` + "`65536`" + `). An on/off flag is on when given alone
  (` + "`--eager-streams`" + `) and off with ` + "`=false`" + ` (` + "`--eager-streams=false`" + `, or
  ` + "`BRIDGE_EAGER_STREAMS=false`" + `). The flags that take a list (` + "`--descriptor-set`" + `,
  ` + "`--public-streams`" + `, ` + "`--trusted-proxies`" + `) may be repeated, or take items
  separated by commas, which is how their variables list them; ` + "`--cors-origins`" + ` and
  ` + "`--nats-url`" + ` take commas.
- **Zero and negative.** An empty or zero value stands for the default, as if the flag
  were not given (` + "`--heartbeat 0`" + ` is 15s); where the default is zero, zero means
  off (` + "`--max-connections-per-ip`" + `, ` + "`--drain-delay`" + `). For the limits on counts
  and rates, a negative value turns the limit off (` + "`--max-connections -1`" + `);
  ` + "`--jwt-leeway`" + ` below zero allows no clock skew, and ` + "`--tls-reload-interval`" + ` below
  zero reloads on SIGHUP only. Other sizes and durations must not be negative.
- **Mistakes.** An unknown flag, a value that does not parse, or settings that do not go
  together stop the bridge before it starts, with exit status 2. A value that does not
  parse is named with an example of one that does; settings that do not go together are
  all reported at once.
`

// configMarkdown is the configuration reference, docs/configuration.md,
// made from the flags of `bridge` and their groups.
func configMarkdown() string {
	s := newServeFlags()
	var b strings.Builder
	b.WriteString(configDocIntro)
	b.WriteString("\n## Contents\n\n")
	for _, g := range s.cmd.groups {
		fmt.Fprintf(&b, "- [%s](#%s)\n", g.title, anchor(g.title))
	}
	fmt.Fprintf(&b, "- [%s](#%s)\n", deprecatedTitle, anchor(deprecatedTitle))
	fmt.Fprintf(&b, "- [%s](#%s)\n", runtimeTitle, anchor(runtimeTitle))

	for _, g := range s.cmd.groups {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", g.title, g.about)
		b.WriteString("| flag | environment variable | default | meaning |\n| --- | --- | --- | --- |\n")
		for _, name := range g.flags {
			f := s.cmd.fs.Lookup(name)
			arg, usage := flagArg(f)
			def := flagDefault(f)
			if def != "none" {
				def = "`" + def + "`"
			}
			fmt.Fprintf(&b, "| `--%s%s` | `%s` | %s | %s |\n", f.Name, arg, envName(f.Name), def, markdownText(usage))
		}
	}

	fmt.Fprintf(&b, "\n## %s\n\n", deprecatedTitle)
	b.WriteString("These names still work, with a warning at start, and are left out of `--help`. A\n" +
		"flag on the command line, under either name, wins over both variables, and the\n" +
		"current name's variable wins over the deprecated one's.\n\n")
	b.WriteString("| deprecated | use instead |\n| --- | --- |\n")
	for _, old := range slices.Sorted(maps.Keys(deprecatedFlags)) {
		current := deprecatedFlags[old]
		fmt.Fprintf(&b, "| `--%s`, `%s` | `--%s`, `%s` |\n", old, envName(old), current, envName(current))
	}

	fmt.Fprintf(&b, "\n## %s\n\n", runtimeTitle)
	fmt.Fprintf(&b, "While it serves, the bridge sets the garbage collector's target to `GOGC=%d`, unless\n"+
		"`GOGC` is set: most of its heap is the state of connections that live for minutes, and\n"+
		"at Go's default of 100 a reconnect storm spends much of each connect re-scanning it.\n"+
		"Set `GOGC=100` to trade that CPU for a smaller heap headroom, or `GOMEMLIMIT` to cap\n"+
		"the heap.\n\n"+
		"Under a cgroup memory limit (a container's: cgroup v2 `memory.max`, v1\n"+
		"`memory.limit_in_bytes`), it sets the Go memory limit to %d%% of it, unless `GOMEMLIMIT`\n"+
		"is set, and logs it: near the limit the collector works harder rather than let the\n"+
		"kernel kill the process. History (`--history-memory`) is part of that heap; it warns\n"+
		"when the history budget is more than half the limit.\n\n"+
		"With the memory engine and no `GOMEMLIMIT`, it also keeps the Go memory limit just\n"+
		"above what is live, history counted once and everything else with `GOGC`'s headroom\n"+
		"(under the cgroup's limit, when there is one), so that a full history is not tripled\n"+
		"by `GOGC`. `GOMEMLIMIT=off` turns that off. Sizing and figures:\n"+
		"[operations](operations.md#memory).\n", serveGCPercent, memoryLimitPercent)
	return b.String()
}

// The sections of the configuration reference after the groups.
const (
	deprecatedTitle = "Deprecated names"
	runtimeTitle    = "The Go runtime"
)

// anchor is the fragment a Markdown heading gets on GitHub: lower case,
// punctuation dropped, spaces as hyphens.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// markdownText escapes the characters of plain text that mean something in
// a Markdown table cell.
var markdownText = strings.NewReplacer("|", `\|`, "*", `\*`, "<", "&lt;", "`", "\\`").Replace
