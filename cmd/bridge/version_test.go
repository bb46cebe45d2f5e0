package main

import (
	"regexp"
	"runtime/debug"
	"testing"
)

// versionLine is the form of `bridge version`: the version, then in
// parentheses the revision and whether the tree was modified, when known,
// and the Go version.
var versionLine = regexp.MustCompile(`^bridge (\(devel\)|v\S+) \((revision [0-9a-f]{1,12}, )?(modified, )?built with go\S+\)\n$`)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}, {"serve", "--version"}} {
		t.Run(args[len(args)-1], func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runCLI(t, nil, args...)
			if code != 0 || stderr != "" || !versionLine.MatchString(stdout) {
				t.Errorf("bridge %q: exit %d, stdout %q, stderr %q; want exit 0 and a line matching %s", args, code, stdout, stderr, versionLine)
			}
		})
	}
	if _, stderr, code := runCLI(t, nil, "version", "extra"); code != exitCommandLine || stderr == "" {
		t.Errorf("bridge version extra: exit %d, stderr %q; want exit %d and an error", code, stderr, exitCommandLine)
	}
}

func TestVersionString(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{
			name: "release",
			info: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs("0123abcd4567890fedcba0123abcd4567890fedc", "false")},
			want: "bridge v1.2.3 (revision 0123abcd4567, built with go1.26.8)",
		},
		{
			name: "modified checkout",
			info: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123abcd4567890fedcba0123abcd4567890fedc", "true")},
			want: "bridge (devel) (revision 0123abcd4567, modified, built with go1.26.8)",
		},
		{
			name: "no VCS information",
			info: &debug.BuildInfo{GoVersion: "go1.26.8"},
			want: "bridge (devel) (built with go1.26.8)",
		},
		{
			name: "no build information",
			want: "bridge (devel) (built with unknown Go)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := versionString(tc.info); got != tc.want {
				t.Errorf("versionString = %q, want %q", got, tc.want)
			}
			if tc.info != nil && !versionLine.MatchString(versionString(tc.info)+"\n") {
				t.Errorf("%q does not match %s", versionString(tc.info), versionLine)
			}
		})
	}
}
