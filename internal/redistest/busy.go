package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/replies"
)

// HoldBusy makes s busy with a script that never ends, as a long script
// would: once it returns, every other command is answered BUSY. release
// kills the script and waits until s answers again; it is idempotent and
// also runs at cleanup.
func HoldBusy(tb testing.TB, s *redisserver.Server) (release func()) {
	tb.Helper()
	admin := nodeClient(tb, s)
	blocker := nodeClient(tb, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.Do(ctx, admin.B().ConfigSet().ParameterValue().ParameterValue("busy-reply-threshold", "50").Build()).Error(); err != nil {
		tb.Fatalf("busy-reply-threshold: %v", err)
	}
	go blocker.Do(context.Background(), blocker.B().Eval().Script("while true do end").Numkeys(0).Build())
	waitFor(tb, ctx, "a busy Redis", func() (bool, error) {
		err := admin.Do(ctx, admin.B().Ping().Build()).Error()
		return IsBusy(err), err
	})
	var released bool
	release = func() {
		if released {
			return
		}
		released = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		waitFor(tb, ctx, "the script killed", func() (bool, error) {
			err := admin.Do(ctx, admin.B().ScriptKill().Build()).Error()
			return err == nil || !IsBusy(err), err
		})
	}
	tb.Cleanup(release)
	return release
}

// IsBusy reports a BUSY reply: Redis runs a long script.
func IsBusy(err error) bool {
	re, ok := replies.Of(err)
	return ok && strings.HasPrefix(re.Error(), "BUSY")
}
