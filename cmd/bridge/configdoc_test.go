package main

import (
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write docs/configuration.md from the flags")

// configDocPath is the configuration reference, from this package's
// directory.
const configDocPath = "../../docs/configuration.md"

// TestConfigDoc: docs/configuration.md is what the flags make of it, so it
// lists every flag with its current default and meaning.
func TestConfigDoc(t *testing.T) {
	want := configMarkdown()
	if *update {
		if err := os.WriteFile(configDocPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Parallel()
	got, err := os.ReadFile(configDocPath)
	if err != nil {
		t.Fatalf("%v: run go test ./cmd/bridge -run TestConfigDoc -update", err)
	}
	if string(got) != want {
		t.Errorf("%s is not what the flags make of it (first difference at line %d): run go test ./cmd/bridge -run TestConfigDoc -update",
			configDocPath, firstDifference(string(got), want))
	}
}

// firstDifference is the number of the first line where a and b differ.
func firstDifference(a, b string) int {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(al), len(bl)) {
		if al[i] != bl[i] {
			return i + 1
		}
	}
	return min(len(al), len(bl)) + 1
}

// TestConfigDocLinks: each entry of the contents links to a heading of the
// document, and every flag of --help has a row.
func TestConfigDocLinks(t *testing.T) {
	t.Parallel()
	doc := configMarkdown()
	headings := map[string]bool{}
	for line := range strings.Lines(doc) {
		if title, ok := strings.CutPrefix(strings.TrimSpace(line), "## "); ok {
			headings[anchor(title)] = true
		}
	}
	links := regexp.MustCompile(`(?m)^- \[[^]]+\]\(#([^)]+)\)$`).FindAllStringSubmatch(doc, -1)
	if len(links) < len(serveGroups) {
		t.Errorf("contents has %d entries, want at least %d", len(links), len(serveGroups))
	}
	for _, l := range links {
		if !headings[l[1]] {
			t.Errorf("contents links to #%s, which is no heading", l[1])
		}
	}
	for _, g := range serveGroups {
		for _, name := range g.flags {
			if !strings.Contains(doc, "| `--"+name+" ") && !strings.Contains(doc, "| `--"+name+"` ") {
				t.Errorf("no row for --%s", name)
			}
		}
	}
}

func TestAnchor(t *testing.T) {
	t.Parallel()
	for title, want := range map[string]string{
		"Listeners":             "listeners",
		"Subscriber auth":       "subscriber-auth",
		"Typed events and JSON": "typed-events-and-json",
		"Typed events / JSON":   "typed-events--json",
		"The Go runtime":        "the-go-runtime",
	} {
		if got := anchor(title); got != want {
			t.Errorf("anchor(%q) = %q, want %q", title, got, want)
		}
	}
}
