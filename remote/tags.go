package remote

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"
)

// AddTags records key in each tag's set. A tag set expires RemoteTTL after
// the last key was added to it, so tag sets never grow without bound: a
// member lingers at most that long after its key is gone.
func (s *Store) AddTags(ctx context.Context, key string, tags []string) (err error) {
	if len(tags) == 0 {
		return nil
	}
	ctx, done, err := s.begin(ctx, OpTags)
	if err != nil {
		return err
	}
	defer done(&err)
	c := s.opts.Client
	ttl := strconv.FormatInt(s.opts.TTL.Milliseconds(), 10)
	cmds := make(rueidis.Commands, 0, 3*len(tags))
	for _, t := range tags {
		k := s.TagKey(t)
		cmds = append(cmds,
			c.B().Sadd().Key(k).Member(key).Build(),
			// NX sets a first expiry; GT only ever extends it.
			c.B().Arbitrary("PEXPIRE").Keys(k).Args(ttl, "NX").Build(),
			c.B().Arbitrary("PEXPIRE").Keys(k).Args(ttl, "GT").Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// TagMembers lists the keys recorded under tag.
func (s *Store) TagMembers(ctx context.Context, tag string) (_ []string, err error) {
	ctx, done, err := s.begin(ctx, OpTags)
	if err != nil {
		return nil, err
	}
	defer done(&err)
	c := s.opts.Client
	return c.Do(ctx, c.B().Smembers().Key(s.TagKey(tag)).Build()).AsStrSlice()
}

// RemoveTag deletes tag's set.
func (s *Store) RemoveTag(ctx context.Context, tag string) (err error) {
	ctx, done, err := s.begin(ctx, OpTags)
	if err != nil {
		return err
	}
	defer done(&err)
	c := s.opts.Client
	return c.Do(ctx, c.B().Del().Key(s.TagKey(tag)).Build()).Error()
}
