package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestCandidatesConformance runs one suite against every candidate, so the
// scenarios compare like with like.
func TestCandidatesConformance(t *testing.T) {
	srv := redistest.Start(t)
	run := &Run{Addr: srv.Addr()}
	ctx := context.Background()
	for _, c := range Candidates() {
		t.Run(c.Name, func(t *testing.T) {
			reps, closeAll, err := run.replicas(ctx, "conformance", c, 2)
			require.NoError(t, err)
			defer closeAll()
			a, b := reps[0], reps[1]

			_, err = a.Get(ctx, "k")
			require.ErrorIs(t, err, ErrMiss)
			require.NoError(t, a.Set(ctx, "k", "v1"))
			// Eventually: rueidis client-side caching holds the nil it read
			// before until Redis's invalidation of the key arrives, even on
			// the writing replica.
			require.Eventually(t, func() bool {
				v, err := a.Get(ctx, "k")
				return err == nil && v == "v1"
			}, 2*time.Second, time.Millisecond, "read your own write")
			v, err := b.Get(ctx, "k")
			require.NoError(t, err, "another replica reads through Redis")
			assert.Equal(t, "v1", v)

			calls := 0
			v, err = a.GetOrLoad(ctx, "loaded", func(context.Context) (string, error) { calls++; return "from origin", nil })
			require.NoError(t, err)
			assert.Equal(t, "from origin", v)
			assert.Equal(t, 1, calls)
			v, err = b.GetOrLoad(ctx, "loaded", func(context.Context) (string, error) { calls++; return "again", nil })
			require.NoError(t, err)
			assert.Equal(t, "from origin", v, "the load reached Redis")
			assert.Equal(t, 1, calls)

			require.NoError(t, a.Delete(ctx, "k"))
			require.Eventually(t, func() bool {
				_, err := a.Get(ctx, "k")
				return errors.Is(err, ErrMiss)
			}, 2*time.Second, time.Millisecond, "a delete is seen by the deleting replica (eventually, for client-side caching)")

			boom := errors.New("origin down")
			_, err = a.GetOrLoad(ctx, "failing", func(context.Context) (string, error) { return "", boom })
			assert.ErrorIs(t, err, boom)

			before := a.LocalHits()
			for i := range 200 { // tiercache samples local hits 1 in 8
				a.Get(ctx, "loaded")
				if i < 3 {
					time.Sleep(5 * time.Millisecond) // let local inserts apply
				}
			}
			if c.Name != "rueidis" {
				assert.Greater(t, a.LocalHits(), before, "a candidate with a local tier answers repeated reads locally")
			} else {
				assert.Zero(t, a.LocalHits())
			}
		})
	}
}

func TestSelect(t *testing.T) {
	cs, err := Select(nil)
	require.NoError(t, err)
	require.NotEmpty(t, cs)
	assert.Equal(t, "tiercache", cs[0].Name, "tiercache first")
	_, err = Select([]string{"nope"})
	assert.Error(t, err)
	ss, err := SelectScenarios([]string{"zipf", "localhit"})
	require.NoError(t, err)
	assert.Equal(t, "zipf", ss[0].Name)
	_, err = SelectScenarios([]string{"nope"})
	assert.Error(t, err)
}

// TestSelectSizedCandidate: NAME@MiB runs a candidate whose local tier is
// sized in bytes with that budget, whatever the run's, under its own name;
// a size that cannot be, or a candidate that has no such tier, is refused.
func TestSelectSizedCandidate(t *testing.T) {
	var got []int64
	Register(Candidate{Name: "sized-fake", Config: "a fake", SizedLocal: true,
		NewReplica: func(_ context.Context, env Env) (Replica, error) {
			got = append(got, env.LocalMaxCost)
			return nil, errors.New("fake")
		}})
	Register(Candidate{Name: "unsized-fake", NewReplica: func(context.Context, Env) (Replica, error) { return nil, errors.New("fake") }})
	t.Cleanup(func() { delete(registry, "sized-fake"); delete(registry, "unsized-fake") })

	cs, err := Select([]string{"sized-fake", "sized-fake@256"})
	require.NoError(t, err)
	require.Len(t, cs, 2)
	assert.Equal(t, "sized-fake@256", cs[1].Name)
	assert.Equal(t, "a fake; this entry: a 256 MiB local tier", cs[1].Config)
	for _, c := range cs {
		_, _ = c.NewReplica(context.Background(), Env{LocalMaxCost: 64 << 20})
	}
	assert.Equal(t, []int64{64 << 20, 256 << 20}, got, "the plain name keeps the run's budget; @256 replaces it")

	// A replica process finds the entry by the same name.
	c, err := lookup("sized-fake@8")
	require.NoError(t, err)
	_, _ = c.NewReplica(context.Background(), Env{LocalMaxCost: 64 << 20})
	assert.Equal(t, int64(8<<20), got[len(got)-1])

	for name, want := range map[string]string{
		"unsized-fake@64":    "has no local tier sized in bytes",
		"sized-fake@0":       "whole number of MiB",
		"sized-fake@":        "whole number of MiB",
		"sized-fake@-3":      "whole number of MiB",
		"sized-fake@1.5":     "whole number of MiB",
		"sized-fake@2000000": "whole number of MiB",
		"nope@64":            "unknown candidate",
	} {
		_, err := Select([]string{name})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), want, name)
		assert.Equal(t, want == "unknown candidate", errors.Is(err, ErrUnknownName), "%s: unknown, or known but refused", name)
	}
	_, err = SelectScenarios([]string{"zipf@3"})
	assert.ErrorIs(t, err, ErrUnknownName)
}
