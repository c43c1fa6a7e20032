// Command tiercache is the tiercache CLI:
//
//	tiercache bench    run the benchmark scenarios side by side with the peers
//	tiercache hot      show a namespace's hottest keys
//	tiercache warmup   copy the hot set's keys from a source Redis to a target
//	tiercache help     list the subcommands
//
// It is a module of its own, so the CLI's dependencies (the peers'
// libraries, charts) never reach the library's go.mod.
package main
