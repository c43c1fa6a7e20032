package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// The command line is parsed here for every subcommand alike, so they all
// behave the same way: flags may come before, between or after the
// arguments; -h and --help print the command's usage on stdout and exit 0;
// mistakes are listed one per line on stderr, each naming the flag and the
// fix, and exit 2; a failure of the work itself exits 1.

// command is one subcommand.
type command struct {
	name string
	// synopsis follows the name in the usage line: "--namespace NS KEY…".
	synopsis string
	summary  string // one line, for the list of commands
	about    string // what `tiercache help <name>` says after the usage line
	// define declares the command's flags on fs and returns what runs the
	// command once they are parsed.
	define func(fs *flag.FlagSet) action
}

// action runs a command whose flags are parsed; it returns the exit code.
type action func(inv *invocation) int

// invocation is one run of a command: its positional arguments and where
// it writes.
type invocation struct {
	name           string
	args           []string
	stdout, stderr io.Writer
}

// usageErrors reports mistakes in the command line, one per line, and
// returns exit code 2. Each problem says which flag and how to fix it.
func (inv *invocation) usageErrors(problems ...string) int {
	for _, p := range problems {
		fmt.Fprintf(inv.stderr, "tiercache %s: %s\n", inv.name, p)
	}
	fmt.Fprintf(inv.stderr, "Run 'tiercache help %s' for its usage.\n", inv.name)
	return 2
}

// fail reports a failure of the command's work and returns exit code 1.
func (inv *invocation) fail(err error) int {
	fmt.Fprintf(inv.stderr, "tiercache %s: %v\n", inv.name, err)
	return 1
}

// noArgs is the problem of arguments given to a command that takes only
// flags; "" when there are none.
func (inv *invocation) noArgs() string {
	if len(inv.args) == 0 {
		return ""
	}
	return fmt.Sprintf("unexpected argument %q: %s takes flags only", inv.args[0], inv.name)
}

// namespaceFlagOn declares the --namespace flag; needNamespace checks it.
func namespaceFlagOn(fs *flag.FlagSet) *string {
	return fs.String("namespace", "", "the cache's namespace `NS` (required)")
}

// needNamespace is the problem of a missing --namespace; "" when it is
// given.
func (inv *invocation) needNamespace(ns string) string {
	if ns != "" {
		return ""
	}
	return "--namespace is required: give the cache's namespace, e.g. --namespace svc:users"
}

// namespaceOnly is needNamespace for a command that takes no arguments: a
// stray argument without --namespace is most likely the namespace meant
// (tiercache hot svc:users), so the fix names it.
func (inv *invocation) namespaceOnly(ns string) string {
	switch {
	case ns != "":
		return inv.noArgs()
	case len(inv.args) > 0:
		return fmt.Sprintf("--namespace is required: did you mean --namespace %s?", inv.args[0])
	}
	return inv.needNamespace(ns)
}

// problems drops the empty entries of a list of problems.
func problems(list ...string) []string {
	var out []string
	for _, p := range list {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// execute parses args for c and runs it.
func (c *command) execute(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported below, in the CLI's words
	act := c.define(fs)
	inv := &invocation{name: c.name, stdout: stdout, stderr: stderr}
	pos, err := parseAnyOrder(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.help(stdout, fs)
		return 0
	}
	if err != nil {
		return inv.usageErrors(flagError(err, fs))
	}
	inv.args = pos
	return act(inv)
}

// parseAnyOrder parses flags wherever they stand among the arguments: the
// flag package stops at the first argument, and `inspect KEY --json` is
// as natural as `inspect --json KEY`. After "--" everything is an
// argument.
func parseAnyOrder(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		used := len(args) - fs.NArg()
		if fs.NArg() == 0 || used > 0 && args[used-1] == "--" {
			return append(pos, fs.Args()...), nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// flagError rewords the flag package's errors: "-x" becomes "--x", and an
// unknown flag lists the command's flags.
func flagError(err error, fs *flag.FlagSet) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Sprintf("unknown flag --%s: the flags of %s are %s", strings.TrimLeft(name, "-"), fs.Name(), flagNames(fs))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		name = strings.TrimLeft(name, "-")
		return fmt.Sprintf("--%s needs a value: --%s %s", name, name, valueName(fs.Lookup(name)))
	}
	return strings.ReplaceAll(msg, " -", " --")
}

func flagNames(fs *flag.FlagSet) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// valueName is what a flag's value is called in its usage (its usage's
// `NAME`, or its type); "" for a boolean flag.
func valueName(f *flag.Flag) string {
	if f == nil {
		return "VALUE"
	}
	name, _ := flag.UnquoteUsage(f)
	return name
}

// help prints c's usage, what it does and its flags.
func (c *command) help(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: tiercache %s %s\n\n%s\n", c.name, c.synopsis, strings.TrimSpace(c.about))
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) == 0 {
		return
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	fmt.Fprintln(w, "\nflags (before or after the arguments):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		switch f.DefValue {
		case "", "0", "false", "0s":
		default:
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  --%s %s\t%s\n", f.Name, name, usage)
	}
	tw.Flush()
}

// helpCmd is `tiercache help [command]`.
func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "tiercache help: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.define(fs)
	c.help(stdout, fs)
	return 0
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tiercache <command> [flags] [arguments]\n\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  help\tshow a command's usage and flags: tiercache help <command>\n")
	tw.Flush()
	fmt.Fprintln(w, "\nRedis is given by --redis (or $REDIS_URL) as host:port, redis://[user:pass@]host:port[/db],\nor rediss://… for TLS. Run 'tiercache help <command>' (or 'tiercache <command> -h') for its flags.")
}
