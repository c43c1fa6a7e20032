package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

const staleGrace = 100 * time.Millisecond

// value encodes a version with some payload, as services cache records.
func value(key string, v int64) string {
	return strconv.FormatInt(v, 10) + "|" + key + "|" + strings.Repeat("x", 64)
}

func versionOf(s string) (int64, error) {
	head, _, ok := strings.Cut(s, "|")
	if !ok {
		return 0, fmt.Errorf("bench: value %q has no version", s)
	}
	return strconv.ParseInt(head, 10, 64)
}
