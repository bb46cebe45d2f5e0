// Package docs_test checks the repository's Markdown: every relative link
// points at a file that exists, every #anchor at a heading of its file, and
// the README stays a short front door.
package docs_test

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// root is the repository, from this package's directory.
const root = ".."

// maxREADMELines keeps README.md a front door: the rest belongs in docs/.
const maxREADMELines = 250

var (
	// link matches [text](target) and ![alt](target); the target ends at
	// the first space or closing parenthesis (titles are not used here).
	link = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)
	// fence opens or closes a code block, whose contents are not Markdown.
	fence = regexp.MustCompile("^\\s*(```|~~~)")
)

// markdownFiles lists the repository's .md files, skipping what is not its
// own documentation (tool caches, generated trees).
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "gen" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// parsed is what one Markdown file offers and asks for.
type parsed struct {
	anchors map[string]bool
	links   []string
	lines   int
}

func parse(t *testing.T, path string) parsed {
	t.Helper()
	f, err := os.Open(path) // the repository's own files
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := parsed{anchors: map[string]bool{}}
	seen := map[string]int{}
	inCode := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.lines++
		if fence.MatchString(line) {
			inCode = !inCode
			continue
		}
		if inCode {
			continue
		}
		if h, ok := heading(line); ok {
			s := slug(h)
			if n := seen[s]; n > 0 {
				p.anchors[fmt.Sprintf("%s-%d", s, n)] = true
			} else {
				p.anchors[s] = true
			}
			seen[s]++
		}
		for _, m := range link.FindAllStringSubmatch(stripCodeSpans(line), -1) {
			p.links = append(p.links, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return p
}

// heading returns the text of an ATX heading line.
func heading(line string) (string, bool) {
	trimmed := strings.TrimLeft(line, "#")
	level := len(line) - len(trimmed)
	if level == 0 || level > 6 || !strings.HasPrefix(trimmed, " ") {
		return "", false
	}
	return strings.TrimSpace(trimmed), true
}

// slug is the anchor GitHub gives a heading: lower case, letters, digits,
// spaces as hyphens, hyphens and underscores kept, the rest dropped.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// stripCodeSpans removes `code` spans, which may hold brackets that are
// not links.
func stripCodeSpans(line string) string {
	var b strings.Builder
	in := false
	for _, r := range line {
		if r == '`' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestRelativeLinksResolve(t *testing.T) {
	t.Parallel()
	files := markdownFiles(t)
	docs := map[string]parsed{}
	for _, f := range files {
		docs[filepath.Clean(f)] = parse(t, f)
	}
	for _, f := range files {
		for _, target := range docs[filepath.Clean(f)].links {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := filepath.Clean(f)
			if path != "" {
				dest = filepath.Clean(filepath.Join(filepath.Dir(f), path))
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %q: %v", f, target, err)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			d, ok := docs[dest]
			if !ok {
				t.Errorf("%s: link %q: an anchor into a file that is not Markdown", f, target)
				continue
			}
			if !d.anchors[anchor] {
				t.Errorf("%s: link %q: %s has no heading with anchor #%s", f, target, dest, anchor)
			}
		}
	}
}

func TestREADMEIsAFrontDoor(t *testing.T) {
	t.Parallel()
	p := parse(t, filepath.Join(root, "README.md"))
	if p.lines > maxREADMELines {
		t.Errorf("README.md has %d lines, want at most %d: move details to docs/", p.lines, maxREADMELines)
	}
}

func TestSlug(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ heading, want string }{
		{"The r3labs/sse library: what the bridge works around", "the-r3labssse-library-what-the-bridge-works-around"},
		{"`bridge` and `bridge serve`", "bridge-and-bridge-serve"},
		{"1. Build the descriptor set", "1-build-the-descriptor-set"},
		{"HTTP/1.1 streams taken over from net/http", "http11-streams-taken-over-from-nethttp"},
	} {
		if got := slug(tc.heading); got != tc.want {
			t.Errorf("slug(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}
