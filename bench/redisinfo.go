package bench

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// adminClient is the bench's own connection to the Redis under test, for
// INFO; built on first use, closed by Run.Close.
type adminClient struct {
	once sync.Once
	c    rueidis.Client
	err  error
}

func (r *Run) adminClient() (rueidis.Client, error) {
	r.admin.once.Do(func() {
		r.admin.c, r.admin.err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr}, DisableCache: true})
	})
	return r.admin.c, r.admin.err
}

// Close releases what the run holds (its INFO connection).
func (r *Run) Close() {
	r.admin.once.Do(func() {}) // never opened: nothing to close
	if r.admin.c != nil {
		r.admin.c.Close()
	}
}

// info returns one INFO section's fields.
func (r *Run) info(ctx context.Context, section string) (map[string]string, error) {
	c, err := r.adminClient()
	if err != nil {
		return nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	text, err := c.Do(ictx, c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out, nil
}

// commandCalls is Redis's count of calls by command since it started
// (INFO commandstats). Redis counts the commands a Lua script runs as well
// as the script's own EVALSHA, so a script that reads and writes counts
// three. Nil when Redis does not answer (the failover scenario has it down).
func (r *Run) commandCalls(ctx context.Context) map[string]float64 {
	fields, err := r.info(ctx, "commandstats")
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for k, v := range fields {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		if n, err := strconv.ParseFloat(calls, 64); err == nil {
			out[name] = n
		}
	}
	return out
}

// redisCPU is the CPU time (user and system) Redis's main process has
// spent since it started (INFO cpu); ok is false when Redis does not answer.
func (r *Run) redisCPU(ctx context.Context) (_ time.Duration, ok bool) {
	fields, err := r.info(ctx, "cpu")
	if err != nil {
		return 0, false
	}
	user, err1 := strconv.ParseFloat(fields["used_cpu_user"], 64)
	sys, err2 := strconv.ParseFloat(fields["used_cpu_sys"], 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration((user + sys) * float64(time.Second)), true
}

// callsBetween is each command's calls between two commandCalls, without
// the bench's own INFO; nil when either is missing.
func callsBetween(before, after map[string]float64) map[string]float64 {
	if before == nil || after == nil {
		return nil
	}
	out := map[string]float64{}
	for name, n := range after {
		if d := n - before[name]; d > 0 && name != "info" {
			out[name] = d
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func divided(m map[string]float64, by float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = v / by
	}
	return out
}
