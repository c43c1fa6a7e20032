package remote

import (
	"strconv"

	"github.com/redis/rueidis"
)

// The invalidation log makes a namespace's invalidations resumable: every
// script that publishes a message first appends it to a capped stream,
// <ns>:v1:invlog (field m), and publishes a copy stamped with the entry's
// id: the message's version byte becomes 2 and the id is appended after a
// one-byte length (package coherence decodes both forms). A subscriber
// that missed messages replays the stream from the last id it saw.
//
// Every publishing script starts with publishLua. The log travels at the
// end of a script's arguments: the last ARGV is the cap ("0" when the log
// is off) and, when it is on, the last KEY is the log. nkeys is the number
// of the script's own keys.
const publishLua = `
local logcap = ARGV[#ARGV]
local nkeys = #KEYS
if logcap ~= '0' then nkeys = nkeys - 1 end
local function publish(ch, msg)
  if logcap == '0' or msg == '' then return redis.call('PUBLISH', ch, msg) end
  local id = redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', logcap, '*', 'm', msg)
  return redis.call('PUBLISH', ch, string.sub(msg, 1, 1) .. '\2' .. string.sub(msg, 3) .. string.char(#id) .. id)
end
`

// publishingScript is a script that may call publish(channel, message).
func publishingScript(body string) *rueidis.Lua { return rueidis.NewLuaScript(publishLua + body) }

// InvalidationLogKey is the stream of the namespace's invalidation log.
func (s *Store) InvalidationLogKey() string { return s.opts.Namespace + ":v1:invlog" }

// withLog appends the log's key and cap to a publishing script's keys and
// arguments.
func (s *Store) withLog(keys, args []string) ([]string, []string) {
	if s.opts.InvalidationLog <= 0 {
		return keys, append(args, "0")
	}
	return append(keys, s.InvalidationLogKey()), append(args, strconv.Itoa(s.opts.InvalidationLog))
}
