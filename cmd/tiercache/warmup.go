package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
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

func hotCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis", os.Getenv("REDIS_URL"), "Redis URL (default $REDIS_URL)")
	ns := fs.String("namespace", "", "the cache's namespace (required)")
	n := fs.Int("n", 20, "how many keys to show")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *ns == "" || *n <= 0 {
		fmt.Fprintln(stderr, "tiercache hot: --namespace is required and --n must be positive")
		return 2
	}
	c, code := connect(*redisURL, "--redis", stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	top, err := warmup.Top(ctx, c, *ns, *n)
	if err != nil {
		fmt.Fprintln(stderr, "tiercache hot:", err)
		return 1
	}
	if len(top) == 0 {
		fmt.Fprintf(stdout, "no hot keys recorded for namespace %q (is a warmup.HotKeys set as the cache's Sampler?)\n", *ns)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "rank\tscore\tkey")
	for i, s := range top {
		fmt.Fprintf(tw, "%d\t%.1f\t%s\n", i+1, s.Score, s.Key)
	}
	tw.Flush()
	return 0
}

func warmupCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warmup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "source Redis URL (the running fleet's)")
	to := fs.String("to", os.Getenv("REDIS_URL"), "target Redis URL to warm (default $REDIS_URL)")
	ns := fs.String("namespace", "", "the cache's namespace (required)")
	n := fs.Int("n", 1000, "copy the hot set's N hottest keys")
	keysFile := fs.String("keys", "", "copy the keys listed in this file (one per line) instead of the hot set")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *ns == "" || *from == "" || *to == "" {
		fmt.Fprintln(stderr, "tiercache warmup: --namespace, --from and --to are required")
		return 2
	}
	src, code := connect(*from, "--from", stderr)
	if src == nil {
		return code
	}
	defer src.Close()
	dst, code := connect(*to, "--to", stderr)
	if dst == nil {
		return code
	}
	defer dst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var keys []string
	var scores []warmup.Scored
	if *keysFile != "" {
		var err error
		if keys, err = readKeys(*keysFile); err != nil {
			fmt.Fprintln(stderr, "tiercache warmup:", err)
			return 1
		}
	} else {
		var err error
		if scores, err = warmup.Top(ctx, src, *ns, *n); err != nil {
			fmt.Fprintln(stderr, "tiercache warmup:", err)
			return 1
		}
		for _, s := range scores {
			keys = append(keys, s.Key)
		}
	}
	bar := progressbar.NewOptions(len(keys), progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("copying"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
	copied, missing, err := copyKeys(ctx, src, dst, *ns, keys, scores, func(n int) { bar.Add(n) })
	bar.Finish()
	if err != nil {
		fmt.Fprintln(stderr, "tiercache warmup:", err)
		return 1
	}
	fmt.Fprintf(stdout, "warmed %s: %d keys copied, %d absent from the source\n", *to, copied, missing)
	return 0
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

// connect opens a client for a Redis URL given by flag.
func connect(url, flagName string, stderr io.Writer) (rueidis.Client, int) {
	if url == "" {
		fmt.Fprintf(stderr, "tiercache: %s (or $REDIS_URL) is required\n", flagName)
		return nil, 2
	}
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		fmt.Fprintf(stderr, "tiercache: bad %s %q: %v\n", flagName, url, err)
		return nil, 2
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		fmt.Fprintf(stderr, "tiercache: connect to %s: %v\n", url, err)
		return nil, 1
	}
	return c, 0
}
