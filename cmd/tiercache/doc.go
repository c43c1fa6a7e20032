// Command tiercache is the tiercache CLI:
//
//	tiercache bench    run the benchmark scenarios side by side with the peers
//	tiercache hot      show a namespace's hottest keys
//	tiercache warmup   copy the hot set's keys from a source Redis to a target
//	tiercache help     list the subcommands
//
// `tiercache bench --processes` runs each replica of the fleet scenarios as
// this same binary, re-executed: main hands such a process to
// bench.ServeWorker before it reads any argument.
//
// It is a module of its own, so the CLI's dependencies (the peers'
// libraries) never reach the go.mod of the library.
package main
