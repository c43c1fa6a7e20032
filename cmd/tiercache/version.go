package main

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"text/tabwriter"
)

// libraryModule is the module whose version decides what the CLI reads and
// writes in Redis.
const libraryModule = "github.com/tiercache/tiercache"

var versionCommand = command{
	name:    "version",
	summary: "print the CLI's and the library's versions and the Go version",
	about: `
The CLI's module version, the tiercache library it was built with (a
"replaced by" path when built from a checkout), the Go version, and the
source revision when the build recorded one. Include it in bug reports.`,
	define: func(fs *flag.FlagSet) action {
		return func(inv *invocation) int {
			if p := inv.noArgs(); p != "" {
				return inv.usageErrors(p)
			}
			tw := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', 0)
			for _, l := range versionLines() {
				fmt.Fprintf(tw, "%s\t%s\n", l[0], l[1])
			}
			tw.Flush()
			return 0
		}
	},
}

// versionLines are the label and value of each line of `tiercache version`.
func versionLines() [][2]string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return [][2]string{{"tiercache", "unknown (built without module information)"}, {"go", runtime.Version()}}
	}
	out := [][2]string{{"tiercache", moduleVersion(&bi.Main)}}
	for _, d := range bi.Deps {
		if d.Path == libraryModule {
			out = append(out, [2]string{"library", moduleVersion(d)})
		}
	}
	out = append(out, [2]string{"go", bi.GoVersion})
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		if settings["vcs.modified"] == "true" {
			rev += " (modified)"
		}
		if t := settings["vcs.time"]; t != "" {
			rev += ", " + t
		}
		out = append(out, [2]string{"revision", rev})
	}
	return out
}

func moduleVersion(m *debug.Module) string {
	v := m.Version
	if v == "" {
		v = "(devel)"
	}
	if m.Replace != nil {
		v += " replaced by " + m.Replace.Path
		if m.Replace.Version != "" && m.Replace.Version != "(devel)" {
			v += " " + m.Replace.Version
		}
	}
	return v
}
