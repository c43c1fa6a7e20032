package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tiercache/tiercache/bench"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"bench", "run the benchmark scenarios for tiercache and its peers, and write the report", benchCmd},
		{"hot", "show a namespace's hottest keys in the fleet, with their scores", hotCmd},
		{"warmup", "warm a Redis before a deploy: copy the hot set's keys (or a file's) from a source Redis", warmupCmd},
		{"help", "list the subcommands", func(_ []string, stdout, _ io.Writer) int { usage(stdout); return 0 }},
	}
}

func main() {
	if bench.IsWorker() { // `bench --processes` re-executes this binary as a replica
		os.Exit(bench.ServeWorker())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" {
		name = "help"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tiercache: unknown subcommand %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tiercache <subcommand> [flags]\n\nsubcommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'tiercache <subcommand> -h' for its flags.")
}
