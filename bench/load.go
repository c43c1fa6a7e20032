package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// loadSpec is the workload one replica runs until it is told to stop: the
// zipf scenarios, failover and the rolling deploy are all this loop with
// other numbers.
type loadSpec struct {
	Keys       int
	ZipfS      float64       // key popularity: Zipf with this exponent (> 1); 0 for uniform
	WritePct   int           // share of ops that update the source, then Set
	Loader     time.Duration // how long the origin takes to answer a load
	Goroutines int
	Pause      time.Duration // between one goroutine's ops; 0 for none
	OpTimeout  time.Duration
	Seed       uint64
	Record     bool // keep every read for the staleness check
	Phase      int  // the phase the load starts in
}

// Phases split a load's figures by what the scenario was doing meanwhile
// (steady state, an outage, a deploy); the bench switches every replica's
// phase at once.
const phases = 3

type phaseStats struct {
	Ops, Reads, Writes, Errors, Loads uint64
	Read                              latencies // GetOrLoad latency
	Seconds                           float64   // time this replica spent in the phase
}

// loadReport is what a replica's load did, sent back when it stops.
type loadReport struct {
	Phases    [phases]phaseStats
	Reads     uint64 // all phases
	LocalHits uint64 // reads the replica answered without Redis, all phases
	// FirstLocal is how many of the replica's first firstReads reads were
	// answered locally; FirstDone says the load got that far.
	FirstLocal uint64
	FirstDone  bool
	Counters   map[string]float64 // the candidate's own counters, if it keeps any
	// PID and CPU are the replica's process and the CPU time (user and
	// system) that process spent while the load ran: replicas that share a
	// process report the same figure, so a fleet's CPU counts each PID once.
	PID int
	CPU time.Duration
	// Writes are the writes the replica completed, with loadSpec.Record:
	// its part of the fleet's write log.
	Writes []completion
}

// firstReads is how many of a new replica's reads the deploy scenario judges.
const firstReads = 1000

type load struct {
	spec loadSpec
	rep  Replica
	src  *source
	keys []string

	phase      atomic.Int32
	phaseMu    sync.Mutex
	phaseSince time.Time
	seconds    [phases]float64
	loads      [phases]atomic.Uint64

	reads      atomic.Uint64
	hits0      uint64
	cpu0       time.Duration
	firstLocal atomic.Uint64
	firstDone  chan struct{}

	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	stats   [phases]phaseStats
	records []readRecord
	writes  []completion // with Record: the writes this replica completed
}

func startLoad(spec loadSpec, rep Replica, src *source) *load {
	l := &load{spec: spec, rep: rep, src: src, keys: make([]string, spec.Keys),
		firstDone: make(chan struct{}), stop: make(chan struct{}), phaseSince: time.Now(), hits0: rep.LocalHits(), cpu0: processCPU()}
	for i := range l.keys {
		l.keys[i] = keyName(i)
	}
	l.phase.Store(int32(spec.Phase))
	for g := range spec.Goroutines {
		l.wg.Go(func() { l.run(uint64(g)) })
	}
	return l
}

func (l *load) setPhase(p int) {
	l.phaseMu.Lock()
	defer l.phaseMu.Unlock()
	now := time.Now()
	l.seconds[l.phase.Load()] += now.Sub(l.phaseSince).Seconds()
	l.phaseSince = now
	l.phase.Store(int32(p))
}

func (l *load) run(g uint64) {
	rng := rand.New(rand.NewPCG(l.spec.Seed, g))
	pick := func() int { return rng.IntN(len(l.keys)) }
	if l.spec.ZipfS > 1 {
		z := rand.NewZipf(rng, l.spec.ZipfS, 1, uint64(len(l.keys)-1))
		pick = func() int { return int(z.Uint64()) }
	}
	var st [phases]phaseStats
	var recs []readRecord
	var writes []completion
	for {
		select {
		case <-l.stop:
			l.mu.Lock()
			for p := range st {
				l.stats[p].merge(st[p])
			}
			l.records = append(l.records, recs...)
			l.writes = append(l.writes, writes...)
			l.mu.Unlock()
			return
		default:
		}
		k := int32(pick())
		p := &st[l.phase.Load()]
		p.Ops++
		if rng.IntN(100) < l.spec.WritePct {
			c, err := writeThrough(l.rep, l.src, k, l.keys[k], l.spec.OpTimeout)
			switch {
			case err != nil:
				p.Errors++
			case l.spec.Record:
				writes = append(writes, c)
				fallthrough
			default:
				p.Writes++
			}
		} else {
			start := time.Now()
			got, err := l.read(k)
			p.Read.record(time.Since(start))
			p.Reads++
			if err != nil {
				p.Errors++
			} else if l.spec.Record {
				v, perr := versionOf(got)
				if perr != nil {
					v = -1
				}
				recs = append(recs, readRecord{Key: k, Version: v, Start: start.UnixNano()})
			}
		}
		if l.spec.Pause > 0 {
			time.Sleep(l.spec.Pause)
		}
	}
}

// writeThrough bumps a key's version in the source, then writes it through
// the cache, holding the fleet-wide lock of the key in between.
func writeThrough(rep Replica, src *source, k int32, key string, timeout time.Duration) (completion, error) {
	v, err := src.begin(k)
	if err != nil {
		return completion{}, err
	}
	defer src.end(k)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := rep.Set(ctx, key, value(key, v)); err != nil {
		return completion{}, err
	}
	return completion{Key: k, Version: v, At: time.Now().UnixNano()}, nil
}

// keyName is the load's name of key k.
func keyName(k int) string { return fmt.Sprint("z", k) }

func (l *load) read(k int32) (string, error) {
	if n := l.reads.Add(1); n == firstReads {
		l.firstLocal.Store(l.rep.LocalHits() - l.hits0)
		close(l.firstDone)
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.spec.OpTimeout)
	defer cancel()
	key := l.keys[k]
	return l.rep.GetOrLoad(ctx, key, func(ctx context.Context) (string, error) {
		l.loads[l.phase.Load()].Add(1)
		v := l.src.read(k)
		time.Sleep(l.spec.Loader)
		return value(key, v), nil
	})
}

// finish stops the goroutines and reports.
func (l *load) finish() loadReport {
	close(l.stop)
	l.wg.Wait()
	l.setPhase(int(l.phase.Load()))
	var rep loadReport
	for p := range phases {
		rep.Phases[p] = l.stats[p]
		rep.Phases[p].Loads = l.loads[p].Load()
		rep.Phases[p].Seconds = l.seconds[p]
	}
	rep.Reads = l.reads.Load()
	rep.Writes = l.writes
	rep.LocalHits = l.rep.LocalHits() - l.hits0
	rep.PID, rep.CPU = os.Getpid(), processCPU()-l.cpu0
	select {
	case <-l.firstDone:
		rep.FirstLocal, rep.FirstDone = l.firstLocal.Load(), true
	default:
	}
	if c, ok := l.rep.(counterSource); ok {
		rep.Counters = c.Counters()
	}
	return rep
}

// processCPU is the CPU time (user and system) this process has spent.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (s *phaseStats) merge(o phaseStats) {
	s.Ops += o.Ops
	s.Reads += o.Reads
	s.Writes += o.Writes
	s.Errors += o.Errors
	s.Loads += o.Loads
	s.Read.merge(o.Read)
	s.Seconds = max(s.Seconds, o.Seconds)
}
