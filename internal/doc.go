// Package internal groups what several packages of tiercache share and
// users must not import:
//
//   - histogram, ratelog, wait, streamid: the duration histogram of the
//     statistics, the rate-limited logger, the background loops' pauses and
//     the order of Redis stream ids, shared by tiered, writebehind and
//     coherence;
//   - redisserver (throwaway redis-server processes for tests and the bench
//     CLI), redistest (its test helpers), cachetest (caches for the tests of
//     the packages around tiered), leaktest (goroutine-leak allowances) and
//     ledger (the staleness ledger of the tests and the bench scenarios);
//   - readmecheck: the test that compiles every Go block of README.md;
//   - carry: a group's goroutines' panic carried to the goroutine that
//     waits for them (tiered's GetOrLoadMany, warmup's Preload);
//   - replies: whether a Redis error reply says "later" or will not
//     change (coherence's subscription loops, remote's durability check).
package internal
