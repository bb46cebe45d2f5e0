package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// cmdLine is one command's command line: its flags, how --help shows them,
// and how a mistake on it is reported. Every command shows its flags in the
// same style, --name ARG, and names them that way in every error.
type cmdLine struct {
	name   string // as typed: "bridge", "bridge publish"
	intro  string // --help's text before the flags, ending in a newline
	fs     *flag.FlagSet
	groups []flagGroup
	// env is the environment variable of a flag, shown in --help; "" for
	// none. Nil means no flag has one.
	env func(flagName string) string
	// extra are the words the command accepts besides its flags (help,
	// version), offered as suggestions for a mistyped flag.
	extra []string
	// code is the exit status of a mistake on the command line.
	code int
}

// flagGroup is a heading of --help (and a section of the configuration
// reference), with the flags under it in the order shown. A flag in no group
// is hidden: only the deprecated names are.
type flagGroup struct {
	title string
	about string // what the group is for, in the configuration reference
	flags []string
}

// parse parses args. It returns nil, flag.ErrHelp for -h, -help or --help,
// or an error for people, in the --name style: what is wrong, a flag
// that is close to a mistyped one, and where to look.
func (c *cmdLine) parse(args []string) error {
	c.fs.SetOutput(io.Discard) // flag's own messages are replaced by ours
	c.fs.Usage = func() {}
	err := c.fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg, hint := c.explain(err)
	return c.mistake(msg, hint)
}

// mistake is the error of a mistake on the command line: msg, then hint
// when there is one, then where the command's flags are listed, each on a
// line of its own.
func (c *cmdLine) mistake(msg, hint string) error {
	lines := []string{msg}
	if hint != "" {
		lines = append(lines, hint)
	}
	lines = append(lines, "see "+c.name+" --help")
	return &exitError{code: c.code, err: errors.New(strings.Join(lines, "\n"))}
}

// flagValueError matches flag's errors about a value: `invalid value "V"
// for flag -NAME: ERR` and `invalid boolean value "V" for -NAME: ERR`.
var flagValueError = regexp.MustCompile(`(?s)^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-(\S+?): (.*)$`)

// explain turns an error of flag.FlagSet.Parse into a message and a hint,
// naming flags --name.
func (c *cmdLine) explain(err error) (msg, hint string) {
	s := err.Error()
	if name, ok := strings.CutPrefix(s, "flag provided but not defined: -"); ok {
		if near := suggest(name, c.names()); len(near) > 0 {
			hint = "did you mean --" + strings.Join(near, " or --") + "?"
		}
		return "unknown flag --" + name, hint
	}
	if name, ok := strings.CutPrefix(s, "flag needs an argument: -"); ok {
		msg = "--" + name + " needs a value"
		if f := c.fs.Lookup(name); f != nil {
			if ex := valueExample(f); ex != "" {
				msg += ": " + ex
			}
		}
		return msg, ""
	}
	if m := flagValueError.FindStringSubmatch(s); m != nil {
		value, name, why := m[1], m[2], m[3]
		if f := c.fs.Lookup(name); f != nil {
			why = valueProblem(f, why)
		}
		return fmt.Sprintf("invalid value %s for --%s: %s", value, name, why), ""
	}
	return s, "" // "bad flag syntax: ---x" says what it means
}

// names are the flags (but the deprecated names) and extra words of c.
func (c *cmdLine) names() []string {
	var names []string
	for _, g := range c.groups {
		names = append(names, g.flags...)
	}
	return append(names, c.extra...)
}

// valueProblem says what is wrong with a value flag f refused with the
// error text why (flag's "parse error" or "value out of range", or the
// flag's own message): an example of a good value where there is one.
func valueProblem(f *flag.Flag, why string) string {
	ex := valueExample(f)
	switch {
	case ex == "":
		return why
	case why == "value out of range":
		return "out of range for " + ex
	default:
		return ex
	}
}

// valueExample describes the values a flag takes, by example ("a duration
// such as 15s, 500ms or 1m30s"); "" for a flag of another kind, whose
// Set says what is wrong itself.
func valueExample(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return "a duration such as 15s, 500ms or 1m30s"
	case bool:
		return "true or false"
	case int, int64, uint, uint64:
		if arg, _ := flag.UnquoteUsage(f); arg == "bytes" {
			return "a number of bytes such as 65536"
		}
		return "an integer such as 1000"
	case float64:
		return "a number such as 1000 or 0.5"
	}
	return ""
}

// suggest returns the names close to typed, a flag name that does not
// exist: the closest within an edit distance of 2 (1 for names of 2 or 3
// letters, none for one letter), else the one name that typed is a prefix
// or a part of (or that is a prefix of typed). None when nothing is close or
// too many are.
func suggest(typed string, names []string) []string {
	typed = strings.ToLower(typed)
	limit := min(2, utf8.RuneCountInString(typed)/2)
	best, near := limit+1, []string(nil)
	for _, n := range names {
		switch d := levenshtein(typed, n); {
		case d > limit:
		case d < best:
			best, near = d, []string{n}
		case d == best:
			near = append(near, n)
		}
	}
	if len(near) > 0 && len(near) <= 2 {
		return near
	}
	if len(near) > 0 {
		return nil // several equally close: none is a good guess
	}
	for _, match := range []func(n string) bool{
		func(n string) bool { return strings.HasPrefix(n, typed) || strings.HasPrefix(typed, n) },
		func(n string) bool { return strings.Contains(n, typed) },
	} {
		var found []string
		for _, n := range names {
			if match(n) {
				found = append(found, n)
			}
		}
		if len(found) == 1 {
			return found
		}
		if len(found) > 1 {
			return nil
		}
	}
	return nil
}

// levenshtein is the edit distance between a and b, in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// helpWidth is the width --help wraps its text to.
const helpWidth = 80

// printHelp writes c's --help: the intro, then each group's flags.
func (c *cmdLine) printHelp(w io.Writer) {
	var b strings.Builder
	b.WriteString(c.intro)
	for _, g := range c.groups {
		fmt.Fprintf(&b, "\n%s:\n", g.title)
		for _, name := range g.flags {
			f := c.fs.Lookup(name)
			arg, usage := flagArg(f)
			fmt.Fprintf(&b, "  --%s%s\n", f.Name, arg)
			wrap(&b, usage, "      ", helpWidth)
			var env string
			if c.env != nil {
				if v := c.env(f.Name); v != "" {
					env = "env " + v + ", "
				}
			}
			fmt.Fprintf(&b, "      %sdefault %s\n", env, flagDefault(f))
		}
	}
	_, _ = io.WriteString(w, b.String())
}

// flagArg is what follows --name in --help (" ARG", from the usage's
// back-quoted word; "" for a bool flag), and the usage without back quotes.
func flagArg(f *flag.Flag) (arg, usage string) {
	arg, usage = flag.UnquoteUsage(f)
	if arg != "" {
		arg = " " + strings.ToUpper(arg)
	}
	return arg, usage
}

// flagDefault is a flag's default as --help shows it: "none" for an empty
// one, a duration without its zero minutes and seconds (1h, not 1h0m0s).
func flagDefault(f *flag.Flag) string {
	if f.DefValue == "" {
		return "none"
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if _, ok := g.Get().(time.Duration); ok {
			return shortDuration(f.DefValue)
		}
	}
	return f.DefValue
}

// shortDuration drops the zero minutes and seconds time.Duration.String
// writes after hours or minutes: 1h0m0s is 1h, 2m0s is 2m.
func shortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// wrap writes text in lines of at most width columns (a longer word has
// one to itself), each starting with indent.
func wrap(b *strings.Builder, text, indent string, width int) {
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	if line != indent {
		b.WriteString(line + "\n")
	}
}
