package bench

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// source is a fleet's source of truth, the "database" behind the cache:
// each key's current version and a lock that serialises its writers, so
// that versions reach the cache in order whichever replica writes. It lives
// in a file that the bench and every replica map into memory: a write's
// version bump and a load's read are an atomic operation, not a message to
// the bench, whose round trip (measured: half the fleet's throughput in
// process mode) would swamp the cache being measured. Each replica logs the
// writes it completed; staleness is judged after the run (staleReads) from
// the fleet's merged log.
//
// The library's internal/ledger does the same inside one process and keeps
// its log to itself, which a fleet of processes cannot share.
type source struct {
	path    string
	mem     []byte
	version []atomic.Int64
	lock    []atomic.Int64 // 0: free; otherwise held
}

// sourceKeys bounds the keys a fleet's source holds: the largest workload's
// (a shape may ask for up to this many). The file is sparse and only the
// pages of keys in use are ever touched, so the bound costs address space
// (16 bytes a key), not memory.
const sourceKeys = 1_000_000

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

// newSource makes a fleet's source in a new file; close removes it.
func newSource() (*source, error) {
	f, err := os.CreateTemp("", "tiercache-bench-source-")
	if err != nil {
		return nil, fmt.Errorf("bench: source: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(sourceKeys * 16); err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("bench: source: %w", err)
	}
	s, err := openSource(f.Name())
	if err != nil {
		os.Remove(f.Name())
	}
	return s, err
}

// openSource maps a fleet's source, made by newSource, into this process.
func openSource(path string) (*source, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("bench: source: %w", err)
	}
	defer f.Close()
	mem, err := syscall.Mmap(int(f.Fd()), 0, sourceKeys*16, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("bench: source: map %s: %w", path, err)
	}
	// The one use of unsafe in the bench: atomics on memory other processes
	// share. The mapping is page-aligned, so every int64 is aligned.
	words := unsafe.Slice((*atomic.Int64)(unsafe.Pointer(unsafe.SliceData(mem))), 2*sourceKeys)
	return &source{path: path, mem: mem, version: words[:sourceKeys], lock: words[sourceKeys:]}, nil
}

// close unmaps the source; remove, for the bench's own copy, deletes the file.
func (s *source) close(remove bool) {
	syscall.Munmap(s.mem)
	if remove {
		os.Remove(s.path)
	}
}

// begin takes the key's lock, fleet-wide, and makes its next version.
func (s *source) begin(key int32) (int64, error) {
	deadline := time.Now().Add(writeLockWait)
	for wait := time.Microsecond; !s.lock[key].CompareAndSwap(0, 1); wait = min(2*wait, time.Millisecond) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("bench: source: key %d held by another writer for %v", key, writeLockWait)
		}
		time.Sleep(wait) // another replica's Set of this key: one Redis round trip
	}
	return s.version[key].Add(1), nil
}

// end lets the next writer of the key in.
func (s *source) end(key int32) { s.lock[key].Store(0) }

func (s *source) read(key int32) int64 { return s.version[key].Load() }

// mergeLogs is the fleet's write log, sorted by key, then by completion.
func mergeLogs(logs ...[]completion) []completion {
	out := slices.Concat(logs...)
	slices.SortFunc(out, func(a, b completion) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.At, b.At))
	})
	return out
}

// staleReads counts the reads that returned a version older than one whose
// write had completed more than grace before the read began, and says how
// long after that write the latest-starting of them began. log is sorted as
// mergeLogs returns it.
func staleReads(reads []readRecord, log []completion, grace time.Duration) (n int, worst time.Duration) {
	byKey := map[int32][]completion{}
	for i := 0; i < len(log); {
		j := i + 1
		for j < len(log) && log[j].Key == log[i].Key {
			j++
		}
		byKey[log[i].Key] = log[i:j]
		i = j
	}
	for _, r := range reads {
		ws := byKey[r.Key]
		i, _ := slices.BinarySearchFunc(ws, r.Start-int64(grace), func(c completion, t int64) int { return cmp.Compare(c.At, t) })
		if i == 0 {
			if r.Version < 0 { // no version at all: wrong whatever was written
				n++
			}
			continue
		}
		if newer := ws[i-1]; r.Version < newer.Version { // -1 (no version) is below every floor
			n++
			worst = max(worst, time.Duration(r.Start-newer.At))
		}
	}
	return n, worst
}
