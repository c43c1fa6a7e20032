package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/tiercache/tiercache/remote"
)

var inspectCommand = command{
	name:     "inspect",
	synopsis: "--namespace NS [--redis ADDR] [--decode] [--json] KEY…",
	summary:  "show what Redis holds for cache keys: state, TTLs, sizes, tags, lease, value type",
	about: `
For each KEY of the namespace, what Redis holds and what a replica reading
it would do: the namespace generation and the value's Redis key; whether
the value is fresh, stale, a tombstone, invalidated by a tag, not a
readable envelope, or absent (and maybe being loaded); when it was
written, until when it is fresh, its expiry and the TTL Redis has left;
its size stored and uncompressed; the fingerprint of the value type and
codec that wrote it; its tags, each with whether its version still
matches; and the key's fill lease and waiters.

It only reads (GET and PTTL). A key that is absent is reported as absent,
with exit code 0; exit code 1 means Redis could not be read.

--decode prints the value as JSON (tiered's default codec); a value written
with another codec is said to be undecodable, not an error. --json prints
one JSON document, {"namespace": …, "keys": [ … ]}, for scripts.`,
	define: defineInspect,
}

func defineInspect(fs *flag.FlagSet) action {
	redisAddr := redisFlagOn(fs)
	ns := namespaceFlagOn(fs)
	decode := fs.Bool("decode", false, "print each value decoded as JSON (the default codec)")
	asJSON := fs.Bool("json", false, "print one JSON document instead of text")
	return func(inv *invocation) int {
		opt, redisProblem := redisFlag("redis", *redisAddr, true)
		noKey := ""
		if len(inv.args) == 0 {
			noKey = "no KEY given: name one or more cache keys after the flags, e.g. tiercache inspect --namespace svc:users 42"
		}
		if p := problems(inv.needNamespace(*ns), noKey, redisProblem); len(p) > 0 {
			return inv.usageErrors(p...)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		c, err := connect(ctx, opt)
		if err != nil {
			return inv.fail(err)
		}
		defer c.Close()
		reports := make([]remote.KeyReport, 0, len(inv.args))
		for _, k := range inv.args {
			r, err := remote.Inspect(ctx, c, *ns, k)
			if err != nil {
				return inv.fail(err)
			}
			reports = append(reports, r)
		}
		now := time.Now()
		if *asJSON {
			return writeInspectJSON(inv, *ns, reports, *decode, now)
		}
		for i, r := range reports {
			if i > 0 {
				fmt.Fprintln(inv.stdout)
			}
			printKey(inv.stdout, r, *decode, now)
		}
		return 0
	}
}

// keyState is what a replica reading the key would do, in a word for
// scripts and a phrase for people.
func keyState(r remote.KeyReport, now time.Time) (word, phrase string) {
	switch {
	case r.RedisKey == "":
		return "unknown-generation", fmt.Sprintf("unknown: the namespace has no readable generation key (%s:v1:gen): "+
			"no cache has written since Redis lost it, or the namespace is wrong", r.Namespace)
	case !r.Present && r.LeaseHolder != "":
		return "loading", "absent, being loaded: a reader waits for the lease holder's fill"
	case !r.Present:
		return "absent", "absent: no value in Redis; a reader misses and loads it"
	case r.Corrupt != nil:
		return "corrupt", fmt.Sprintf("not a readable envelope (%v): a reader treats it as a miss and its load replaces it", r.Corrupt)
	}
	for _, t := range r.Tags {
		if !t.Valid {
			return "invalidated", fmt.Sprintf("invalidated by tag %q: a reader treats it as a miss", t.Tag)
		}
	}
	switch {
	case r.Tombstone:
		return "tombstone", "tombstone: the loader found nothing; readers get not-found until it expires or the key is written"
	case !r.FreshUntil.IsZero() && now.After(r.FreshUntil):
		return "stale", "stale: served while one refresh runs"
	}
	return "fresh", "fresh: a reader is served this value"
}

// printKey writes one report as aligned lines.
func printKey(w io.Writer, r remote.KeyReport, decode bool, now time.Time) {
	// One width for every key, so that reports of several keys align.
	line := func(label, format string, a ...any) { fmt.Fprintf(w, "%-12s %s\n", label, fmt.Sprintf(format, a...)) }
	_, state := keyState(r, now)
	line("key", "%s", r.Key)
	line("namespace", "%s", r.Namespace)
	if r.RedisKey != "" {
		if _, runID, ok := strings.Cut(r.GenerationValue, "@"); ok && runID != "" {
			line("generation", "%d, set under Redis run id %s", r.Generation, runID)
		} else {
			line("generation", "%d", r.Generation)
		}
		line("redis key", "%s", r.RedisKey)
	}
	line("state", "%s", state)
	if r.Present {
		printValue(line, r, now)
	}
	if r.RedisKey != "" {
		if r.LeaseHolder == "" {
			line("lease", "none: no replica is loading it")
		} else {
			expects := ""
			if r.LeaseExpects > 0 {
				expects = fmt.Sprintf(", its holder expects a %v load", r.LeaseExpects)
			}
			line("lease", "held by %q, %v left%s", r.LeaseHolder, ms(r.LeaseTTL), expects)
		}
		if r.Waiting {
			line("waiters", "at least one replica waits for the fill (marker %v left)", ms(r.WaitTTL))
		} else {
			line("waiters", "none")
		}
	}
	if decode && r.Present {
		v, err := decodeValue(r)
		if err != nil {
			line("value", "%v", err)
			return
		}
		var out bytes.Buffer
		json.Indent(&out, v, "  ", "  ") // v is valid JSON: decodeValue checked
		fmt.Fprintf(w, "value\n  %s\n", out.String())
	}
}

// printValue writes the lines read from the value itself.
func printValue(line func(label, format string, a ...any), r remote.KeyReport, now time.Time) {
	if r.Format != 0 {
		line("envelope", "format %d", r.Format)
	}
	if r.Corrupt == nil {
		line("written", "%s", when(r.WrittenAt, now))
		if r.FreshUntil.IsZero() {
			line("fresh until", "it expires")
		} else {
			line("fresh until", "%s", when(r.FreshUntil, now))
		}
		if !r.ExpiresAt.IsZero() {
			line("expires", "%s, as the writer stamped it", when(r.ExpiresAt, now))
		}
	}
	if r.NoExpiry {
		line("redis ttl", "none: the key never expires (tiercache always sets one: written by something else)")
	} else {
		line("redis ttl", "%v left", ms(r.RedisTTL))
	}
	if r.Corrupt != nil {
		line("size", "%d B in Redis", r.StoredBytes)
		return
	}
	compression := "not compressed"
	if r.Compressed {
		compression = fmt.Sprintf("s2-compressed to %d B", r.CompressedBytes)
	}
	line("size", "%d B in Redis; payload %d B, %s", r.StoredBytes, r.PayloadBytes, compression)
	if r.Type == 0 {
		line("value type", "not recorded")
	} else {
		line("value type", "fingerprint 0x%016x (of the writer's Options.ValueType)", r.Type)
	}
	if r.LoadTime > 0 {
		line("load time", "%v", r.LoadTime)
	}
	if len(r.Tags) == 0 {
		line("tags", "none")
	}
	for _, t := range r.Tags {
		switch {
		case t.Valid:
			line("tag", "%q valid (version %s)", t.Tag, t.Version)
		case t.Current == "":
			line("tag", "%q invalidated: its version key is gone (the value recorded %s)", t.Tag, t.Version)
		default:
			line("tag", "%q invalidated: its version is now %s (the value recorded %s)", t.Tag, t.Current, t.Version)
		}
	}
}

// decodeValue returns the payload as JSON, or why it cannot.
func decodeValue(r remote.KeyReport) (json.RawMessage, error) {
	switch {
	case r.Corrupt != nil:
		return nil, fmt.Errorf("cannot decode: not a readable envelope")
	case r.Tombstone:
		return nil, fmt.Errorf("none: a tombstone carries no value")
	case !json.Valid(r.Payload):
		preview := r.Payload[:min(len(r.Payload), 48)]
		return nil, fmt.Errorf("cannot decode as JSON (written with another codec?); first bytes %q", preview)
	}
	return r.Payload, nil
}

func when(t, now time.Time) string {
	if t.IsZero() {
		return "not recorded"
	}
	d := t.Sub(now)
	rel := fmt.Sprintf("in %v", ms(d))
	if d < 0 {
		rel = fmt.Sprintf("%v ago", ms(-d))
	}
	return fmt.Sprintf("%s (%s)", t.UTC().Format("2006-01-02T15:04:05.000Z"), rel)
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// inspectJSON is one key of `inspect --json`: times in RFC 3339, durations
// in milliseconds.
type inspectJSON struct {
	Key             string          `json:"key"`
	State           string          `json:"state"`
	Generation      int64           `json:"generation"`
	GenerationValue string          `json:"generation_value,omitempty"`
	RedisKey        string          `json:"redis_key,omitempty"`
	Present         bool            `json:"present"`
	Corrupt         string          `json:"corrupt,omitempty"`
	Format          int             `json:"format,omitempty"`
	Tombstone       bool            `json:"tombstone"`
	WrittenAt       *time.Time      `json:"written_at,omitempty"`
	FreshUntil      *time.Time      `json:"fresh_until,omitempty"`
	ExpiresAt       *time.Time      `json:"expires_at,omitempty"`
	RedisTTLMillis  int64           `json:"redis_ttl_ms"` // -1: no expiry
	LoadMillis      float64         `json:"load_ms,omitempty"`
	StoredBytes     int             `json:"stored_bytes"`
	PayloadBytes    int             `json:"payload_bytes"`
	CompressedBytes int             `json:"compressed_bytes"`
	Compression     string          `json:"compression,omitempty"`
	ValueType       string          `json:"value_type,omitempty"` // the fingerprint, 0x…; absent when not recorded
	Tags            []tagJSON       `json:"tags,omitempty"`
	Lease           *leaseJSON      `json:"lease,omitempty"`
	WaitTTLMillis   *int64          `json:"wait_ttl_ms,omitempty"` // present when a replica waits
	Value           json.RawMessage `json:"value,omitempty"`
	ValueError      string          `json:"value_error,omitempty"`
}

type tagJSON struct {
	Tag     string `json:"tag"`
	Version string `json:"version"`
	Current string `json:"current"`
	Valid   bool   `json:"valid"`
}

type leaseJSON struct {
	Holder        string `json:"holder"`
	TTLMillis     int64  `json:"ttl_ms"`
	ExpectsMillis int64  `json:"expects_ms,omitempty"`
}

func writeInspectJSON(inv *invocation, ns string, reports []remote.KeyReport, decode bool, now time.Time) int {
	doc := struct {
		Namespace string        `json:"namespace"`
		Keys      []inspectJSON `json:"keys"`
	}{Namespace: ns}
	for _, r := range reports {
		doc.Keys = append(doc.Keys, toJSON(r, decode, now))
	}
	enc := json.NewEncoder(inv.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return inv.fail(err)
	}
	return 0
}

func toJSON(r remote.KeyReport, decode bool, now time.Time) inspectJSON {
	j := inspectJSON{Key: r.Key, Generation: r.Generation, GenerationValue: r.GenerationValue, RedisKey: r.RedisKey,
		Present: r.Present, Format: r.Format, Tombstone: r.Tombstone, RedisTTLMillis: r.RedisTTL.Milliseconds(),
		LoadMillis: float64(r.LoadTime.Microseconds()) / 1000, StoredBytes: r.StoredBytes, PayloadBytes: r.PayloadBytes,
		CompressedBytes: r.CompressedBytes}
	j.State, _ = keyState(r, now)
	if r.Corrupt != nil {
		j.Corrupt = r.Corrupt.Error()
	}
	if r.NoExpiry {
		j.RedisTTLMillis = -1
	}
	j.WrittenAt, j.FreshUntil, j.ExpiresAt = timePtr(r.WrittenAt), timePtr(r.FreshUntil), timePtr(r.ExpiresAt)
	if r.Present && r.Corrupt == nil {
		j.Compression = "none"
		if r.Compressed {
			j.Compression = "s2"
		}
	}
	if r.Type != 0 {
		j.ValueType = fmt.Sprintf("0x%016x", r.Type)
	}
	for _, t := range r.Tags {
		j.Tags = append(j.Tags, tagJSON{t.Tag, t.Version, t.Current, t.Valid})
	}
	if r.LeaseHolder != "" {
		j.Lease = &leaseJSON{Holder: r.LeaseHolder, TTLMillis: r.LeaseTTL.Milliseconds(), ExpectsMillis: r.LeaseExpects.Milliseconds()}
	}
	if r.Waiting {
		wait := r.WaitTTL.Milliseconds()
		j.WaitTTLMillis = &wait
	}
	if decode && r.Present {
		v, err := decodeValue(r)
		if err != nil {
			j.ValueError = err.Error()
		}
		j.Value = v
	}
	return j
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
