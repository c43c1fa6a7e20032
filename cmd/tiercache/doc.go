// Command tiercache is the tiercache CLI:
//
//	tiercache bench    run the benchmark scenarios side by side with the peers
//	tiercache hot      show a namespace's hottest keys
//	tiercache inspect  show what Redis holds for cache keys (remote.Inspect)
//	tiercache warmup   copy the hot set's keys from a source Redis to a target
//	tiercache version  print the CLI's, the library's and Go's versions
//	tiercache help     list the commands, or show one's usage
//
// Every command parses its command line the same way (cmdline.go) and
// reaches Redis the same way (redis.go): --redis takes host:port or a
// redis:// or rediss:// URL, $REDIS_URL is the default, and a Redis that
// does not answer a PING within 3 s is one error line and exit code 1.
//
// `tiercache bench --processes` runs each replica of the fleet scenarios as
// this same binary, re-executed: main hands such a process to
// bench.ServeWorker before it reads any argument.
//
// It is a module of its own, so the CLI's dependencies (the peers'
// libraries) never reach the go.mod of the library. It may import every
// package of tiercache.
package main
