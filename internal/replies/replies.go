package replies

import (
	"errors"
	"strings"

	"github.com/redis/rueidis"
)

// Of returns the Redis error reply err is or wraps (a nil reply is none).
func Of(err error) (*rueidis.RedisError, bool) {
	var re *rueidis.RedisError
	if !errors.As(err, &re) || re.IsNil() {
		return nil, false
	}
	return re, true
}

// Transient reports whether a Redis error reply says "try later": a
// dataset loading, a Cluster or master in transition, a busy script.
func Transient(re *rueidis.RedisError) bool {
	if re.IsLoading() || re.IsTryAgain() || re.IsClusterDown() {
		return true
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "BUSY ")
}
