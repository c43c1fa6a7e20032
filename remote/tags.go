package remote

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Tags are versions, not member sets. Each tag of a generation has a
// version key, <ns>:v1:g<gen>:tagv:{<tag>}, holding a random token; a value
// written with tags records the version of each in its envelope, and is
// valid only while every one of them still holds that version.
// InvalidateTags deletes the version keys: every value carrying the tags is
// invalid at once, in O(1), with no list of members to read, race or lose.
//
// A version key that Redis evicted, or that expired, is missing, and a
// missing version matches no value: losing one can only turn values into
// misses, never keep an invalidated one alive. The next write with the tag
// creates a new random version.

// TagVersionKey is the Redis key of tag's version in generation g.
func (g *genState) tagVersionKey(tag string) string { return g.prefix + "tagv:{" + tag + "}" }

// TagOf returns the tag whose version Redis holds under redisKey, if
// redisKey is a tag version key of the store's current generation.
func (s *Store) TagOf(redisKey string) (string, bool) {
	rest, ok := strings.CutPrefix(redisKey, s.state.Load().prefix+"tagv:{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return "", false
	}
	return rest[:len(rest)-1], true
}

// A version longer than an envelope can carry (MaxTagBytes, ARGV[3]: not
// one tiercache made) is replaced as if it were missing: values recording
// it could not be read back.
var tagVersionsScript = newScript(`
local out = {}
for i = 1, nkeys do
  local v = redis.call('GET', KEYS[i])
  if v and #v <= tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[2], 'GT')
  else
    v = ARGV[1] .. '.' .. i
    redis.call('SET', KEYS[i], v, 'PX', ARGV[2])
  end
  out[i] = v
end
return out
`)

var maxTagBytesArg = strconv.Itoa(MaxTagBytes)

// TagVersions returns the current version of each tag, creating the
// missing ones, and makes each live at least ttl (a tagged value's TTL):
// what a write with tags records in its envelope. On a Cluster the tags
// are read one hash slot at a time.
func (s *Store) TagVersions(ctx context.Context, tags []string, ttl time.Duration) (_ []TagVersion, err error) {
	if len(tags) == 0 {
		return nil, nil
	}
	ctx, inf, err := s.begin(ctx, OpTags)
	if err != nil {
		return nil, err
	}
	defer inf.end(&err)
	ttlMs := s.ttlMillis(max(ttl, s.opts.TTL))
	out := make([]TagVersion, 0, len(tags))
	for _, group := range s.bySlot(tags, func(t string) string { return "{" + t + "}" }) {
		versions, err := s.exec(ctx, tagVersionsScript, func(g *genState) call {
			keys := make([]string, len(group))
			for i, t := range group {
				keys[i] = g.tagVersionKey(t)
			}
			return call{keys: keys, args: []string{NewToken(), ttlMs, maxTagBytesArg}}
		}).AsStrSlice()
		if err != nil {
			return nil, err
		}
		for i, t := range group {
			out = append(out, TagVersion{Tag: t, Version: versions[i]})
		}
	}
	return out, nil
}

var invalidateTagsScript = newScript(`
for i = 1, nkeys do redis.call('DEL', KEYS[i]) end
if ARGV[1] ~= '' then publish(ARGV[1], ARGV[2]) end
return 1
`)

// InvalidateTags deletes the versions of tags, so that no value written
// with one of them is valid any more, and publishes p, atomically (on a
// Cluster, one hash slot at a time, p with the last).
func (s *Store) InvalidateTags(ctx context.Context, tags []string, p Publication) (err error) {
	ctx, inf, err := s.begin(ctx, OpTags)
	if err != nil {
		return err
	}
	defer inf.end(&err)
	groups := s.bySlot(tags, func(t string) string { return "{" + t + "}" })
	for i, group := range groups {
		pub := Publication{}
		if i == len(groups)-1 {
			pub = p
		}
		err := s.exec(ctx, invalidateTagsScript, func(g *genState) call {
			keys := make([]string, len(group))
			for j, t := range group {
				keys[j] = g.tagVersionKey(t)
			}
			return call{keys: keys, args: []string{pub.Channel, string(pub.Message)}, write: true}
		}).Error()
		if err != nil {
			return err
		}
	}
	return nil
}

// tagsValid reports, for each envelope, whether every tag it carries still
// has the version it records. Envelopes without tags are valid and cost
// nothing; the others cost one MGET of their tags' versions.
func (s *Store) tagsValid(ctx context.Context, envs []*Envelope) ([]bool, error) {
	valid := make([]bool, len(envs))
	var keys []string
	seen := map[string]bool{}
	g := s.state.Load()
	for i, e := range envs {
		valid[i] = true
		for _, tv := range e.Tags {
			if k := g.tagVersionKey(tv.Tag); !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return valid, nil
	}
	m, err := rueidis.MGet(s.opts.Client, ctx, keys)
	if err != nil {
		return nil, err
	}
	for i, e := range envs {
		for _, tv := range e.Tags {
			msg := m[g.tagVersionKey(tv.Tag)]
			v, err := msg.ToString()
			if err != nil || v != tv.Version {
				valid[i] = false // missing (invalidated, evicted, expired) or moved on
				break
			}
		}
	}
	return valid, nil
}

// checkTags turns a tagged envelope whose tags moved on into ErrMiss.
func (s *Store) checkTags(ctx context.Context, e Envelope) (Envelope, error) {
	if len(e.Tags) == 0 {
		return e, nil
	}
	valid, err := s.tagsValid(ctx, []*Envelope{&e})
	if err != nil {
		return Envelope{}, err
	}
	if !valid[0] {
		return Envelope{}, errTagInvalidated
	}
	return e, nil
}

// errTagInvalidated reports a value written with a tag that was invalidated
// since (or whose version Redis lost): it is a miss (errors.Is ErrMiss).
var errTagInvalidated = fmt.Errorf("%w: a tag of the value was invalidated", ErrMiss)

var dropStaleScript = newScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 32) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
`)

// dropIfUnchanged deletes key's value if it is still the one whose
// envelope header is header (the write time makes it unique): a value of
// an invalidated tag, found by a reader that is about to load it again.
func (s *Store) dropIfUnchanged(ctx context.Context, key string, header []byte) error {
	return s.exec(ctx, dropStaleScript, func(g *genState) call {
		return call{keys: g.keys(key)[:1], args: []string{string(header)}, write: true}
	}).Error()
}
