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
