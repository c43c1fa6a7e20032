// Package wait holds the pauses of tiercache's background loops: the
// invalidation bus, the tracker, the write-behind flusher.
package wait

import (
	"context"
	"time"
)

// Sleep waits d, or reports false if ctx ends first. A d of zero or less
// does not wait.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
