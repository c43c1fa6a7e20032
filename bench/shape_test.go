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

func TestParseShape(t *testing.T) {
	z, err := parseShape("")
	require.NoError(t, err)
	assert.Equal(t, zipfShape{name: ShapeName, summary: "100,000 keys, s=1.01, 16 goroutines per replica, a 1ms loader",
		keys: 100_000, s: 1.01, goroutines: 16, writePct: 5, loader: time.Millisecond}, z, "an empty spec is zipf-100k's shape")

	z, err = parseShape(" keys=5000, s=0,goroutines=4,writes=20,loader=2ms ")
	require.NoError(t, err)
	assert.Equal(t, zipfShape{name: ShapeName, summary: "5000 keys, uniform keys, 4 goroutines per replica, a 2ms loader",
		keys: 5000, s: 0, goroutines: 4, writePct: 20, loader: 2 * time.Millisecond}, z)

	sc, err := ZipfShape("writes=100,s=1.5")
	require.NoError(t, err)
	assert.Equal(t, ShapeName, sc.Name)
	assert.Contains(t, sc.Description, "(100,000 keys, s=1.5, 16 goroutines per replica, a 1ms loader)")
	assert.Contains(t, sc.Description, "0 % reads (GetOrLoad) / 100 % writes")

	for spec, want := range map[string]string{
		"keys=1":                       "keys=1: want a whole number from 2 to 1000000",
		"keys=1000001":                 "keys=1000001: want a whole number from 2 to 1000000",
		"s=1":                          "s=1: want 0 (uniform) or a Zipf exponent above 1, at most 10",
		"s=NaN":                        "s=NaN: want 0 (uniform) or a Zipf exponent above 1, at most 10",
		"goroutines=0":                 "goroutines=0: want a whole number from 1 to 1024",
		"writes=101":                   "writes=101: want a whole percentage from 0 to 100",
		"loader=-1ms":                  "loader=-1ms: want a duration from 0 to 10s, e.g. 1ms",
		"loader=1":                     "loader=1: want a duration from 0 to 10s, e.g. 1ms",
		"size=10":                      `unknown field "size" (fields: keys, s, goroutines, writes, loader)`,
		"keys":                         `"keys" is not name=value`,
		"keys=10,keys=20":              "keys is given twice",
		"keys=x,writes=5,goroutines=y": "keys=x: want a whole number from 2 to 1000000; goroutines=y: want a whole number from 1 to 1024",
	} {
		_, err := ZipfShape(spec)
		require.Error(t, err, spec)
		assert.True(t, errors.Is(err, ErrBadShape), spec)
		assert.Equal(t, `bench: bad shape "`+spec+`": `+want, err.Error())
	}
}

// TestShapeRunsItsMix: a shape's write share and key choice reach every
// replica's load (naive publishes once per write, so Redis's PUBLISH count
// per op is the write share).
func TestShapeRunsItsMix(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	run := &Run{Addr: srv.Addr(), Config: Config{Duration: 300 * time.Millisecond, Replicas: 2}}
	defer run.Close()
	for spec, writes := range map[string]float64{"keys=200,writes=0,goroutines=2": 0, "keys=200,s=0,writes=50,goroutines=2": 0.5} {
		sc, err := ZipfShape(spec)
		require.NoError(t, err)
		res, err := sc.Run(ctx, run, entry(t, "naive"))
		require.NoError(t, err, spec)
		ops, ok := res.Metric("throughput")
		require.True(t, ok)
		assert.Positive(t, ops.Value, spec)
		if writes == 0 {
			assert.Zero(t, res.RedisPerOp["publish"], spec)
		} else {
			assert.InDelta(t, writes, res.RedisPerOp["publish"], 0.1, spec)
		}
	}
}
