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

// Every script that touches a generation's keys starts with prelude. Two
// things travel at the end of its keys and arguments, so each script's own
// body reads KEYS[1..nkeys] and ARGV[1..] as if they were not there:
//
//   - the generation fence, last: the last ARGV is the value the caller
//     believes the generation key holds ("" for no fence) and, when it is
//     not empty, the last KEY is the generation key. A script whose fence
//     does not match refuses with "TCGEN <stored value>", changing nothing:
//     after Redis lost the key (eviction, an empty restart) or the
//     namespace moved on, no write lands among the keys of a generation the
//     fleet has left. (On a Cluster the generation key is in another slot,
//     so scripts carry no fence; see generation.go.)
//   - the invalidation log, before it (see invlog.go): the last ARGV but
//     the fence is the log's cap ("0" when off) and, when it is on, the two
//     before it are the id prefix and the age in ms ("0": no age), and the
//     last KEY but the fence is the log.
//
// publish(channel, message) publishes, logging the message first when the
// log is on.
const prelude = `
local nkeys, nargs = #KEYS, #ARGV
local fence = ARGV[nargs]
nargs = nargs - 1
if fence ~= '' then
  local g = redis.call('GET', KEYS[nkeys])
  if g ~= fence then return redis.error_reply('TCGEN ' .. (g or '')) end
  nkeys = nkeys - 1
end
local logcap = ARGV[nargs]
local logpfx, logage = '', 0
if logcap ~= '0' then
  nkeys = nkeys - 1
  logpfx, logage = ARGV[nargs - 2], tonumber(ARGV[nargs - 1])
end
local logkey = KEYS[nkeys + 1]
local function publish(ch, msg)
  if logcap == '0' or msg == '' then return redis.call('PUBLISH', ch, msg) end
  local id
  if logage == 0 then
    id = redis.call('XADD', logkey, 'MAXLEN', '~', logcap, '*', 'm', msg)
  else
    id = redis.call('XADD', logkey, '*', 'm', msg)
    local ms = tonumber(string.match(id, '^%d+'))
    redis.call('XTRIM', logkey, 'MINID', string.format('%.0f', ms - logage))
    if redis.call('XTRIM', logkey, 'MAXLEN', '~', logcap) > 0 then
      -- Trimming by count may remove entries a subscriber still needs:
      -- say so where it can see it. (Trimming by age does not record
      -- max-deleted-entry-id, nor need to: see coherence/slotlogs.go.)
      local first = redis.call('XRANGE', logkey, '-', '+', 'COUNT', 1)[1][1]
      redis.call('XSETID', logkey, id, 'MAXDELETEDID', first)
    end
    redis.call('PEXPIRE', logkey, logage)
  end
  id = logpfx .. id
  return redis.call('PUBLISH', ch, string.sub(msg, 1, 1) .. '\2' .. string.sub(msg, 3) .. string.char(#id) .. id)
end
`

// script is a Lua script that starts with prelude. EVALSHA is tried first
// (rueidis loads the script on NOSCRIPT).
type script struct {
	lua *rueidis.Lua
	src string
	sha string
}

func newScript(body string) *script {
	src := prelude + body
	sum := sha1.Sum([]byte(src))
	return &script{lua: rueidis.NewLuaScript(src), src: src, sha: hex.EncodeToString(sum[:])}
}

// call is one script call: its own keys and arguments, and whether it
// changes what readers see (then, with Options.WaitReplicas, it is followed
// by WAIT on the same connection).
type call struct {
	keys, args []string
	write      bool
	// unfenced: the script handles the generation key itself. bare: no
	// log and no fence (a script that publishes nothing).
	unfenced, bare bool
}

// prepare appends the log and the fence of generation g to c's keys and
// arguments. c.keys must not be empty: on a Cluster the log is the one in
// keys[0]'s slot.
func (s *Store) prepare(g *genState, c call) ([]string, []string) {
	if c.bare {
		return c.keys, append(c.args, "0", "")
	}
	keys, args := s.withLog(c.keys, c.args)
	if !s.fenced || c.unfenced {
		return keys, append(args, "")
	}
	return append(keys, s.genKey), append(args, g.fenceValue())
}

// exec runs sc for one call under the current generation. If the fence
// refuses it (the generation key is gone or moved), the generation is
// settled (generation.go) and the call, rebuilt for the settled
// generation, runs once more.
func (s *Store) exec(ctx context.Context, sc *script, build func(g *genState) call) rueidis.RedisResult {
	g := s.state.Load()
	res := s.run(ctx, sc, g, build(g))
	if !isFenced(res.Error()) {
		return res
	}
	if err := s.settle(ctx, g); err != nil {
		return rueidis.NewErrorResult(err)
	}
	g = s.state.Load()
	return s.run(ctx, sc, g, build(g))
}

func (s *Store) run(ctx context.Context, sc *script, g *genState, c call) rueidis.RedisResult {
	res, err := s.runConfirmed(ctx, sc, g, c)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	return res
}

// runConfirmed is run with a WAIT that fell short apart: res is the
// script's reply all the same, and err wraps ErrNotReplicated.
func (s *Store) runConfirmed(ctx context.Context, sc *script, g *genState, c call) (rueidis.RedisResult, error) {
	keys, args := s.prepare(g, c)
	cl := s.opts.Client
	if !c.write || s.opts.WaitReplicas <= 0 {
		return sc.lua.Exec(ctx, cl, keys, args), nil
	}
	wait := cl.B().Wait().Numreplicas(int64(s.opts.WaitReplicas)).Timeout(s.opts.WaitTimeout.Milliseconds()).Build()
	res := cl.DoMulti(ctx, cl.B().Evalsha().Sha1(sc.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
	if err := res[0].Error(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		wait = cl.B().Wait().Numreplicas(int64(s.opts.WaitReplicas)).Timeout(s.opts.WaitTimeout.Milliseconds()).Build()
		res = cl.DoMulti(ctx, cl.B().Eval().Script(sc.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(), wait)
	}
	if res[0].Error() != nil {
		return res[0], nil
	}
	n, err := res[1].AsInt64()
	if err != nil {
		return res[1], nil
	}
	if n < int64(s.opts.WaitReplicas) {
		return res[0], fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, s.opts.WaitReplicas, s.opts.WaitTimeout)
	}
	return res[0], nil
}

// execMulti runs one script for several calls, pipelined (split by slot on
// a Cluster client), under one generation. When the fence refuses any of
// them, the generation is settled and the refused calls fail with
// errGenerationMoved: a batch is not replayed piecemeal.
func (s *Store) execMulti(ctx context.Context, sc *script, build func(g *genState) []call) []rueidis.RedisResult {
	g := s.state.Load()
	calls := build(g)
	execs := make([]rueidis.LuaExec, len(calls))
	for i, c := range calls {
		execs[i].Keys, execs[i].Args = s.prepare(g, c)
	}
	res := sc.lua.ExecMulti(ctx, s.opts.Client, execs...)
	fenced := false
	for i, r := range res {
		if isFenced(r.Error()) {
			fenced = true
			res[i] = rueidis.NewErrorResult(errGenerationMoved)
		}
	}
	if fenced {
		if err := s.settle(ctx, g); err != nil {
			for i := range res {
				if errors.Is(res[i].Error(), errGenerationMoved) {
					res[i] = rueidis.NewErrorResult(err)
				}
			}
		}
	}
	return res
}

// errGenerationMoved reports a batched call refused because the namespace's
// generation was not the one it was made for. The store has settled the
// generation since; a new call goes to the right keys.
var errGenerationMoved = errors.New("remote: the namespace generation moved")

func isFenced(err error) bool {
	if err == nil {
		return false
	}
	msg, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(msg.Error(), "TCGEN")
}

// isPermissionError reports an ACL refusal: NOPERM from a command, or the
// error a script's call of a forbidden command raises.
func isPermissionError(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "NOPERM") || strings.Contains(msg, "can't run this command")
}
