// Package ledger is the staleness ledger the tests and the bench scenarios
// share: a workload's source of truth (each key's current version) and when
// each write completed, so a read can be judged stale: it returned a version
// older than one whose write completed more than a grace period before the
// read began.
package ledger

import (
	"sort"
	"sync"
	"time"
)

// Ledger is safe for concurrent use. Writers of one key must be serialised
// (Lock) so versions complete in order.
type Ledger struct {
	mu      sync.Mutex
	version map[string]int64
	writes  map[string][]completed
	began   map[string][]time.Time // began[key][v-1]: when version v was made
	locks   map[string]*sync.Mutex
}

type completed struct {
	version int64
	at      time.Time
}

// New returns an empty ledger: every key at version 0.
func New() *Ledger {
	return &Ledger{version: map[string]int64{}, writes: map[string][]completed{}, began: map[string][]time.Time{}, locks: map[string]*sync.Mutex{}}
}

// Lock returns the mutex that serialises the writes of key.
func (l *Ledger) Lock(key string) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.locks[key]
	if m == nil {
		m = &sync.Mutex{}
		l.locks[key] = m
	}
	return m
}

// Read is key's current version in the source.
func (l *Ledger) Read(key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version[key]
}

// Bump makes a new version of key in the source and returns it.
func (l *Ledger) Bump(key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.version[key]++
	l.began[key] = append(l.began[key], time.Now())
	return l.version[key]
}

// Completed records that the write of version v of key completed now.
func (l *Ledger) Completed(key string, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes[key] = append(l.writes[key], completed{v, time.Now()})
}

// Floor is the newest version of key whose write completed before t: a
// read that began at t+grace must not return anything older.
func (l *Ledger) Floor(key string, t time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ws := l.writes[key]
	i := sort.Search(len(ws), func(i int) bool { return !ws[i].at.Before(t) })
	if i == 0 {
		return 0
	}
	return ws[i-1].version
}

// Span is when the write of version v of key began (Bump) and when it
// completed; ok is false until it has completed. A write's invalidation is
// published between the two.
func (l *Ledger) Span(key string, v int64) (began, done time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ws := l.writes[key]
	i := sort.Search(len(ws), func(i int) bool { return ws[i].version >= v })
	if v < 1 || i == len(ws) || ws[i].version != v {
		return time.Time{}, time.Time{}, false
	}
	return l.began[key][v-1], ws[i].at, true
}
