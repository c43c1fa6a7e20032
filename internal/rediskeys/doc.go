// Package rediskeys deletes the keys under a prefix, walking Redis with
// SCAN (never KEYS, which blocks a shared Redis): for the examples' and the
// bench's throwaway namespaces.
package rediskeys
