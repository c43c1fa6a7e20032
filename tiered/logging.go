package tiered

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logger writes the cache's warnings through the caller's slog.Logger, each
// kind at most once per interval: an outage must not turn into a log flood.
// Lines name the namespace, never raw keys (they may carry personal data).
type logger struct {
	l     *slog.Logger
	every time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newLogger(l *slog.Logger, every time.Duration, namespace string) *logger {
	if l == nil {
		return nil // silent: every method is a no-op on nil
	}
	return &logger{l: l.With("cache", namespace), every: every, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

func (g *logger) warn(kind, msg string, args ...any)  { g.log(slog.LevelWarn, kind, msg, args) }
func (g *logger) error(kind, msg string, args ...any) { g.log(slog.LevelError, kind, msg, args) }

func (g *logger) log(level slog.Level, kind, msg string, args []any) {
	if g == nil {
		return
	}
	now := time.Now()
	g.mu.Lock()
	if last, ok := g.last[kind]; ok && now.Sub(last) < g.every {
		g.suppressed[kind]++
		g.mu.Unlock()
		return
	}
	n := g.suppressed[kind]
	g.suppressed[kind] = 0
	g.last[kind] = now
	g.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	g.l.Log(context.Background(), level, msg, args...)
}
