// Package bench runs tiercache side by side with its peers on the same
// workloads, against one Redis, and writes the report: a terminal table,
// Markdown, JSON (raw figures, versions, machine) and an HTML page with
// charts.
//
// Every candidate implements Replica; a scenario builds N replicas of a
// candidate, each with its own Redis client (its own connections), as N
// service replicas would have. Scenarios: localhit, zipf, coherence,
// stampede, warmup, failover.
//
// This is a nested module (its own go.mod): the peers' libraries
// (go-redis/cache) and the charting library never reach the go.mod of the
// tiercache library.
package bench
