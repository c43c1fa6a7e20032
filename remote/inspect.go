package remote

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// Inspect is for people, not for the read path: it says what Redis holds
// for one key, so an operator can see why a replica misses, serves a
// tombstone or waits. It reads only (GET and PTTL, pipelined), never
// settles or moves the generation, and takes no Store, so a tool can use
// it with nothing but a client.

// inspectTimeout bounds Inspect when its ctx has no sooner deadline: as a
// Store's default Options.Timeout, but for a whole report of a few round
// trips.
const inspectTimeout = 2 * time.Second

// inspectMaxPayload bounds the payload Inspect decompresses. The cache's
// own limit (Options.MaxValueBytes) is not known here, so this is only a
// guard against a decompression bomb, well above any sane value.
const inspectMaxPayload = 64 << 20

// KeyReport is what Redis holds for one cache key: Inspect's answer. Its
// fields were read in two or three pipelined round trips, not atomically;
// a key written meanwhile may show parts of both states.
type KeyReport struct {
	Namespace, Key string
	// Generation is the namespace's generation, and GenerationValue the
	// generation key's value ("<gen>@<run id>"). Generation is 0 when the
	// key is missing or unreadable: the generation is then unknown, no
	// value can be found, and the next cache to start or write sets a new
	// one.
	Generation      int64
	GenerationValue string
	// RedisKey is the Redis key of the value in that generation ("" when
	// the generation is unknown).
	RedisKey string
	// Present says that Redis holds a value under RedisKey, readable or
	// not.
	Present bool
	// Corrupt says why a present value is not a readable envelope (a
	// foreign value, a truncated one, a newer format); it wraps ErrCorrupt.
	// The fields read from the envelope are then zero.
	Corrupt error
	// Format is the envelope's format version, read from its header even
	// when the rest is unreadable (0: not a tiercache envelope).
	Format int
	// Tombstone: the value is a negative entry (the loader found nothing).
	Tombstone bool
	// WrittenAt, FreshUntil and ExpiresAt are the envelope's stamps (zero
	// when it does not state them: FreshUntil zero means fresh until it
	// expires). LoadTime is the last measured load's duration.
	WrittenAt, FreshUntil, ExpiresAt time.Time
	LoadTime                         time.Duration
	// RedisTTL is the value's remaining time to live in Redis, as PTTL
	// reads it; NoExpiry says Redis holds it with no TTL (tiercache never
	// writes one: it came from elsewhere).
	RedisTTL time.Duration
	NoExpiry bool
	// StoredBytes is the value's size in Redis: header, type, tags and
	// payload as stored. PayloadBytes is the payload uncompressed and
	// CompressedBytes as stored (equal to PayloadBytes when Compressed is
	// false: the payload was small or did not shrink).
	StoredBytes, PayloadBytes, CompressedBytes int
	Compressed                                 bool
	// Type is the fingerprint of the writer's value type and codec (see
	// tiered's Options.ValueType); 0 when the value does not record one.
	Type uint64
	// Tags are the tags the value was written with, each with the version
	// Redis holds for it now.
	Tags []TagState
	// LeaseHolder is the token of the replica holding the key's fill lease
	// ("" when none: no load of the key is running), LeaseTTL how long the
	// lease still runs, and LeaseExpects how long its holder expected its
	// load to take (0 when it did not say).
	LeaseHolder  string
	LeaseTTL     time.Duration
	LeaseExpects time.Duration
	// Waiting says a wait marker is set: some replica waits for the
	// holder's fill (the marker does not count them). WaitTTL is how long
	// it still runs.
	Waiting bool
	WaitTTL time.Duration
	// Payload is the value as its codec wrote it, uncompressed; nil when
	// absent, corrupt or a tombstone.
	Payload []byte
}

// TagState is one tag of an inspected value. Tags are versions, not member
// sets (tags.go): the value belongs to the tag, and a reader accepts it,
// only while the tag's version key still holds the version the value
// recorded. InvalidateTags deletes the version key.
type TagState struct {
	Tag string
	// Version is the tag's version the value recorded when written;
	// Current is what the tag's version key holds now ("" when it is
	// missing: invalidated, evicted or expired).
	Version, Current string
	// Valid: Current equals Version, so this tag does not invalidate the
	// value.
	Valid bool
}

// Inspect reads what Redis holds for key of namespace ns: the namespace's
// generation, the value's envelope, its TTL and tags, and the key's fill
// lease and wait marker. An absent key or an unreadable value is a report,
// not an error; errors are Redis's (or ctx's), or ErrInvalidOptions for a
// nil client or an empty namespace. When ctx has no deadline within
// a couple of seconds, Inspect sets one.
func Inspect(ctx context.Context, client rueidis.Client, ns, key string) (KeyReport, error) {
	if client == nil || ns == "" {
		return KeyReport{}, fmt.Errorf("%w: Inspect needs a client and a namespace", ErrInvalidOptions)
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > inspectTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, inspectTimeout)
		defer cancel()
	}
	r := KeyReport{Namespace: ns, Key: key}
	genValue, err := client.Do(ctx, client.B().Get().Key(generationKey(ns)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("remote: inspect %q: read the generation: %w", key, err)
	}
	r.GenerationValue = genValue
	gen, _, ok := parseGeneration(genValue)
	if !ok {
		return r, nil
	}
	g := newGenState(ns, gen, genValue)
	keys := g.keys(key) // value, lease, wait marker
	r.Generation, r.RedisKey = gen, keys[0]
	res := client.DoMulti(ctx,
		client.B().Get().Key(keys[0]).Build(), client.B().Pttl().Key(keys[0]).Build(),
		client.B().Get().Key(keys[1]).Build(), client.B().Pttl().Key(keys[1]).Build(),
		client.B().Pttl().Key(keys[2]).Build())
	for _, x := range res {
		if err := x.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return r, fmt.Errorf("remote: inspect %q: %w", key, err)
		}
	}
	if raw, err := res[0].AsBytes(); err == nil {
		if holder, ok := markerToken(raw); ok { // a miss's lease, in place
			r.LeaseHolder, r.LeaseTTL, r.LeaseExpects = holder, max(pttl(res[1]), 0), holderExpects(holder)
		} else {
			r.readValue(raw, pttl(res[1]))
		}
	}
	if holder, err := res[2].ToString(); err == nil { // a refresh's lease
		r.LeaseHolder, r.LeaseTTL, r.LeaseExpects = holder, max(pttl(res[3]), 0), holderExpects(holder)
	}
	if wait := pttl(res[4]); wait != -2*time.Millisecond {
		r.Waiting, r.WaitTTL = true, max(wait, 0)
	}
	if err := r.readTags(ctx, client, g); err != nil {
		return r, fmt.Errorf("remote: inspect %q: tags: %w", key, err)
	}
	return r, nil
}

// pttl is a PTTL reply as a duration: -1 ms for a key with no expiry,
// -2 ms for a missing one, as Redis says.
func pttl(res rueidis.RedisResult) time.Duration {
	ms, err := res.AsInt64()
	if err != nil {
		return -2 * time.Millisecond
	}
	return time.Duration(ms) * time.Millisecond
}

// readValue fills the report from the value Redis holds and its PTTL.
func (r *KeyReport) readValue(raw []byte, ttl time.Duration) {
	r.Present, r.StoredBytes = true, len(raw)
	r.RedisTTL, r.NoExpiry = max(ttl, 0), ttl == -time.Millisecond
	if len(raw) > 2 && raw[0] == magic0 && raw[1] == magic1 {
		r.Format = int(raw[2])
	}
	e, err := DecodeEnvelope(raw, inspectMaxPayload)
	if err != nil {
		r.Corrupt = err
		return
	}
	r.Tombstone, r.Type, r.LoadTime = e.Negative, e.Type, time.Duration(e.LoadMicros)*time.Microsecond
	r.WrittenAt, r.FreshUntil, r.ExpiresAt = unixTime(e.WrittenAt), unixTime(e.FreshUntil), unixTime(e.ExpiresAt)
	r.Compressed = raw[3]&flagCompressed != 0
	r.PayloadBytes = len(e.Payload)
	// What is not metadata is the payload as stored: the metadata's size is
	// that of the same envelope encoded with no payload.
	r.CompressedBytes = len(raw) - len((&Envelope{Type: e.Type, Tags: e.Tags}).encode(-1))
	if !e.Negative {
		r.Payload = e.Payload
	}
	for _, t := range e.Tags {
		r.Tags = append(r.Tags, TagState{Tag: t.Tag, Version: t.Version})
	}
}

// readTags reads the current version of each of the value's tags.
func (r *KeyReport) readTags(ctx context.Context, client rueidis.Client, g *genState) error {
	if len(r.Tags) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, len(r.Tags))
	for i, t := range r.Tags {
		cmds[i] = client.B().Get().Key(g.tagVersionKey(t.Tag)).Build()
	}
	for i, res := range client.DoMulti(ctx, cmds...) {
		v, err := res.ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return err
		}
		r.Tags[i].Current, r.Tags[i].Valid = v, err == nil && v == r.Tags[i].Version
	}
	return nil
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
