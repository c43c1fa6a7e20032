package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/rueidis"
	"github.com/schollz/progressbar/v3"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/warmup"
)

var hotCommand = command{
	name:     "hot",
	synopsis: "--namespace NS [--redis ADDR] [--n N]",
	summary:  "show a namespace's hottest keys in the fleet, with their scores",
	about: `
Lists the namespace's hot set: the keys the fleet's replicas read most, as
their warmup.HotKeys samplers counted them, hottest first, with their
decaying scores. Empty when no cache of the namespace has a HotKeys
Sampler.`,
	define: defineHot,
}

func defineHot(fs *flag.FlagSet) action {
	redisAddr := redisFlagOn(fs)
	ns := namespaceFlagOn(fs)
	n := fs.Int("n", 20, "show the `N` hottest keys")
	return func(inv *invocation) int {
		opt, redisProblem := redisFlag("redis", *redisAddr, true)
		list := problems(inv.namespaceOnly(*ns), redisProblem)
		if *n <= 0 {
			list = append(list, fmt.Sprintf("--n must be positive (got %d): e.g. --n 20", *n))
		}
		if len(list) > 0 {
			return inv.usageErrors(list...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := connect(ctx, opt)
		if err != nil {
			return inv.fail(err)
		}
		defer c.Close()
		top, err := warmup.Top(ctx, c, *ns, *n)
		if err != nil {
			return inv.fail(err)
		}
		if len(top) == 0 {
			fmt.Fprintf(inv.stdout, "no hot keys recorded for namespace %q (is a warmup.HotKeys set as the cache's Sampler?)\n", *ns)
			return 0
		}
		tw := tabwriter.NewWriter(inv.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "rank\tscore\tkey")
		for i, s := range top {
			fmt.Fprintf(tw, "%d\t%.1f\t%s\n", i+1, s.Score, s.Key)
		}
		tw.Flush()
		return 0
	}
}

var warmupCommand = command{
	name:     "warmup",
	synopsis: "--namespace NS --from ADDR [--to ADDR] [--n N | --keys FILE]",
	summary:  "warm a Redis before a deploy: copy the hot set's keys (or a file's) from a source Redis",
	about: `
Copies values, with their remaining TTLs, from the fleet's Redis (--from) to
the Redis to warm (--to), under each side's current generation: the hot
set's N hottest keys and the hot set itself (so replicas started on the
target preload the same keys), or the keys listed in a file. The two must
be different Redis servers.`,
	define: defineWarmup,
}

func defineWarmup(fs *flag.FlagSet) action {
	from := fs.String("from", "", "`ADDR` of the source Redis, the running fleet's: host:port, redis://… or rediss://…")
	to := fs.String("to", "", "`ADDR` of the Redis to warm (default $REDIS_URL)")
	ns := namespaceFlagOn(fs)
	n := fs.Int("n", 1000, "copy the hot set's `N` hottest keys")
	keysFile := fs.String("keys", "", "copy the keys listed in this `FILE` (one per line) instead of the hot set")
	return func(inv *invocation) int {
		src, fromProblem := redisFlag("from", *from, false)
		dst, toProblem := redisFlag("to", *to, true)
		list := problems(inv.namespaceOnly(*ns), fromProblem, toProblem)
		if *n <= 0 && *keysFile == "" {
			list = append(list, fmt.Sprintf("--n must be positive (got %d): e.g. --n 1000", *n))
		}
		if fromProblem == "" && toProblem == "" && src.InitAddress[0] == dst.InitAddress[0] && src.SelectDB == dst.SelectDB {
			list = append(list, fmt.Sprintf("--from and --to are the same Redis (%s, database %d): "+
				"--from names the fleet's Redis to copy from, --to the one to warm", src.InitAddress[0], src.SelectDB))
		}
		if len(list) > 0 {
			return inv.usageErrors(list...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		srcClient, err := connect(ctx, src)
		if err != nil {
			return inv.fail(fmt.Errorf("--from: %w", err))
		}
		defer srcClient.Close()
		dstClient, err := connect(ctx, dst)
		if err != nil {
			return inv.fail(fmt.Errorf("--to: %w", err))
		}
		defer dstClient.Close()

		var keys []string
		var scores []warmup.Scored
		if *keysFile != "" {
			if keys, err = readKeys(*keysFile); err != nil {
				return inv.fail(err)
			}
		} else {
			if scores, err = warmup.Top(ctx, srcClient, *ns, *n); err != nil {
				return inv.fail(err)
			}
			for _, s := range scores {
				keys = append(keys, s.Key)
			}
		}
		bar := progressbar.NewOptions(len(keys), progressbar.OptionSetWriter(inv.stderr), progressbar.OptionSetDescription("copying"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
		copied, missing, err := copyKeys(ctx, srcClient, dstClient, *ns, keys, scores, func(n int) { bar.Add(n) })
		bar.Finish()
		if err != nil {
			return inv.fail(err)
		}
		fmt.Fprintf(inv.stdout, "warmed %s: %d keys copied, %d absent from the source\n", dst.InitAddress[0], copied, missing)
		return 0
	}
}

func readKeys(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k := strings.TrimSpace(sc.Text()); k != "" {
			keys = append(keys, k)
		}
	}
	return keys, sc.Err()
}

// copyKeys copies keys' values with their remaining TTLs from src to dst,
// under each side's current generation, in pipelined batches; with scores,
// the hot set too, so replicas started on dst preload the same keys.
func copyKeys(ctx context.Context, src, dst rueidis.Client, ns string, keys []string, scores []warmup.Scored, progress func(int)) (copied, missing int, err error) {
	from, err := store(ctx, src, ns)
	if err != nil {
		return 0, 0, err
	}
	to, err := store(ctx, dst, ns)
	if err != nil {
		return 0, 0, err
	}
	const batch = 500
	for start := 0; start < len(keys); start += batch {
		part := keys[start:min(start+batch, len(keys))]
		reads := make(rueidis.Commands, 0, 2*len(part))
		for _, k := range part {
			rk := from.ValueKey(k)
			reads = append(reads, src.B().Get().Key(rk).Build(), src.B().Pttl().Key(rk).Build())
		}
		res := src.DoMulti(ctx, reads...)
		writes := make(rueidis.Commands, 0, len(part))
		for i, k := range part {
			v, err := res[2*i].AsBytes()
			if rueidis.IsRedisNil(err) {
				missing++
				continue
			}
			if err != nil {
				return copied, missing, fmt.Errorf("read %q: %w", k, err)
			}
			if remote.IsLeaseMarker(v) {
				missing++ // being loaded: no value yet
				continue
			}
			ttl, err := res[2*i+1].AsInt64()
			if err != nil || ttl <= 0 {
				missing++ // expired meanwhile, or no TTL: not one of ours
				continue
			}
			writes = append(writes, dst.B().Set().Key(to.ValueKey(k)).Value(rueidis.BinaryString(v)).PxMilliseconds(ttl).Build())
		}
		for _, r := range dst.DoMulti(ctx, writes...) {
			if err := r.Error(); err != nil {
				return copied, missing, fmt.Errorf("write: %w", err)
			}
		}
		copied += len(writes)
		progress(len(part))
	}
	if len(scores) > 0 {
		cmd := dst.B().Zadd().Key(warmup.HotKey(ns)).ScoreMember()
		for _, s := range scores {
			cmd = cmd.ScoreMember(s.Score, s.Key)
		}
		if err := dst.Do(ctx, cmd.Build()).Error(); err != nil {
			return copied, missing, fmt.Errorf("copy the hot set: %w", err)
		}
	}
	return copied, missing, nil
}

// store is a remote.Store at the namespace's current generation on c. If
// Redis lost the generation it moves the namespace to a new one, and tells
// the replicas as a cache would.
func store(ctx context.Context, c rueidis.Client, ns string) (*remote.Store, error) {
	origin := rand.Uint64() | 1
	st, err := remote.New(remote.Options{Client: c, Namespace: ns, TTL: time.Hour,
		GenerationMessage: func(value string) remote.Publication {
			m := coherence.Message{Origin: origin, Namespace: ns, Kind: coherence.KindFlush, Keys: []string{value}, PublishedAt: time.Now().UnixNano()}
			return remote.Publication{Channel: ns + ":inv", Message: m.Encode()}
		}})
	if err != nil {
		return nil, err
	}
	if _, err := st.Settle(ctx); err != nil {
		return nil, err
	}
	return st, nil
}
