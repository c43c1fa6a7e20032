package carry

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sync/errgroup"
)

func TestPanicsReachTheWaiter(t *testing.T) {
	var p Panics
	var g errgroup.Group
	g.Go(func() (err error) {
		defer p.Guard(&err)
		panic("first")
	})
	err := g.Wait()
	assert.ErrorIs(t, err, ErrPanicked)
	assert.PanicsWithValue(t, "first", p.Raise)
}

func TestNoPanicNoRaise(t *testing.T) {
	var p Panics
	var g errgroup.Group
	boom := errors.New("boom")
	g.Go(func() (err error) {
		defer p.Guard(&err)
		return boom
	})
	assert.ErrorIs(t, g.Wait(), boom, "a goroutine's own error is kept")
	assert.NotPanics(t, p.Raise)
}
