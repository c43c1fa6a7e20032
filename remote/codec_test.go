package remote

import (
	"bytes"
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

// plainByBytes is plainBody's definition, a byte at a time.
func plainByBytes(b []byte) bool {
	for _, c := range b {
		if c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return utf8.Valid(b)
}

// The word-at-a-time scan finds a control byte wherever it sits in a word,
// beside bytes above 0x7f too, and nothing else.
func TestNoControlAtEveryPosition(t *testing.T) {
	for n := range 20 {
		for p := range n {
			for _, fill := range []byte{'a', 0xff} {
				for _, c := range []byte{0x00, 0x01, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0x9f, 0xa0, 0xff} {
					b := bytes.Repeat([]byte{fill}, n)
					b[p] = c
					assert.Equal(t, c >= 0x20, noControl(b), "len %d, %#x at %d in %#x", n, c, p, fill)
				}
			}
		}
	}
}

// plainBody agrees with its definition wherever the byte that decides
// sits: before, in and after the four-word blocks, and after a block
// holding a byte above 0x7f.
func TestPlainBodyAtEveryPosition(t *testing.T) {
	for n := range 80 {
		for p := range n {
			for _, c := range []byte{'"', '\\', 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xa2, 0xc3, 0xe2, 0xff} {
				b := []byte(strings.Repeat("a", n))
				b[p] = c
				assert.Equal(t, plainByBytes(b), plainBody(b), "len %d, %#x at %d", n, c, p)
				if p > 1 { // and after a valid two-byte character
					b[0], b[1] = 0xc3, 0xa9
					assert.Equal(t, plainByBytes(b), plainBody(b), "é, len %d, %#x at %d", n, c, p)
				}
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
