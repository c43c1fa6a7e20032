package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// workerEnv marks a process that a fleet started as one of its replicas.
const workerEnv = "TIERCACHE_BENCH_WORKER"

// WorkerCPUProfileEnv, set in the bench's environment, makes each replica
// worker write a CPU profile of its whole life to <value>.worker-<pid>:
// where a replica spends its CPU when it runs as a process of its own,
// which a profile of the bench's process does not show
// (`tiercache bench --processes --cpuprofile FILE` sets it).
const WorkerCPUProfileEnv = "TIERCACHE_BENCH_WORKER_CPUPROFILE"

// IsWorker reports whether this process was started by the bench as a
// replica worker (see Config.Processes). A program that runs the bench must
// check it first thing in main (and a test binary in TestMain) and then
// exit with ServeWorker's code: the bench re-executes its own binary.
func IsWorker() bool { return os.Getenv(workerEnv) != "" }

// ServeWorker serves the bench as one replica, over the pipes the bench
// gave this process as fds 3 (in) and 4 (out), until the bench closes them.
func ServeWorker() int {
	in, out := os.NewFile(3, "from-bench"), os.NewFile(4, "to-bench")
	if in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "bench worker: started without the bench's pipes")
		return 2
	}
	if prefix := os.Getenv(WorkerCPUProfileEnv); prefix != "" {
		f, err := os.Create(fmt.Sprintf("%s.worker-%d", prefix, os.Getpid()))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench worker: cpu profile:", err)
			return 2
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	serveWorker(in, out)
	return 0
}

// worker is one replica and what the scenarios ask of it. Its handlers are
// the scenario steps that must run beside the replica: the workload itself,
// a poll for a new value, a burst of callers.
type worker struct {
	parent *peer
	mu     sync.Mutex
	rep    Replica
	src    *source
	load   *load
	// lastReads are the stopped load's reads, until the staleness check.
	lastReads []readRecord
	watch     *watch
	burst     *burst
}

func serveWorker(r io.Reader, w io.WriteCloser) {
	wk := &worker{parent: newPeer(r, w)}
	p := wk.parent
	handle(p, "open", wk.open)
	handle(p, "ready", wk.ready)
	handle(p, "close", func(struct{}) (struct{}, error) { wk.shutdown(); return struct{}{}, nil })
	handle(p, "touch", wk.touch)
	handle(p, "set", wk.set)
	handle(p, "watch", wk.startWatch)
	handle(p, "seen", wk.seen)
	handle(p, "probe", wk.probe)
	handle(p, "burst.arm", wk.armBurst)
	handle(p, "burst.go", wk.fireBurst)
	handle(p, "fill", wk.fill)
	handle(p, "load.start", wk.startLoad)
	handle(p, "load.phase", func(a phaseArgs) (struct{}, error) {
		l, err := wk.current()
		if err == nil {
			l.setPhase(a.Phase)
		}
		return struct{}{}, err
	})
	handle(p, "load.first", wk.first)
	handle(p, "load.stop", wk.stopLoad)
	handle(p, "load.check", wk.check)
	p.serve(nil)
	wk.shutdown()
	w.Close()
}

type openArgs struct {
	Candidate string
	Env       Env
	Source    string // the fleet's source file, to map
}

// openReply says which process the replica lives in.
type openReply struct{ PID int }

func (wk *worker) open(a openArgs) (openReply, error) {
	c, err := lookup(a.Candidate)
	if err != nil {
		return openReply{}, fmt.Errorf("bench worker: %w", err)
	}
	src, err := openSource(a.Source)
	if err != nil {
		return openReply{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := c.NewReplica(ctx, a.Env)
	if err != nil {
		src.close(false)
		return openReply{}, fmt.Errorf("new replica: %w", err)
	}
	wk.mu.Lock()
	wk.rep, wk.src = rep, src
	wk.mu.Unlock()
	return openReply{PID: os.Getpid()}, nil
}

func (wk *worker) replica() (Replica, error) {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	if wk.rep == nil {
		return nil, errors.New("bench worker: no replica open")
	}
	return wk.rep, nil
}

// ready waits until a replica that warms up has done so.
func (wk *worker) ready(a timeoutArgs) (secondsReply, error) {
	rep, err := wk.replica()
	if err != nil {
		return secondsReply{}, err
	}
	start := time.Now()
	if r, ok := rep.(readier); ok {
		ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
		defer cancel()
		err = r.WaitReady(ctx)
	}
	return secondsReply{time.Since(start).Seconds()}, err
}

func (wk *worker) shutdown() {
	wk.mu.Lock()
	rep, l, src := wk.rep, wk.load, wk.src
	wk.rep, wk.load, wk.src = nil, nil, nil
	wk.mu.Unlock()
	if l != nil {
		l.finish()
	}
	if rep != nil {
		rep.Close()
	}
	if src != nil {
		src.close(false)
	}
}

type touchArgs struct {
	Key   string
	Times int
	Gap   time.Duration // after each read: ristretto applies inserts through a buffer
}

// touch reads a key a few times, so the replica really holds it.
func (wk *worker) touch(a touchArgs) (struct{}, error) {
	rep, err := wk.replica()
	if err != nil {
		return struct{}{}, err
	}
	for range a.Times {
		rep.Get(context.Background(), a.Key)
		time.Sleep(a.Gap)
	}
	return struct{}{}, nil
}

type setArgs struct{ Key, Value string }
type wallReply struct{ At int64 } // Unix ns; 0 when it never happened

func (wk *worker) set(a setArgs) (wallReply, error) {
	rep, err := wk.replica()
	if err != nil {
		return wallReply{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rep.Set(ctx, a.Key, a.Value); err != nil {
		return wallReply{}, err
	}
	return wallReply{time.Now().UnixNano()}, nil
}

// watch polls a key until it reads a wanted value, from before the write
// that makes it: the bench's round trip to start a poll must not add to the
// convergence time it measures.
type watch struct {
	stop chan struct{}
	done chan struct{}
	seen atomic.Int64
}

type watchArgs struct{ Key, Want string }

func (wk *worker) startWatch(a watchArgs) (struct{}, error) {
	rep, err := wk.replica()
	if err != nil {
		return struct{}{}, err
	}
	w := &watch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if v, err := rep.Get(context.Background(), a.Key); err == nil && v == a.Want {
				w.seen.Store(time.Now().UnixNano())
				return
			}
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Microsecond):
			}
		}
	}()
	wk.mu.Lock()
	wk.watch = w
	wk.mu.Unlock()
	return struct{}{}, nil
}

// take empties one of the worker's slots and returns what it held: a step
// (a watch, a burst, a load's reads) is collected once.
func take[T any](wk *worker, slot *T) T {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	v := *slot
	var zero T
	*slot = zero
	return v
}

type deadlineArgs struct{ Deadline int64 } // Unix ns

// seen waits for the watch until the deadline and says when it saw the value.
func (wk *worker) seen(a deadlineArgs) (wallReply, error) {
	w := take(wk, &wk.watch)
	if w == nil {
		return wallReply{}, errors.New("bench worker: no watch")
	}
	select {
	case <-w.done:
	case <-time.After(time.Until(time.Unix(0, a.Deadline))):
		close(w.stop)
		<-w.done
	}
	at := w.seen.Load()
	if at > a.Deadline {
		at = 0
	}
	return wallReply{at}, nil
}

type probeArgs struct {
	Key     string
	Timeout time.Duration
}

// probe writes until a write succeeds: when Redis is back for writers.
func (wk *worker) probe(a probeArgs) (wallReply, error) {
	rep, err := wk.replica()
	if err != nil {
		return wallReply{}, err
	}
	for end := time.Now().Add(a.Timeout); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rep.Set(ctx, a.Key, "ok")
		cancel()
		if err == nil {
			return wallReply{time.Now().UnixNano()}, nil
		}
	}
	return wallReply{}, nil
}

// burst is many callers of one missing key, held until fired.
type burst struct {
	fire  chan struct{}
	wg    sync.WaitGroup
	lat   []float64 // ms, by caller
	errs  atomic.Int64
	loads atomic.Int64
}

type burstArgs struct {
	Key     string
	Callers int
	Loader  time.Duration
}

type burstReply struct {
	Latencies     []float64 // ms
	Loads, Errors int64
}

func (wk *worker) armBurst(a burstArgs) (struct{}, error) {
	rep, err := wk.replica()
	if err != nil {
		return struct{}{}, err
	}
	b := &burst{fire: make(chan struct{}), lat: make([]float64, a.Callers)}
	load := func(context.Context) (string, error) {
		b.loads.Add(1)
		time.Sleep(a.Loader)
		return value(a.Key, 1), nil
	}
	for i := range a.Callers {
		b.wg.Go(func() {
			<-b.fire
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := rep.GetOrLoad(ctx, a.Key, load)
			cancel()
			b.lat[i] = ms(time.Since(t0))
			if err != nil {
				b.errs.Add(1)
			}
		})
	}
	wk.mu.Lock()
	wk.burst = b
	wk.mu.Unlock()
	return struct{}{}, nil
}

func (wk *worker) fireBurst(struct{}) (burstReply, error) {
	b := take(wk, &wk.burst)
	if b == nil {
		return burstReply{}, errors.New("bench worker: no burst armed")
	}
	close(b.fire)
	b.wg.Wait()
	return burstReply{Latencies: b.lat, Loads: b.loads.Load(), Errors: b.errs.Load()}, nil
}

type fillArgs struct{ Keys int }

// fill writes every key of a load through the cache once, as a fleet that
// has been serving a while has them in Redis.
func (wk *worker) fill(a fillArgs) (struct{}, error) {
	rep, err := wk.replica()
	if err != nil {
		return struct{}{}, err
	}
	for k := range a.Keys {
		if _, err := writeThrough(rep, wk.src, int32(k), keyName(k), 5*time.Second); err != nil {
			return struct{}{}, err
		}
	}
	return struct{}{}, nil
}

type phaseArgs struct{ Phase int }
type timeoutArgs struct{ Timeout time.Duration }
type secondsReply struct{ Seconds float64 }

func (wk *worker) startLoad(spec loadSpec) (struct{}, error) {
	rep, err := wk.replica()
	if err != nil {
		return struct{}{}, err
	}
	wk.mu.Lock()
	defer wk.mu.Unlock()
	if wk.load != nil {
		return struct{}{}, errors.New("bench worker: a load is already running")
	}
	wk.load = startLoad(spec, rep, wk.src)
	return struct{}{}, nil
}

func (wk *worker) current() (*load, error) {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	if wk.load == nil {
		return nil, errors.New("bench worker: no load running")
	}
	return wk.load, nil
}

type firstReply struct {
	Local float64 // share of the first reads answered locally
	Done  bool
}

// first waits for the load's first reads and says how many were local.
func (wk *worker) first(a timeoutArgs) (firstReply, error) {
	l, err := wk.current()
	if err != nil {
		return firstReply{}, err
	}
	select {
	case <-l.firstDone:
		return firstReply{Local: float64(l.firstLocal.Load()) / firstReads, Done: true}, nil
	case <-time.After(a.Timeout):
		return firstReply{}, nil
	}
}

func (wk *worker) stopLoad(struct{}) (loadReport, error) {
	l, err := wk.current()
	if err != nil {
		return loadReport{}, err
	}
	rep := l.finish()
	wk.mu.Lock()
	wk.load, wk.lastReads = nil, l.records // the reads wait for the check that follows
	wk.mu.Unlock()
	return rep, nil
}

type checkArgs struct{ Log []completion }
type checkReply struct {
	Stale, Checked int
	Worst          time.Duration // the longest a stale read began after the newer write completed
}

func (wk *worker) check(a checkArgs) (checkReply, error) {
	reads := take(wk, &wk.lastReads)
	stale, worst := staleReads(reads, a.Log, staleGrace)
	return checkReply{Stale: stale, Checked: len(reads), Worst: worst}, nil
}
