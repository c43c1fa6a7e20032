// Package internal groups what several rooms of tiercache share and users
// must not import: redisserver (throwaway redis-server processes for tests
// and the bench CLI) and redistest (its test helpers).
package internal
