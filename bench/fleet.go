package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"
)

// fleet is N replicas of one candidate sharing a namespace, each behind a
// worker: a goroutine of this process or, with Config.Processes, an OS
// process of its own (this binary re-executed, see IsWorker), with its own
// scheduler and garbage collector as a real service replica has. The
// scenario drives the workers through the same calls either way, and serves
// them the fleet's source of truth (shared memory: source.go).
type fleet struct {
	run     *Run
	cand    string
	env     Env
	src     *source
	members []*member
}

// member is the bench's end of one worker.
type member struct {
	p    *peer
	wait func() // after the connection is closed: until the worker is gone
	pid  int    // of the process the replica runs in
}

// workerStopWait bounds how long a replica process may take to exit once
// told to; past it, it is killed.
const workerStopWait = 10 * time.Second

func (r *Run) newFleet(ctx context.Context, scenario string, e Entry, n int) (*fleet, error) {
	if n < 1 {
		return nil, fmt.Errorf("bench: a fleet needs a replica, not %d", n)
	}
	env := r.env(scenario, e.Candidate)
	env.Warmup = e.Warmup
	src, err := newSource()
	if err != nil {
		return nil, err
	}
	f := &fleet{run: r, cand: e.Name, env: env, src: src, members: make([]*member, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n { // processes start in parallel: each takes a while
		wg.Go(func() { f.members[i], errs[i] = f.start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// start makes a new worker and opens its replica.
func (f *fleet) start(ctx context.Context) (*member, error) {
	m, err := f.spawn()
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	opened, err := call[openReply](octx, m.p, "open", openArgs{Candidate: f.cand, Env: f.env, Source: f.src.path})
	if err != nil {
		m.stop(ctx)
		return nil, err
	}
	m.pid = opened.PID
	return m, nil
}

func (f *fleet) spawn() (*member, error) {
	if !f.run.Processes {
		bench, replica := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			serveWorker(replica, replica)
		}()
		m := &member{p: newPeer(bench, bench), wait: func() { <-done }}
		go m.p.serve(nil)
		return m, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find own binary to run a replica process: %w", err)
	}
	fromBench, toWorker, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fromWorker, toBench, err := os.Pipe()
	if err != nil {
		toWorker.Close()
		fromBench.Close()
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.ExtraFiles = []*os.File{fromBench, toBench} // fds 3 and 4 in the worker
	out := &tail{}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Start()
	fromBench.Close() // the worker holds its own copies now
	toBench.Close()
	if err != nil {
		toWorker.Close()
		fromWorker.Close()
		return nil, fmt.Errorf("bench: start a replica process: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m := &member{p: newPeer(fromWorker, toWorker), wait: func() {
		select {
		case <-exited:
		case <-time.After(workerStopWait):
			cmd.Process.Kill()
			<-exited
		}
	}}
	go m.p.serve(func(err error) error {
		select { // a crashed worker's last words may still be on their way
		case <-exited:
		case <-time.After(time.Second):
		}
		if s := out.String(); s != "" {
			return fmt.Errorf("%w; the replica process said: %s", err, s)
		}
		return err
	})
	return m, nil
}

// stop closes the member's replica and ends its worker.
func (m *member) stop(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, workerStopWait)
	call[struct{}](cctx, m.p, "close", struct{}{})
	cancel()
	m.p.close()
	m.wait()
}

// callAll runs method on every member at once; args gives each its argument.
func callAll[R, A any](ctx context.Context, f *fleet, method string, args func(i int) A) ([]R, error) {
	return callEach[R](ctx, f.members, method, args)
}

// callEach runs method on the given members at once.
func callEach[R, A any](ctx context.Context, ms []*member, method string, args func(i int) A) ([]R, error) {
	out := make([]R, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			out[i], errs[i] = call[R](ctx, m.p, method, args(i))
			if errs[i] != nil {
				errs[i] = fmt.Errorf("replica %d: %s: %w", i, method, errs[i])
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func same[A any](a A) func(int) A { return func(int) A { return a } }

// replace stops member i and puts a new replica in its place, as one step of
// a rolling deploy; it returns the old load's report.
func (f *fleet) replace(ctx context.Context, i int) (loadReport, error) {
	old := f.members[i]
	rep, err := call[loadReport](ctx, old.p, "load.stop", struct{}{})
	old.stop(ctx)
	if err != nil {
		return rep, fmt.Errorf("replica %d: load.stop: %w", i, err)
	}
	m, err := f.start(ctx)
	if err != nil {
		return rep, fmt.Errorf("successor of replica %d: %w", i, err)
	}
	f.members[i] = m
	return rep, nil
}

func (f *fleet) close() {
	var wg sync.WaitGroup
	for _, m := range f.members {
		if m != nil {
			wg.Go(func() { m.stop(context.Background()) })
		}
	}
	wg.Wait()
	f.src.close(true)
	f.run.dropNamespace(f.env.Namespace)
}

// tail keeps the end of a replica process's output, for the error when it dies.
type tail struct {
	mu sync.Mutex
	b  []byte
}

const tailBytes = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailBytes {
		t.b = t.b[len(t.b)-tailBytes:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
