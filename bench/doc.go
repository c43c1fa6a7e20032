// Package bench runs tiercache side by side with its peers on the same
// workloads, against one Redis, and writes the report: a terminal table,
// Markdown, JSON (every run's figures, machine, versions, flags, seeds) and
// an HTML page with charts.
//
// Every candidate implements Replica; a scenario builds N replicas of a
// candidate, each with its own Redis client (its own connections), as N
// service replicas would have. Scenarios: localhit, zipf and zipf-100k (the
// "zipf" family), coherence, stampede, warmup, deploy, failover; and
// ZipfShape makes the zipf workload in a shape of the caller's.
//
// Repeated runs (Config.Runs): each figure is reported as the median of its
// runs with their range, and flagged when the runs disagree by more than
// 20 %; tiercache is compared with the best peer's median, in words.
//
// The fleet scenarios (zipf, zipf-100k, coherence, stampede, deploy,
// failover) drive each replica through a worker: a goroutine group of this
// process, or with Config.Processes an OS process of its own (the running
// binary re-executed; its main must call IsWorker and ServeWorker first).
// The bench and its workers talk over pipes either way (wire.go), so the two
// modes differ by the process boundary alone. The workload's source of
// truth lives in the bench process (source.go): versions are fleet-wide and
// stale reads are judged after each run against its log of completed writes.
//
// This is a nested module (its own go.mod): the peers' libraries
// (go-redis/cache) never reach the go.mod of the tiercache library. The
// bench may import every room of the library; nothing imports the bench but
// the CLI.
package bench
