// Package redistest gives tests real redis-server processes: Start runs one
// on a free port for the test's lifetime and fails the test (never skips)
// when redis-server is missing, pointing at `make test`, which installs it.
// WithExampleRedis does the same for a test binary's runnable examples,
// which may not import internal/: it gives them one at REDIS_URL. Fault
// helpers put a server in a state a test needs: HoldBusy (a script that
// never ends), Partition (cut connections), a Cluster, a Sentinel set.
package redistest
