// Package redisserver starts and controls throwaway redis-server processes on
// free loopback ports: for the test suites (through internal/redistest) and
// for the bench CLI when no Redis address is given.
//
// Servers run with persistence off and never on the developer's port 6379.
// The controls exist for fault tests: Kill (SIGKILL), Restart on the same
// port, Pause/Resume (SIGSTOP/SIGCONT) and KillClients (CLIENT KILL TYPE …).
package redisserver
