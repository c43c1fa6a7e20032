package bench

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ledger is a workload's source of truth: each key's current version and
// when each write completed, so a read can be judged stale: it returned a
// version older than one whose write completed more than grace before the
// read began.
type ledger struct {
	mu      sync.Mutex
	version map[string]int64
	writes  map[string][]completedWrite
	locks   map[string]*sync.Mutex
}

type completedWrite struct {
	version int64
	at      time.Time
}

const staleGrace = 100 * time.Millisecond

func newLedger() *ledger {
	return &ledger{version: map[string]int64{}, writes: map[string][]completedWrite{}, locks: map[string]*sync.Mutex{}}
}

// lock serialises the writes of one key, so versions complete in order.
func (l *ledger) lock(key string) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.locks[key]
	if m == nil {
		m = &sync.Mutex{}
		l.locks[key] = m
	}
	return m
}

func (l *ledger) read(key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version[key]
}

func (l *ledger) bump(key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.version[key]++
	return l.version[key]
}

func (l *ledger) completed(key string, v int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes[key] = append(l.writes[key], completedWrite{v, time.Now()})
}

// floor is the newest version of key whose write completed before t.
func (l *ledger) floor(key string, t time.Time) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ws := l.writes[key]
	i := sort.Search(len(ws), func(i int) bool { return !ws[i].at.Before(t) })
	if i == 0 {
		return 0
	}
	return ws[i-1].version
}

// value encodes a version with some payload, as services cache records.
func value(key string, v int64) string {
	return strconv.FormatInt(v, 10) + "|" + key + "|" + strings.Repeat("x", 64)
}

func versionOf(s string) (int64, error) {
	head, _, ok := strings.Cut(s, "|")
	if !ok {
		return 0, fmt.Errorf("bench: value %q has no version", s)
	}
	return strconv.ParseInt(head, 10, 64)
}
