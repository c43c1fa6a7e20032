package bench

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"
)

// source is a fleet's source of truth, the "database" behind the cache:
// each key's current version, and when each write of it completed. The
// bench process keeps it and the replicas call it, wherever they run, so
// versions are fleet-wide. Staleness is judged afterwards (staleReads) from
// the log of completed writes, not on every read: a read asking across a
// process boundary would cost more than the local hit it measures.
//
// The library's internal/ledger does the same inside one process; it keeps
// its write log to itself, and the bench must ship the log to the replicas.
type source struct {
	mu      sync.Mutex
	version map[int32]int64
	locks   map[int32]chan struct{}
	log     []completion
}

// completion is one write that reached the cache, timed by the wall clock:
// the only clock that processes on one machine share.
type completion struct {
	Key     int32
	Version int64
	At      int64 // Unix ns when Set returned
}

// readRecord is one read a replica made, for the staleness check.
type readRecord struct {
	Key     int32
	Version int64 // -1: the value carried no version
	Start   int64 // Unix ns when the read began
}

// writeLockWait bounds how long a writer waits for another replica's write
// of the same key (one Set): longer means that replica died holding it.
const writeLockWait = 2 * time.Second

func newSource() *source {
	return &source{version: map[int32]int64{}, locks: map[int32]chan struct{}{}}
}

// begin serialises writers of key across the fleet, so versions reach the
// cache in order, and makes the next version.
func (s *source) begin(key int32) (int64, error) {
	s.mu.Lock()
	l := s.locks[key]
	if l == nil {
		l = make(chan struct{}, 1)
		s.locks[key] = l
	}
	s.mu.Unlock()
	select {
	case l <- struct{}{}:
	case <-time.After(writeLockWait):
		return 0, fmt.Errorf("bench: source: key %d held by another writer for %v", key, writeLockWait)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version[key]++
	return s.version[key], nil
}

// end records a write that reached the cache (ok) and lets the next writer
// of its key in.
func (s *source) end(c completion, ok bool) {
	s.mu.Lock()
	if ok {
		s.log = append(s.log, c)
	}
	l := s.locks[c.Key]
	s.mu.Unlock()
	select {
	case <-l:
	default: // not held: a duplicate end; nothing to release
	}
}

func (s *source) read(key int32) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version[key]
}

// completions is the write log sorted by key, then by completion.
func (s *source) completions() []completion {
	s.mu.Lock()
	out := slices.Clone(s.log)
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b completion) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.At, b.At))
	})
	return out
}

type sourceKey struct{ Key int32 }
type sourceVersion struct{ Version int64 }
type sourceEnd struct {
	C  completion
	OK bool
}

// serveOn answers a worker's source calls.
func (s *source) serveOn(p *peer) {
	handle(p, "source.begin", func(a sourceKey) (sourceVersion, error) {
		v, err := s.begin(a.Key)
		return sourceVersion{v}, err
	})
	handle(p, "source.end", func(a sourceEnd) (struct{}, error) { s.end(a.C, a.OK); return struct{}{}, nil })
	handle(p, "source.read", func(a sourceKey) (sourceVersion, error) { return sourceVersion{s.read(a.Key)}, nil })
}

// staleReads counts the reads that returned a version older than one whose
// write had completed more than grace before the read began. log is sorted
// as completions returns it.
func staleReads(reads []readRecord, log []completion, grace time.Duration) int {
	byKey := map[int32][]completion{}
	for i := 0; i < len(log); {
		j := i + 1
		for j < len(log) && log[j].Key == log[i].Key {
			j++
		}
		byKey[log[i].Key] = log[i:j]
		i = j
	}
	stale := 0
	for _, r := range reads {
		ws := byKey[r.Key]
		before := r.Start - int64(grace)
		i, _ := slices.BinarySearchFunc(ws, before, func(c completion, t int64) int { return cmp.Compare(c.At, t) })
		floor := int64(0)
		if i > 0 {
			floor = ws[i-1].Version
		}
		if r.Version < floor { // -1 (no version) is below every floor, 0 included
			stale++
		}
	}
	return stale
}
