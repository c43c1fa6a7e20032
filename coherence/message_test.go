package coherence

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Origin: 1, Namespace: "svc:users", Kind: KindKeys, Keys: []string{"42", "", "ключ"}, PublishedAt: 123},
		{Origin: ^uint64(0), Namespace: "", Kind: KindFlush, PublishedAt: -1},
		{Origin: 7, Namespace: "n", Kind: KindTags, Keys: []string{"tag"}},
		{Origin: 8, Namespace: "n", Kind: KindKeys, Keys: []string{"a"}, LogID: "1700000000000-12"},
	} {
		got, err := decodeMessage(string(m.Encode()))
		require.NoError(t, err)
		assert.Equal(t, m, got)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := (&Message{Origin: 1, Namespace: "n", Kind: KindKeys, Keys: []string{"a"}}).Encode()
	for name, b := range map[string][]byte{
		"empty":      nil,
		"short":      good[:5],
		"magic":      append([]byte{'x'}, good[1:]...),
		"version":    append([]byte{'i', 3}, good[2:]...),
		"v2 no id":   append([]byte{'i', 2}, good[2:]...),
		"v2 bad len": append(append([]byte{'i', 2}, good[2:]...), 5, '1', '-', '0'),
		"kind":       append([]byte{'i', 1, 99}, good[3:]...),
		"truncated":  good[:len(good)-1],
		"trailing":   append(append([]byte{}, good...), 0),
		"huge count": append(append([]byte{}, good[:msgHeader+2]...), 0xff, 0xff, 0xff, 0x0f),
	} {
		_, err := decodeMessage(string(b))
		assert.ErrorIs(t, err, errMalformed, name)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add((&Message{Origin: 1, Namespace: "n", Kind: KindKeys, Keys: []string{"a", "b"}}).Encode())
	f.Add((&Message{Kind: KindFlush}).Encode())
	f.Add([]byte("i\x01\x01"))
	f.Add((&Message{Origin: 2, Namespace: "n", Kind: KindKeys, Keys: []string{"a"}, LogID: "1-1"}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(string(b))
		if err != nil {
			return
		}
		again, err := decodeMessage(string(m.Encode()))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again.Origin != m.Origin || again.Kind != m.Kind || again.Namespace != m.Namespace || len(again.Keys) != len(m.Keys) || again.LogID != m.LogID {
			t.Fatalf("round trip changed the message")
		}
	})
}

// TestScriptStampMatchesEncode checks that what a publishing script makes
// of a logged v1 message (version byte 2, then a length byte and the id)
// is what Encode makes of the message with its LogID.
func TestScriptStampMatchesEncode(t *testing.T) {
	m := Message{Origin: 3, Namespace: "svc", Kind: KindKeys, Keys: []string{"k"}, PublishedAt: 9}
	v1 := m.Encode()
	id := "1700000000000-0"
	stamped := append(append(append([]byte{v1[0], 2}, v1[2:]...), byte(len(id))), id...)
	m.LogID = id
	assert.Equal(t, m.Encode(), stamped)
}

// TestDecodeCopiesNothing: a message is decoded on the subscriber's reading
// goroutine, ahead of the kill of every copy it names, so its fields are
// substrings of the payload; the key list is the one allocation.
func TestDecodeCopiesNothing(t *testing.T) {
	payload := string((&Message{Origin: 1, Namespace: "svc", Kind: KindKeys, Keys: []string{"user:42"}, PublishedAt: 5, LogID: "1-1"}).Encode())
	var m Message
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if m, err = decodeMessage(payload); err != nil {
			t.Fatal(err)
		}
	})
	assert.Equal(t, 1.0, allocs)
	assert.Equal(t, []string{"user:42"}, m.Keys)
	assert.Equal(t, "svc", m.Namespace)
	assert.Equal(t, "1-1", m.LogID)
}
