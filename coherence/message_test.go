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
	} {
		got, err := Decode(m.Encode())
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
		"version":    append([]byte{'i', 2}, good[2:]...),
		"kind":       append([]byte{'i', 1, 99}, good[3:]...),
		"truncated":  good[:len(good)-1],
		"trailing":   append(append([]byte{}, good...), 0),
		"huge count": append(append([]byte{}, good[:msgHeader+2]...), 0xff, 0xff, 0xff, 0x0f),
	} {
		_, err := Decode(b)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add((&Message{Origin: 1, Namespace: "n", Kind: KindKeys, Keys: []string{"a", "b"}}).Encode())
	f.Add((&Message{Kind: KindFlush}).Encode())
	f.Add([]byte("i\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(m.Encode())
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again.Origin != m.Origin || again.Kind != m.Kind || again.Namespace != m.Namespace || len(again.Keys) != len(m.Keys) {
			t.Fatalf("round trip changed the message")
		}
	})
}
