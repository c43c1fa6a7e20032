package bench

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"sync"
)

// peer is one end of the connection between the bench and a replica worker.
// Either end calls the other's handlers by name; values travel gob-encoded.
// The same code serves both fleet modes: over an in-memory pipe when the
// replicas share the bench's process, over OS pipes when each replica is
// its own process, so the two modes differ by the process boundary alone.
//
// Requests are served each in its own goroutine (a long scenario step must
// not hold up the source-of-truth calls its own workload makes), except
// notifications, which are served in arrival order on the reading goroutine
// and so must not block.
type peer struct {
	w        io.Closer
	enc      *gob.Encoder
	encMu    sync.Mutex
	dec      *gob.Decoder
	handlers map[string]func(body []byte) (any, error)

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan frame
	done    chan struct{}
	err     error // why the connection ended; read after done is closed
}

type frame struct {
	ID     uint64 // 0 on a notification, which has no reply
	Method string // empty on a reply
	Body   []byte
	Err    string
}

var errPeerClosed = errors.New("bench: worker connection closed")

func newPeer(r io.Reader, w io.WriteCloser) *peer {
	return &peer{w: w, enc: gob.NewEncoder(w), dec: gob.NewDecoder(r),
		handlers: map[string]func([]byte) (any, error){}, pending: map[uint64]chan frame{}, done: make(chan struct{})}
}

// handle registers fn as method; register every handler before serve.
func handle[A, R any](p *peer, method string, fn func(A) (R, error)) {
	p.handlers[method] = func(body []byte) (any, error) {
		var a A
		if err := decode(body, &a); err != nil {
			return nil, fmt.Errorf("bench: %s: decode: %w", method, err)
		}
		return fn(a)
	}
}

// encode writes v, or nothing for struct{} (gob refuses a struct without
// fields, and several calls carry no arguments or no result).
func encode(v any) ([]byte, error) {
	if _, empty := v.(struct{}); empty {
		return nil, nil
	}
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}

func decode(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	return gob.NewDecoder(bytes.NewReader(body)).Decode(v)
}

// call runs method on the other end and waits for its reply.
func call[R, A any](ctx context.Context, p *peer, method string, a A) (R, error) {
	var r R
	body, err := encode(a)
	if err != nil {
		return r, err
	}
	ch := make(chan frame, 1)
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.pending[id] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
	}()
	if err := p.send(frame{ID: id, Method: method, Body: body}); err != nil {
		return r, err
	}
	select {
	case f := <-ch:
		if f.Err != "" {
			return r, errors.New(f.Err)
		}
		return r, decode(f.Body, &r)
	case <-p.done:
		return r, p.err
	case <-ctx.Done():
		return r, ctx.Err()
	}
}

// notify runs method on the other end without waiting for it.
func notify[A any](p *peer, method string, a A) error {
	body, err := encode(a)
	if err != nil {
		return err
	}
	return p.send(frame{Method: method, Body: body})
}

func (p *peer) send(f frame) error {
	p.encMu.Lock()
	defer p.encMu.Unlock()
	select {
	case <-p.done:
		return p.err
	default:
	}
	if err := p.enc.Encode(f); err != nil {
		return fmt.Errorf("bench: send %s: %w", f.Method, err)
	}
	return nil
}

// serve reads frames until the connection ends, then fails every call
// still waiting with cause(err).
func (p *peer) serve(cause func(error) error) {
	var err error
	for {
		var f frame
		if err = p.dec.Decode(&f); err != nil {
			break
		}
		if f.Method == "" {
			p.mu.Lock()
			ch := p.pending[f.ID]
			p.mu.Unlock()
			if ch != nil {
				ch <- f
			}
			continue
		}
		if f.ID == 0 {
			p.dispatch(f)
			continue
		}
		go p.dispatch(f)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
		err = errPeerClosed
	}
	if cause != nil {
		err = cause(err)
	}
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	close(p.done)
}

func (p *peer) dispatch(f frame) {
	reply := frame{ID: f.ID}
	h := p.handlers[f.Method]
	var res any
	var err error
	if h == nil {
		err = fmt.Errorf("bench: no handler for %q", f.Method)
	} else {
		res, err = h(f.Body)
	}
	if f.ID == 0 {
		return // a notification's error has nowhere to go; its handler counts what it must
	}
	if err == nil {
		reply.Body, err = encode(res)
	}
	if err != nil {
		reply.Err = err.Error()
	}
	p.send(reply)
}

// close ends the connection from this side; the other side's serve sees
// the end of its input.
func (p *peer) close() error { return p.w.Close() }
