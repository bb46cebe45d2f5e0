package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

const versionUsage = `Usage: bridge version (or bridge --version)

Prints the version of the bridge, the commit it was built from (with
"modified" when the checkout had changes) and the Go that built it:
  bridge v1.2.3 (revision 0123abcd4567, modified, built with go1.26.8)
A bridge built from a checkout has a pseudo-version or (devel).
`

// printVersion is `bridge version` and `bridge --version`.
func printVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		if args[0] == "--help" || args[0] == "-h" || args[0] == "-help" {
			_, _ = io.WriteString(stdout, versionUsage)
			return nil
		}
		return &exitError{code: exitCommandLine, err: errors.New("bridge version takes no arguments")}
	}
	info, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprintln(stdout, versionString(info))
	return err
}

// versionString describes a build: the main module's version ("(devel)"
// when there is none), the VCS revision, shortened, and whether the tree
// had changes, and the Go version. info may be nil (no build information).
func versionString(info *debug.BuildInfo) string {
	version, goVersion := "(devel)", "unknown Go"
	var details []string
	if info != nil {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		var revision, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if revision != "" {
			details = append(details, "revision "+revision[:min(len(revision), 12)])
		}
		if modified == "true" {
			details = append(details, "modified")
		}
	}
	details = append(details, "built with "+goVersion)
	return "bridge " + version + " (" + strings.Join(details, ", ") + ")"
}
