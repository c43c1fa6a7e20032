package remote

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestKeySlotMatchesRedis compares keySlot with what CLUSTER KEYSLOT
// answered for the same keys (Redis 7.0).
func TestKeySlotMatchesRedis(t *testing.T) {
	for k, want := range map[string]uint16{
		"": 0, "a": 15495, "foo": 12182, "123456789": 12739, "user:{42}:profile": 8000,
		"{}x": 10595, "{x": 11068, "x}{y}": 12222, "{a}{b}": 15495,
	} {
		assert.Equal(t, want, keySlot(k), "key %q", k)
	}
}

// TestSlotTagsCoverEverySlot: every slot has a tag, and the tag is in it.
func TestSlotTagsCoverEverySlot(t *testing.T) {
	for sl := range uint16(slotsOf) {
		tag := SlotTag(sl)
		if !assert.NotEmpty(t, tag, "slot %d", sl) || !assert.Equal(t, sl, keySlot("x:{"+tag+"}"), "slot %d", sl) {
			return
		}
	}
}
