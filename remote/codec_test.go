package remote

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The JSON codec's string shortcut decodes exactly what encoding/json does.
func TestJSONStringShortcut(t *testing.T) {
	for _, tc := range []struct {
		in       string
		shortcut bool
	}{
		{`"plain"`, true},
		{`""`, true},
		{`"héllo ✓"`, true},
		{`"a\"b"`, false},
		{`"\u003c"`, false},
		{` "padded"`, false},
		{"\"\xff\"", false},
		{"\"tab\there\"", false},
		{`42`, false},
	} {
		_, ok := plainJSONString([]byte(tc.in))
		assert.Equal(t, tc.shortcut, ok, tc.in)
		var got, want string
		gotErr := JSON{}.Unmarshal([]byte(tc.in), &got)
		wantErr := json.Unmarshal([]byte(tc.in), &want)
		assert.Equal(t, wantErr == nil, gotErr == nil, tc.in)
		assert.Equal(t, want, got, tc.in)
	}
}

func FuzzJSONStringShortcut(f *testing.F) {
	f.Add([]byte(`"plain"`))
	f.Add([]byte(`"a\"b"`))
	f.Add([]byte("\"\xff\""))
	f.Add([]byte(`""`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, ok := plainJSONString(data)
		if !ok {
			return
		}
		var want string
		require.NoError(t, json.Unmarshal(data, &want), "encoding/json refused what the shortcut took: %q", data)
		require.Equal(t, want, s, "%q", data)
	})
}

// The string shortcut of Marshal writes exactly what encoding/json does.
func FuzzJSONMarshalStringShortcut(f *testing.F) {
	f.Add("plain")
	f.Add(`a"b`)
	f.Add("<tag>&")
	f.Add("caf\u00e9")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := JSON{}.Marshal(s)
		require.NoError(t, err)
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "%q", s)
	})
}

// The word-at-a-time scan finds every byte it must, wherever it sits in a
// word, and nothing else.
func TestNoQuoteBackslashOrControlAtEveryPosition(t *testing.T) {
	for n := range 20 {
		for p := range n {
			for _, c := range []byte{'"', '\\', 0x00, 0x01, 0x1f, 0x20, 0x21, '[', ']', 0x7f, 0x80, 0xa2, 0xdc, 0xff} {
				b := []byte(strings.Repeat("a", n))
				b[p] = c
				want := c >= 0x20 && c != '"' && c != '\\'
				assert.Equal(t, want, noQuoteBackslashOrControl(b), "len %d, %#x at %d", n, c, p)
			}
		}
	}
}

// The one-pass scan of ASCII agrees with the two checks apart (quotes,
// backslashes and control bytes; valid UTF-8) wherever the byte that
// decides sits, before, in and after the sixteen-byte words.
func TestPlainBodyAtEveryPosition(t *testing.T) {
	for n := range 40 {
		for p := range n {
			for _, c := range []byte{'"', '\\', 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xa2, 0xc3, 0xe2, 0xff} {
				b := []byte(strings.Repeat("a", n))
				b[p] = c
				want := noQuoteBackslashOrControl(b) && utf8.Valid(b)
				assert.Equal(t, want, plainBody(b), "len %d, %#x at %d", n, c, p)
			}
		}
	}
	// A valid multi-byte character after a run of ASCII words, and one cut
	// short.
	ok := strings.Repeat("a", 17) + "é" + strings.Repeat("b", 20)
	assert.True(t, plainBody([]byte(ok)))
	assert.False(t, plainBody([]byte(ok[:18])))
	assert.False(t, plainBody([]byte(ok+`"`)))
}

func BenchmarkPlainBody(b *testing.B) {
	body := []byte(strings.Repeat("x", 1022))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !plainBody(body) {
			b.Fatal("a plain body refused")
		}
	}
}
