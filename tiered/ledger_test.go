package tiered

import (
	"sort"
	"sync"
	"time"
)

// ledger is the test's source of truth: the current version of each key and
// when each write completed, so a read can be judged stale.
type ledger struct {
	mu      sync.Mutex
	version map[string]int64
	writes  map[string][]completedWrite // per key, in version order
}

type completedWrite struct {
	version int64
	at      time.Time
}

func newLedger() *ledger {
	return &ledger{version: map[string]int64{}, writes: map[string][]completedWrite{}}
}

func (l *ledger) read(key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version[key]
}

// bump makes a new version of key in the source. Callers serialise writes
// to one key, so versions complete in order.
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

// floor is the newest version of key whose write completed before t: a
// read that began after t must not return anything older.
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
