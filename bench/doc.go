// Package bench holds the benchmark scenarios that run tiercache side by
// side with its peers against one Redis, and the reports they write. Peers'
// libraries live in a nested module so the library's go.mod stays lean.
//
// Until the scenarios land, `make bench` runs the packages' Go benchmarks
// (each starts its own throwaway redis-server). The room exists so the
// layout is fixed.
package bench
