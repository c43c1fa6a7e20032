package remote

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/rueidis"
)

// ErrNotReplicated reports a write Redis applied but could not confirm on
// Options.WaitReplicas replicas in time: a failover now could lose it.
// Nothing is undone; the caller may retry (writes are idempotent).
var ErrNotReplicated = errors.New("remote: write not confirmed by enough replicas")

// writeScript is a publishing script that changes what readers see (Set,
// Delete, a generation bump): with Options.WaitReplicas it is followed, on
// the same connection, by WAIT, so that a write reported done survives a
// failover. Redis replicates asynchronously; without WAIT, a master killed
// just after a write can come back as a replica that never had it, and the
// cache would serve the older value from the new master until its TTL.
type writeScript struct {
	lua *rueidis.Lua
	src string
	sha string
}

func newWriteScript(body string) *writeScript {
	src := publishLua + body
	sum := sha1.Sum([]byte(src))
	return &writeScript{lua: rueidis.NewLuaScript(src), src: src, sha: hex.EncodeToString(sum[:])}
}

// run executes w with keys and args (the log already appended).
func (s *Store) run(ctx context.Context, w *writeScript, keys, args []string) rueidis.RedisResult {
	c := s.opts.Client
	if s.opts.WaitReplicas <= 0 {
		return w.lua.Exec(ctx, c, keys, args)
	}
	wait := c.B().Wait().Numreplicas(int64(s.opts.WaitReplicas)).Timeout(s.opts.WaitTimeout.Milliseconds()).Build()
	res := c.DoMulti(ctx, c.B().Evalsha().Sha1(w.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
	if err := res[0].Error(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		wait = c.B().Wait().Numreplicas(int64(s.opts.WaitReplicas)).Timeout(s.opts.WaitTimeout.Milliseconds()).Build()
		res = c.DoMulti(ctx, c.B().Eval().Script(w.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
	}
	if res[0].Error() != nil {
		return res[0]
	}
	n, err := res[1].AsInt64()
	if err != nil {
		return res[1]
	}
	if n < int64(s.opts.WaitReplicas) {
		return rueidis.NewErrorResult(fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, s.opts.WaitReplicas, s.opts.WaitTimeout))
	}
	return res[0]
}
