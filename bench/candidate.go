package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrMiss is what a Replica's Get returns for an absent key.
var ErrMiss = errors.New("bench: miss")

// Replica is one service replica's cache, as a candidate builds it. Values
// are strings; scenarios encode versions in them.
type Replica interface {
	Get(ctx context.Context, key string) (string, error)
	GetOrLoad(ctx context.Context, key string, load func(context.Context) (string, error)) (string, error)
	Set(ctx context.Context, key, value string) error
	Delete(ctx context.Context, key string) error
	// LocalHits counts reads answered without Redis (0 without a local tier).
	LocalHits() uint64
	Close()
}

// Env is what a replica is built from.
type Env struct {
	Addr      string // Redis host:port
	Namespace string // unique per scenario run
	LocalTTL  time.Duration
	RemoteTTL time.Duration
	// LocalMaxCost is the byte budget of a local tier sized in bytes
	// (tiercache's, naive's ristretto).
	LocalMaxCost int64
	// Warmup asks a candidate that can (Candidate.WarmsUp) to learn the
	// fleet's hot keys and preload them when a replica starts; the replica
	// then implements readier.
	Warmup bool
}

// defaultLocalMaxCost is the local tiers' budget when Config has none.
const defaultLocalMaxCost = 64 << 20

// readier is a replica that is not ready to serve as soon as it is built
// (it preloads); WaitReady returns when it is.
type readier interface {
	WaitReady(ctx context.Context) error
}

// counterSource is a replica that counts what it does itself; the report
// shows its counters beside Redis's own (INFO commandstats).
type counterSource interface {
	// Counters returns totals since the replica was built, by name:
	// "local-hits", "redis-calls".
	Counters() map[string]float64
}

// Candidate is one library under test.
type Candidate struct {
	Name string
	// Config says how the candidate is set up and where the comparison is
	// not like for like; it goes into the report.
	Config     string
	NewReplica func(ctx context.Context, env Env) (Replica, error)
	// WarmsUp says NewReplica honours Env.Warmup; the deploy scenario runs
	// such a candidate twice, with and without.
	WarmsUp bool
	// SizedLocal says NewReplica sizes its local tier by Env.LocalMaxCost,
	// so the candidate can also be run as NAME@MiB (see Select).
	SizedLocal bool
}

var registry = map[string]Candidate{}

// ErrUnknownName is what the error of Select or SelectScenarios is when a
// name is not known at all (rather than known but not takeable as given).
var ErrUnknownName = errors.New("unknown name")

// unknownName is an error that is ErrUnknownName.
type unknownName string

func (e unknownName) Error() string        { return string(e) }
func (e unknownName) Is(target error) bool { return target == ErrUnknownName }

// Register adds a candidate. Registering a name twice panics.
func Register(c Candidate) {
	if _, dup := registry[c.Name]; dup {
		panic("bench: candidate registered twice: " + c.Name)
	}
	registry[c.Name] = c
}

// Candidates returns the registered candidates, tiercache first.
func Candidates() []Candidate {
	out := make([]Candidate, 0, len(registry))
	for _, c := range registry {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := strings.HasPrefix(out[i].Name, "tiercache"), strings.HasPrefix(out[j].Name, "tiercache")
		if ti != tj {
			return ti
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Select picks candidates by name (all when names is empty). NAME@MiB is
// candidate NAME with a local tier of that many MiB, whatever the run's
// budget (Env.LocalMaxCost): two budgets then run side by side in one run,
// taking turns, so their ratio is not the machine's drift between runs.
func Select(names []string) ([]Candidate, error) {
	if len(names) == 0 {
		return Candidates(), nil
	}
	var out []Candidate
	for _, n := range names {
		c, err := lookup(n)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// lookup finds the candidate named name, NAME@MiB included.
func lookup(name string) (Candidate, error) {
	base, size, sized := strings.Cut(name, "@")
	c, ok := registry[base]
	if !ok {
		return Candidate{}, unknownName(fmt.Sprintf("bench: unknown candidate %q (have %s)", name, strings.Join(names2(Candidates()), ", ")))
	}
	if !sized {
		return c, nil
	}
	if !c.SizedLocal {
		return Candidate{}, fmt.Errorf("bench: candidate %q: %s has no local tier sized in bytes to set with @MiB", name, base)
	}
	mib, err := strconv.Atoi(size)
	if err != nil || mib < 1 || mib > 1<<20 {
		return Candidate{}, fmt.Errorf("bench: candidate %q: the local tier's size after @ must be a whole number of MiB, 1 to %d", name, 1<<20)
	}
	newReplica := c.NewReplica
	c.Name = name
	c.Config += fmt.Sprintf("; this entry: a %d MiB local tier", mib)
	c.NewReplica = func(ctx context.Context, env Env) (Replica, error) {
		env.LocalMaxCost = int64(mib) << 20
		return newReplica(ctx, env)
	}
	return c, nil
}

func names2(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
