package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

type user struct {
	Name string `json:"name"`
	Age  int    `json:"age"`
}

// inspectFixture writes, through a tiered.Cache, a live tagged value
// ("42"), a value of an invalidated tag ("43"), a tombstone ("gone") and a key being loaded by another replica
// ("loading"), and a foreign value ("foreign").
func inspectFixture(t *testing.T) (srvURL string) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	c, err := tiered.New[user](ctx, tiered.Options[user]{Client: rc, Namespace: "svc:users", LocalTTL: time.Minute, RemoteTTL: time.Hour, NegativeTTL: time.Hour})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	require.NoError(t, c.Set(ctx, "42", user{Name: "ada", Age: 36}, tiered.WithTags("team:7")))
	require.NoError(t, c.Set(ctx, "43", user{Name: "bob"}, tiered.WithTags("team:8")))
	require.NoError(t, c.InvalidateTags(ctx, "team:8"))
	_, err = c.GetOrLoad(ctx, "gone", func(context.Context) (user, error) { return user{}, tiered.ErrNotFound })
	require.ErrorIs(t, err, tiered.ErrNotFound)

	st, err := remote.New(remote.Options{Client: rc, Namespace: "svc:users", TTL: time.Hour})
	require.NoError(t, err)
	_, err = st.Settle(ctx)
	require.NoError(t, err)
	ok, err := st.Lease(ctx, "loading", remote.LeaseToken(300*time.Millisecond))
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, rc.Do(ctx, rc.B().Set().Key(st.ValueKey("foreign")).Value("plain text").Ex(time.Hour).Build()).Error())
	return srv.URL()
}

func TestInspectText(t *testing.T) {
	url := inspectFixture(t)
	// Keys before, between and after the flags.
	code, out, errOut := cli(t, "inspect", "42", "--namespace", "svc:users", "gone", "--redis", url, "--decode", "never", "loading", "foreign", "43")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{
		"key          42\n",
		"state        fresh: a reader is served this value\n",
		"envelope     format 1\n",
		"value type   fingerprint 0x",
		"tag          \"team:7\" valid (version ",
		"lease        none: no replica is loading it\n",
		"waiters      none\n",
		"value\n  {\n    \"name\": \"ada\",\n    \"age\": 36\n  }\n",
		"state        tombstone: the loader found nothing",
		"value        none: a tombstone carries no value\n",
		"state        absent: no value in Redis; a reader misses and loads it\n",
		"state        absent, being loaded: a reader waits for the lease holder's fill\n",
		"lease        held by ",
		", its holder expects a 300ms load\n",
		"state        not a readable envelope (remote: corrupt or foreign value: not a tiercache envelope)",
		"value        cannot decode: not a readable envelope\n",
		"state        invalidated by tag \"team:8\": a reader treats it as a miss\n",
		"tag          \"team:8\" invalidated: its version key is gone (the value recorded ",
	} {
		assert.Contains(t, out, want)
	}
	assert.Empty(t, errOut)

	// A namespace nobody wrote: its generation is unknown, and said so.
	code, out, _ = cli(t, "inspect", "--namespace", "svc:nobody", "--redis", url, "42")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "state        unknown: the namespace has no readable generation key (svc:nobody:v1:gen)")
}

func TestInspectJSON(t *testing.T) {
	url := inspectFixture(t)
	code, out, errOut := cli(t, "inspect", "--json", "--decode", "--namespace", "svc:users", "--redis", url, "42", "gone", "never", "foreign")
	require.Equal(t, 0, code, errOut)
	var doc struct {
		Namespace string        `json:"namespace"`
		Keys      []inspectJSON `json:"keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc), "one JSON document:\n%s", out)
	assert.Equal(t, "svc:users", doc.Namespace)
	require.Len(t, doc.Keys, 4)

	live := doc.Keys[0]
	assert.Equal(t, "fresh", live.State)
	assert.True(t, live.Present)
	assert.Equal(t, 1, live.Format)
	assert.Regexp(t, `^0x[0-9a-f]{16}$`, live.ValueType)
	assert.Equal(t, "none", live.Compression)
	assert.Greater(t, live.RedisTTLMillis, int64(0))
	require.NotNil(t, live.WrittenAt)
	assert.WithinDuration(t, time.Now(), *live.WrittenAt, time.Minute)
	require.Len(t, live.Tags, 1)
	assert.True(t, live.Tags[0].Valid)
	var v user
	require.NoError(t, json.Unmarshal(live.Value, &v))
	assert.Equal(t, user{Name: "ada", Age: 36}, v)

	assert.Equal(t, "tombstone", doc.Keys[1].State)
	assert.True(t, doc.Keys[1].Tombstone)
	assert.Empty(t, doc.Keys[1].Value)
	assert.Equal(t, "absent", doc.Keys[2].State)
	assert.False(t, doc.Keys[2].Present)
	assert.Equal(t, "corrupt", doc.Keys[3].State)
	assert.Contains(t, doc.Keys[3].Corrupt, "not a tiercache envelope")
	assert.Equal(t, "cannot decode: not a readable envelope", doc.Keys[3].ValueError)
}

// TestInspectUndecodableValue: a value of another codec is reported as
// undecodable, not as a failure.
func TestInspectUndecodableValue(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	c, err := tiered.New[[]byte](ctx, tiered.Options[[]byte]{Client: rc, Namespace: "svc:blobs", LocalTTL: time.Minute, RemoteTTL: time.Hour, Codec: tiered.BytesCodec})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Set(ctx, "b", []byte{0xff, 0x00, 'x'}))
	code, out, errOut := cli(t, "inspect", "--namespace", "svc:blobs", "--redis", srv.Addr(), "--decode", "b")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `value        cannot decode as JSON (written with another codec?); first bytes "\xff\x00x"`)
}

// TestInspectAsAReadOnlyACLUser: what docs/operations.md grants for
// inspect (+get +pttl, no PING) is enough.
func TestInspectAsAReadOnlyACLUser(t *testing.T) {
	url := inspectFixture(t)
	addr := strings.TrimPrefix(url, "redis://")
	admin := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	require.NoError(t, admin.Do(context.Background(), admin.B().Arbitrary("ACL", "SETUSER", "ops", "on", ">pw", "resetkeys", "~svc:users:*",
		"resetchannels", "-@all", "+get", "+pttl").Build()).Error())
	code, out, errOut := cli(t, "inspect", "--namespace", "svc:users", "--redis", "redis://ops:pw@"+addr, "42", "loading")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "state        fresh: a reader is served this value\n")
	assert.Contains(t, out, "lease        held by ")
}
