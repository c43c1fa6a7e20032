package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// recorder is an Observer that keeps each ended step as "op name key
// result", and checks every step is ended once.
type recorder struct {
	mu    sync.Mutex
	steps []string
	open  int
	twice int
}

type ctxMark struct{}

func (r *recorder) Start(ctx context.Context, call Call) (context.Context, func(string, error)) {
	r.mu.Lock()
	r.open++
	r.mu.Unlock()
	ended := false
	return context.WithValue(ctx, ctxMark{}, call.Op), func(result string, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if ended {
			r.twice++
			return
		}
		ended = true
		r.open--
		step := fmt.Sprintf("%s %s %s/%d %s", call.Op, call.Name, call.Key, call.Keys, result)
		if err != nil {
			step += " (err)"
		}
		r.steps = append(r.steps, step)
	}
}

// take returns the steps ended since the last take.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.steps
	r.steps = nil
	return s
}

func (r *recorder) balanced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.open == 0 && r.twice == 0
}

func TestObserverSeesEveryStepThatLeavesTheProcess(t *testing.T) {
	srv := redistest.Start(t)
	var rec recorder
	opts := testOptions[string]("observe")
	opts.Observer = &rec
	c := newCache[string](t, srv, opts)
	ctx := context.Background()

	// A miss: Redis has nothing, this replica takes the lease in the same
	// read, loads with the step's context, fills.
	var loaderSaw any
	_, err := c.GetOrLoad(ctx, "k", func(ctx context.Context) (string, error) {
		loaderSaw = ctx.Value(ctxMark{})
		return "v", nil
	})
	require.NoError(t, err)
	assert.Equal(t, OpLoad, loaderSaw, "the loader runs under the load step's context")
	assert.Equal(t, []string{"redis.read  k/1 leased", "load  k/1 ok", "fill  k/1 stored"}, rec.take())

	// A local hit does no I/O: nothing observed.
	c.local.Wait()
	_, err = c.Get(ctx, "k")
	require.NoError(t, err)
	assert.Empty(t, rec.take())

	// Not found, and a loader error.
	_, err = c.GetOrLoad(ctx, "absent", func(context.Context) (string, error) { return "", ErrNotFound })
	require.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, rec.take(), "load  absent/1 not-found")
	_, err = c.GetOrLoad(ctx, "failing", func(context.Context) (string, error) { return "", errors.New("db down") })
	require.Error(t, err)
	assert.Contains(t, rec.take(), "load  failing/1 error (err)")

	// Writes, by method name.
	require.NoError(t, c.Set(ctx, "w", "v", WithTags("t")))
	require.NoError(t, c.Delete(ctx, "w", "k"))
	require.NoError(t, c.InvalidateTags(ctx, "t"))
	require.NoError(t, c.InvalidateAll(ctx))
	assert.Equal(t, []string{"write Set w/1 ok", "write Delete /2 ok", "write InvalidateTags /1 ok", "write InvalidateAll /0 ok"}, rec.take())
	require.ErrorIs(t, c.Set(ctx, "", "v"), ErrInvalidKey)
	assert.Equal(t, []string{"write Set /1 error (err)"}, rec.take())

	// Several keys: one read and one load and one fill for the batch.
	_, err = c.GetOrLoadMany(ctx, []string{"a", "b"}, func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{"a": "1", "b": "2"}, nil
	})
	require.NoError(t, err)
	steps := rec.take()
	assert.Contains(t, steps, "redis.read  /2 ok")
	assert.Contains(t, steps, "load  /2 ok")
	assert.Contains(t, steps, "fill  /2 stored")
	assert.True(t, rec.balanced(), "every step started was ended exactly once")
}

func TestObserverSeesALeaseWait(t *testing.T) {
	srv := redistest.Start(t)
	var rec recorder
	opts := testOptions[string]("observe-wait")
	holder := newCache[string](t, srv, opts)
	opts.Observer = &rec
	waiter := newCache[string](t, srv, opts)
	ctx := context.Background()

	inLoad, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := holder.GetOrLoad(ctx, "k", func(context.Context) (string, error) { close(inLoad); <-release; return "v", nil })
		done <- err
	}()
	<-inLoad
	got := make(chan string, 1)
	go func() {
		v, _ := waiter.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "other", nil })
		got <- v
	}()
	require.Eventually(t, func() bool { return waiter.Stats().LeaseWaits > 0 }, 10*time.Second, time.Millisecond)
	close(release)
	require.NoError(t, <-done)
	assert.Equal(t, "v", <-got, "the waiter got the holder's value")
	steps := rec.take()
	assert.Contains(t, steps, "redis.read  k/1 held")
	assert.Contains(t, steps, "lease.wait  k/1 woken")
	assert.False(t, slices.Contains(steps, "load  k/1 ok"), "the waiter did not load: %v", steps)
	assert.True(t, rec.balanced())
}
