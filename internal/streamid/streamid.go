// Package streamid orders Redis stream ids ("<ms>-<seq>"): the invalidation
// log's positions (package coherence) and the write-behind queue's order
// (package writebehind).
package streamid

import (
	"strconv"
	"strings"
)

// Less reports whether stream id a comes before b.
func Less(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if am != bm {
		x, _ := strconv.ParseUint(am, 10, 64)
		y, _ := strconv.ParseUint(bm, 10, 64)
		return x < y
	}
	x, _ := strconv.ParseUint(as, 10, 64)
	y, _ := strconv.ParseUint(bs, 10, 64)
	return x < y
}
