// Package ratelog writes warnings and errors through the caller's
// slog.Logger, each kind at most once per interval with a count of those
// suppressed: an outage must not turn into a log flood. Used by package
// tiered and package writebehind.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Logger is safe for concurrent use; a nil *Logger is silent.
type Logger struct {
	l     *slog.Logger
	every time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// New returns a Logger over l with attrs on every line, or nil (silent)
// when l is nil.
func New(l *slog.Logger, every time.Duration, attrs ...any) *Logger {
	if l == nil {
		return nil
	}
	return &Logger{l: l.With(attrs...), every: every, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// Warn logs msg at warning level unless a line of kind went out less than
// the interval ago.
func (g *Logger) Warn(kind, msg string, args ...any) { g.log(slog.LevelWarn, kind, msg, args) }

// Error is Warn at error level.
func (g *Logger) Error(kind, msg string, args ...any) { g.log(slog.LevelError, kind, msg, args) }

func (g *Logger) log(level slog.Level, kind, msg string, args []any) {
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
