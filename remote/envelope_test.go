package remote

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name          string
		payload       []byte
		compressAbove int
		compressed    bool
	}{
		{"empty", nil, 1024, false},
		{"small", []byte("hello"), 1024, false},
		{"large compressible", bytes.Repeat([]byte("abcd"), 1000), 1024, true},
		{"large, compression off", bytes.Repeat([]byte("abcd"), 1000), -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Envelope{WrittenAt: 11, FreshUntil: 22, ExpiresAt: 44, LoadMicros: 33, Negative: true, Type: 0xfeedface, Payload: tc.payload,
				Tags: []TagVersion{{Tag: "t", Version: "v1"}}}
			b := in.encode(tc.compressAbove)
			assert.Equal(t, tc.compressed, b[3]&flagCompressed != 0)
			if tc.compressed {
				assert.Less(t, len(b), len(tc.payload))
			}
			out, err := DecodeEnvelope(b, 1<<20)
			require.NoError(t, err)
			assert.Equal(t, in.WrittenAt, out.WrittenAt)
			assert.Equal(t, in.FreshUntil, out.FreshUntil)
			assert.Equal(t, in.ExpiresAt, out.ExpiresAt)
			assert.Equal(t, in.LoadMicros, out.LoadMicros)
			assert.True(t, out.Negative)
			assert.Equal(t, in.Type, out.Type)
			assert.Equal(t, in.Tags, out.Tags)
			assert.Equal(t, len(tc.payload), len(out.Payload))
			assert.True(t, bytes.Equal(tc.payload, out.Payload))
		})
	}
}

func TestDecodeEnvelopeRejects(t *testing.T) {
	good := (&Envelope{Payload: []byte("x")}).encode(-1)
	bomb := (&Envelope{Payload: bytes.Repeat([]byte{0}, 4096)}).encode(0)
	for name, b := range map[string][]byte{
		"foreign":        []byte(`{"json":"value"}`),
		"empty":          nil,
		"truncated":      good[:10],
		"newer format":   append([]byte{'t', 'c', 9}, good[3:]...),
		"unknown flag":   append([]byte{'t', 'c', 1, 0x80}, good[4:]...),
		"bad compressed": append([]byte{'t', 'c', 1, flagCompressed}, append(good[4:headerLen:headerLen], 0xff, 0xff, 0xff)...),
		"bomb":           bomb,
		"short type":     append(append([]byte{'t', 'c', 1, flagTyped}, good[4:headerLen]...), 1, 2, 3),
	} {
		_, err := DecodeEnvelope(b, 1024)
		assert.ErrorIs(t, err, ErrCorrupt, name)
	}
	_, err := DecodeEnvelope(good, 0)
	assert.ErrorIs(t, err, ErrCorrupt, "payload over the limit")
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add((&Envelope{Payload: []byte("hello")}).encode(-1))
	f.Add((&Envelope{Payload: []byte(strings.Repeat("z", 2000)), Negative: true}).encode(0))
	f.Add([]byte("tc\x01\x01"))
	f.Add((&Envelope{Payload: []byte("typed"), Type: 42, Tags: []TagVersion{{Tag: "a", Version: "1"}}}).encode(-1))
	f.Add([]byte{})
	f.Add([]byte(leaseMarker(LeaseToken(5))))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b, 1<<16)
		if _, marker := markerToken(b); marker != errors.Is(err, ErrMiss) {
			t.Fatalf("a lease marker, and only one, reads as no value: %v", err)
		}
		if err != nil {
			return
		}
		if len(e.Payload) > 1<<16 {
			t.Fatalf("payload of %d bytes passed the limit", len(e.Payload))
		}
		// Whatever decodes must encode to something that decodes the same.
		again, err := DecodeEnvelope(e.encode(-1), 1<<16)
		if err != nil || !bytes.Equal(again.Payload, e.Payload) || again.WrittenAt != e.WrittenAt || again.Negative != e.Negative || again.Type != e.Type {
			t.Fatalf("re-encode mismatch: %v", err)
		}
	})
}
