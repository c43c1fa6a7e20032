// Package warmup makes a new replica serve its first requests from memory:
// it tracks the fleet's hot keys in Redis and preloads them into a cache's
// local tier on start, within a time budget, and reports readiness.
//
// It builds on package tiered only. Nothing is implemented here yet; the
// room exists so the layout is fixed.
package warmup
