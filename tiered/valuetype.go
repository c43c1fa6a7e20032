package tiered

import (
	"fmt"
	"hash/fnv"
	"reflect"

	"github.com/tiercache/tiercache/remote"
)

// defaultValueType names V and the codec: "example.com/svc.User
// remote.JSON". A type without a name (a slice, a map) is named by its
// literal, "[]string".
func defaultValueType[V any](codec Codec) string {
	t := reflect.TypeFor[V]()
	name := t.String()
	if t.Name() != "" && t.PkgPath() != "" {
		name = t.PkgPath() + "." + t.Name()
	}
	return fmt.Sprintf("%s %T", name, codec)
}

// valueTypeID is the fingerprint of a ValueType stored with each value
// (remote.Envelope.Type); never 0, which means "not stated".
func valueTypeID(valueType string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(valueType))
	return max(h.Sum64(), 1)
}

// checkType refuses a value written under another ValueType. Tombstones
// and values that do not state a type are accepted.
func (c *Cache[V]) checkType(e *remote.Envelope) error {
	if e.Negative || e.Type == 0 || e.Type == c.typeID {
		return nil
	}
	return fmt.Errorf("%w: this cache's ValueType is %q (fingerprint %016x), the value's fingerprint is %016x: "+
		"two caches of different value types or codecs share namespace %q (see Options.ValueType)",
		ErrTypeClash, c.opts.ValueType, c.typeID, e.Type, c.opts.Namespace)
}

// typeClash counts and logs a value of another ValueType, and returns the
// error for the caller, naming the key.
func (c *Cache[V]) typeClash(key string, err error) error {
	c.stats.typeClashes.Add(1)
	c.log.Error("type-clash", "a value in redis was written by a cache of another value type", "key", key, "err", err)
	return fmt.Errorf("key %q: %w", key, err)
}
