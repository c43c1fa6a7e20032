package main

import (
	"bytes"
	"flag"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cli runs the CLI and returns its exit code, stdout and stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpOfEveryCommand(t *testing.T) {
	code, out, _ := cli(t, "help")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "help ")
	for _, c := range commands() {
		assert.Contains(t, out, "  "+c.name+" ", "help lists %s", c.name)
		for _, args := range [][]string{{"help", c.name}, {c.name, "-h"}, {c.name, "--help"}, {c.name, "an-argument", "--help"}} {
			code, out, errOut := cli(t, args...)
			assert.Equal(t, 0, code, "%v", args)
			assert.True(t, strings.HasPrefix(out, "usage: tiercache "+c.name+" "), "%v: %q", args, out)
			assert.Empty(t, errOut, "%v", args)
		}
	}
	code, out, _ = cli(t, "help", "inspect")
	require.Equal(t, 0, code)
	for _, f := range []string{"--namespace NS", "--redis ADDR", "--decode", "--json", "KEY…"} {
		assert.Contains(t, out, f)
	}

	code, _, errOut := cli(t, "help", "nope")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `unknown command "nope"`)
	code, _, errOut = cli(t, "nope")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `unknown command "nope"`)
	code, _, errOut = cli(t)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "usage: tiercache <command>")
}

func TestVersion(t *testing.T) {
	code, out, _ := cli(t, "version")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "tiercache ")
	assert.Contains(t, out, runtime.Version())
	code, _, _ = cli(t, "version", "extra")
	assert.Equal(t, 2, code)
}

func TestFlagsInAnyOrder(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	ns := fs.String("namespace", "", "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parseAnyOrder(fs, []string{"a", "--json", "b", "--namespace", "svc", "c", "--", "--not-a-flag", "d"})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c", "--not-a-flag", "d"}, pos)
	assert.Equal(t, "svc", *ns)
	assert.True(t, *asJSON)
}

// TestFlagErrors: every mistake is one line naming the flag and the fix,
// all of them at once, and exit code 2.
func TestFlagErrors(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	for _, tc := range []struct {
		args  []string
		lines []string
	}{
		{[]string{"hot", "svc:users"}, []string{
			"tiercache hot: --namespace is required: did you mean --namespace svc:users?",
			"tiercache hot: --redis is required (or set $REDIS_URL): e.g. --redis 127.0.0.1:6379",
		}},
		{[]string{"hot", "--namespace", "svc", "--n", "0", "--redis", "127.0.0.1:6379", "extra"}, []string{
			`tiercache hot: unexpected argument "extra": hot takes flags only`,
			"tiercache hot: --n must be positive (got 0): e.g. --n 20",
		}},
		{[]string{"hot", "--bogus"}, []string{"tiercache hot: unknown flag --bogus: the flags of hot are --n, --namespace, --redis"}},
		{[]string{"hot", "--n", "many"}, []string{`tiercache hot: invalid value "many" for flag --n: parse error`}},
		{[]string{"inspect", "k", "--namespace"}, []string{"tiercache inspect: --namespace needs a value: --namespace NS"}},
		{[]string{"inspect", "--redis", "127.0.0.1:6379"}, []string{
			"tiercache inspect: --namespace is required: give the cache's namespace, e.g. --namespace svc:users",
			"tiercache inspect: no KEY given: name one or more cache keys after the flags, e.g. tiercache inspect --namespace svc:users 42",
		}},
		{[]string{"inspect", "--namespace", "svc", "--redis", "localhost", "k"}, []string{
			`tiercache inspect: bad --redis "localhost": not a Redis address: address localhost: missing port in address; ` + redisForms,
		}},
		{[]string{"warmup", "--namespace", "svc", "--from", "127.0.0.1:6379", "--to", "redis://127.0.0.1:6379/0"}, []string{
			"tiercache warmup: --from and --to are the same Redis (127.0.0.1:6379, database 0): --from names the fleet's Redis to copy from, --to the one to warm",
		}},
		{[]string{"warmup", "--from", "redis://h:1", "--to", "h:1"}, []string{
			"tiercache warmup: --namespace is required: give the cache's namespace, e.g. --namespace svc:users",
			"tiercache warmup: --from and --to are the same Redis (h:1, database 0): --from names the fleet's Redis to copy from, --to the one to warm",
		}},
		{[]string{"warmup", "--namespace", "svc"}, []string{
			"tiercache warmup: --from is required: e.g. --from 127.0.0.1:6379",
			"tiercache warmup: --to is required (or set $REDIS_URL): e.g. --to 127.0.0.1:6379",
		}},
		{[]string{"bench", "--scenarios", "zipf,foo"}, []string{`tiercache bench: unknown scenario "foo"; valid: ` + scenarioNames()}},
		{[]string{"bench", "--candidates", "nope"}, []string{`tiercache bench: unknown candidate "nope"; valid: ` + candidateNames()}},
		{[]string{"bench", "--scenarios", "zipf@3"}, []string{`tiercache bench: unknown scenario "zipf@3"; valid: ` + scenarioNames()}},
		{[]string{"bench", "--candidates", "nope@64"}, []string{`tiercache bench: unknown candidate "nope@64"; valid: ` + candidateNames()}},
		{[]string{"bench", "--candidates", "tiercache,rueidis@256"}, []string{
			`tiercache bench: candidate "rueidis@256": rueidis has no local tier sized in bytes to set with @MiB`,
		}},
		{[]string{"bench", "--candidates", "tiercache@0"}, []string{
			`tiercache bench: candidate "tiercache@0": the local tier's size after @ must be a whole number of MiB, 1 to 1048576`,
		}},
		{[]string{"bench", "--shape", "keys=1,bogus"}, []string{
			`tiercache bench: --shape: bad shape "keys=1,bogus": keys=1: want a whole number from 2 to 1000000; "bogus" is not name=value`,
		}},
		{[]string{"bench", "--replicas", "1", "--local-mib", "0", "--runs", "0"}, []string{
			"tiercache bench: --replicas must be at least 2 (got 1)",
			"tiercache bench: --local-mib must be at least 1 (got 0)",
			"tiercache bench: --runs must be at least 1 (got 0)",
		}},
	} {
		code, out, errOut := cli(t, tc.args...)
		assert.Equal(t, 2, code, "%v", tc.args)
		assert.Empty(t, out, "%v", tc.args)
		want := strings.Join(tc.lines, "\n") + "\nRun 'tiercache help " + tc.args[0] + "' for its usage.\n"
		assert.Equal(t, want, errOut, "%v", tc.args)
	}
}

// TestBenchRefusesWhatItCannotHonour: bench's candidates connect by
// address only, so a --redis asking for more is refused, not half obeyed.
func TestBenchRefusesWhatItCannotHonour(t *testing.T) {
	for _, url := range []string{"rediss://127.0.0.1:6380", "redis://user:secret@127.0.0.1:6379", "redis://127.0.0.1:6379/2"} {
		code, _, errOut := cli(t, "bench", "--redis", url)
		assert.Equal(t, 2, code, url)
		assert.Contains(t, errOut, "which bench cannot honour: its candidates connect by address only", url)
		assert.NotContains(t, errOut, "secret", "the password is never echoed")
	}
}
