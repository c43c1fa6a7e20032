package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tiercache/tiercache/bench"
)

// commands are the subcommands, in the order `tiercache help` lists them
// (help itself is run by run, and listed last).
func commands() []command {
	return []command{benchCommand, hotCommand, inspectCommand, warmupCommand, versionCommand}
}

func main() {
	if bench.IsWorker() { // `bench --processes` re-executes this binary as a replica
		os.Exit(bench.ServeWorker())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the CLI, testable: it returns the exit code (0 done, 1 the work
// failed, 2 the command line is wrong).
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help":
		return helpCmd(args[1:], stdout, stderr)
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "tiercache: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.execute(args[1:], stdout, stderr)
}
