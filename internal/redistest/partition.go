package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"
)

// Partition cuts one client off Redis for a while, single server or
// Cluster alike: give its Dial to the client (rueidis.ClientOption
// DialCtxFn), and Cut closes every connection the client dialed and makes
// its dials fail for a duration, as a network partition between that
// client and every node would.
type Partition struct {
	mu          sync.Mutex
	conns       map[net.Conn]struct{}
	refuseUntil time.Time
}

// NewPartition returns a Partition that lets every dial through.
func NewPartition() *Partition { return &Partition{conns: map[net.Conn]struct{}{}} }

// Dial dials dst unless the partition is cut; it has rueidis's DialCtxFn
// signature.
func (p *Partition) Dial(ctx context.Context, dst string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
	if until := p.cutUntil(); time.Now().Before(until) {
		return nil, fmt.Errorf("partition: %s unreachable for another %v", dst, time.Until(until))
	}
	if cfg != nil {
		return nil, fmt.Errorf("partition: TLS is not supported")
	}
	c, err := d.DialContext(ctx, "tcp", dst)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Now().Before(p.refuseUntil) { // cut while dialing
		c.Close()
		return nil, fmt.Errorf("partition: %s unreachable", dst)
	}
	tc := &trackedConn{Conn: c, p: p}
	p.conns[tc] = struct{}{}
	return tc, nil
}

// Cut closes every open connection and fails dials for d.
func (p *Partition) Cut(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseUntil = time.Now().Add(d)
	for c := range p.conns {
		c.(*trackedConn).Conn.Close()
		delete(p.conns, c)
	}
}

func (p *Partition) cutUntil() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refuseUntil
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	p *Partition
}

func (c *trackedConn) Close() error {
	c.p.mu.Lock()
	delete(c.p.conns, c)
	c.p.mu.Unlock()
	return c.Conn.Close()
}
