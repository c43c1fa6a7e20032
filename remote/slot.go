package remote

import (
	"strconv"
	"strings"
	"sync"
)

// keySlot is the Redis Cluster hash slot of a key: CRC16 (XMODEM) of its
// hash tag (the part between the first '{' and the next '}', when not
// empty) or of the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// bySlot splits keys into groups that share a hash slot, in first-seen
// order; on a single Redis there is one group.
func (s *Store) bySlot(keys []string, slotOf func(string) string) [][]string {
	if !s.cluster {
		return [][]string{keys}
	}
	at := map[uint16]int{}
	var out [][]string
	for _, k := range keys {
		sl := keySlot(slotOf(k))
		i, ok := at[sl]
		if !ok {
			i = len(out)
			at[sl] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], k)
	}
	return out
}

// slotsOf is the number of Redis Cluster hash slots.
const slotsOf = 16384

// slotTags holds, for every hash slot, the shortest string (in counting
// order of base-36 numbers) whose hash slot it is: "{" + tag + "}" puts a
// key in that slot. The invalidation log of a slot is named with it.
var slotTags = sync.OnceValue(func() *[slotsOf]string {
	var tags [slotsOf]string
	for n, left := uint64(0), slotsOf; left > 0; n++ {
		tag := strconv.FormatUint(n, 36)
		if sl := keySlot(tag); tags[sl] == "" {
			tags[sl] = tag
			left--
		}
	}
	return &tags
})

// SlotTag returns a hash tag (without braces) of the given slot.
func SlotTag(slot uint16) string { return slotTags()[slot%slotsOf] }
