package carry

import (
	"errors"
	"sync"
)

// ErrPanicked is what a guarded goroutine returns after it panicked, so
// that its group stops; the panic itself is raised by Raise.
var ErrPanicked = errors.New("a goroutine of the group panicked")

// Panics keeps the first panic of the goroutines it guards. The zero
// value is ready to use.
type Panics struct {
	mu    sync.Mutex
	value any
}

// Guard, deferred first thing in a group's goroutine (defer p.Guard(&err)),
// recovers its panic, keeps the first of them, and makes the goroutine
// return ErrPanicked.
func (p *Panics) Guard(err *error) {
	if v := recover(); v != nil {
		p.mu.Lock()
		if p.value == nil {
			p.value = v
		}
		p.mu.Unlock()
		*err = ErrPanicked
	}
}

// Raise panics with the first panic kept, if any: call it once the group
// has ended, on the goroutine that waited for it.
func (p *Panics) Raise() {
	p.mu.Lock()
	v := p.value
	p.mu.Unlock()
	if v != nil {
		panic(v)
	}
}
