package warmup

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
)

// Warmup is a preload running in the background, with its readiness.
type Warmup struct {
	ready    chan struct{}
	report   atomic.Pointer[Report]
	progress atomic.Pointer[Report]
	err      atomic.Pointer[error]
}

// Start preloads cache in the background and returns at once: start-up is
// never blocked. Ready is closed when the preload finished or its budget
// ran out.
func Start[V any](ctx context.Context, cache Cache[V], opts Options[V]) *Warmup {
	w := &Warmup{ready: make(chan struct{})}
	callerProgress := opts.Progress
	opts.Progress = func(r Report) {
		w.progress.Store(&r)
		if callerProgress != nil {
			callerProgress(r)
		}
	}
	go func() {
		defer close(w.ready)
		defer func() {
			// A panic (a codec's, a loader's) ends the warm-up, not the
			// process: on this goroutine no recover of the caller's could
			// see it. It is the warm-up's error.
			if p := recover(); p != nil {
				rep := w.Progress()
				w.report.Store(&rep)
				err := fmt.Errorf("warmup: the preload panicked: %v", p)
				w.err.Store(&err)
			}
		}()
		rep, err := Preload(ctx, cache, opts)
		w.progress.Store(&rep)
		w.report.Store(&rep)
		if err != nil {
			w.err.Store(&err)
		}
	}()
	return w
}

// Progress is what the preload has done so far.
func (w *Warmup) Progress() Report {
	if r := w.progress.Load(); r != nil {
		return *r
	}
	return Report{}
}

// IsReady reports whether the warm-up is over.
func (w *Warmup) IsReady() bool {
	select {
	case <-w.ready:
		return true
	default:
		return false
	}
}

// Ready is closed when the warm-up is over.
func (w *Warmup) Ready() <-chan struct{} { return w.ready }

// Report returns what the preload did, once it is over.
func (w *Warmup) Report() (Report, error, bool) {
	select {
	case <-w.ready:
	default:
		return Report{}, nil, false
	}
	var err error
	if e := w.err.Load(); e != nil {
		err = *e
	}
	return *w.report.Load(), err, true
}

// Handler answers a readiness probe: 503 while warming up, then 200 with
// the report as JSON.
func (w *Warmup) Handler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rep, err, done := w.Report()
		rw.Header().Set("Content-Type", "application/json")
		if !done {
			rw.WriteHeader(http.StatusServiceUnavailable)
			rw.Write([]byte(`{"ready":false}` + "\n"))
			return
		}
		body := map[string]any{"ready": true, "report": rep}
		if err != nil {
			body["error"] = err.Error()
		}
		json.NewEncoder(rw).Encode(body)
	})
}
