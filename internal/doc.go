// Package internal groups what several rooms of tiercache share and users
// must not import: redisserver (throwaway redis-server processes for tests
// and the bench CLI), redistest (its test helpers) and ledger (the staleness
// ledger of the tests and the bench scenarios).
package internal
