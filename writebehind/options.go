package writebehind

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/remote"
)

// Errors wrap one of these; test with errors.Is.
var (
	// ErrInvalidOptions: New was given options that cannot work.
	ErrInvalidOptions = errors.New("writebehind: invalid options")
	// ErrQueueUnsafe: Run refused because Redis's eviction policy can evict
	// the queue (see Options.AllowQueueEviction).
	ErrQueueUnsafe = errors.New("writebehind: queue unsafe on this Redis")
	// ErrCodec: a queued value could not be decoded (it is dead-lettered).
	ErrCodec = errors.New("writebehind: codec failed")
	// ErrRunning: Run was called on a Flusher whose Run has not returned.
	ErrRunning = errors.New("writebehind: the flusher is already running")
)

// The defaults of Options.
const (
	DefaultBatchSize     = 256
	DefaultInterval      = 100 * time.Millisecond
	DefaultWriteTimeout  = 5 * time.Second
	DefaultMaxAttempts   = 5
	DefaultRetryBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultRemoteTimeout = 500 * time.Millisecond
	DefaultMaxValueBytes = 1 << 20
	DefaultLogEvery      = 10 * time.Second
	// MaxBatchSize bounds Options.BatchSize.
	MaxBatchSize = 10_000
)

// Options configures a Flusher. Zero values mean the documented defaults.
type Options[V any] struct {
	// The queue: the same client, namespace and codec as the caches that
	// write behind (tiered.Options).

	// Client is the caller's rueidis client; the flusher never closes it.
	Client rueidis.Client
	// Namespace is the caches' namespace.
	Namespace string
	// Codec decodes queued values. Default remote.JSON (tiered.JSONCodec).
	Codec remote.Codec
	// MaxValueBytes bounds a queued value's decoding: the caches'
	// MaxValueBytes. Default DefaultMaxValueBytes.
	MaxValueBytes int

	// The writer.

	// Writer persists batches. Required.
	Writer BatchWriter[V]
	// BatchSize bounds the queued writes read per batch (before writes to
	// one key are coalesced). Default DefaultBatchSize, at most
	// MaxBatchSize.
	BatchSize int
	// WriteTimeout is the deadline of one Writer call. Default
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxAttempts is how often a write may be refused before it moves to
	// the dead-letter stream. Default DefaultMaxAttempts.
	MaxAttempts int
	// RetryBackoff is the pause after a batch that was not wholly
	// accepted; it doubles up to MaxBackoff. Defaults DefaultRetryBackoff
	// and DefaultMaxBackoff.
	RetryBackoff, MaxBackoff time.Duration

	// Redis.

	// RemoteTimeout bounds each Redis call. Default DefaultRemoteTimeout.
	RemoteTimeout time.Duration
	// Interval is how long an idle flusher waits for new writes before it
	// looks again (a blocking read). Default DefaultInterval, at most
	// RemoteTimeout/2.
	Interval time.Duration
	// LeaseTTL is the flusher lease: one flusher per namespace flushes
	// while the others stand by, and a standby takes over at most LeaseTTL
	// after the flusher dies. Default the least of 3 × WriteTimeout that
	// meets both bounds: at least 2 × WriteTimeout + Interval, and at
	// least WriteTimeout + Interval + RemoteTimeout (the writer's deadline
	// leaves RemoteTimeout to acknowledge before the lease ends, so a
	// shorter lease would cut the writer short, or give it an expired
	// deadline every round).
	LeaseTTL time.Duration
	// AllowQueueEviction lets Run flush a queue on a Redis whose
	// maxmemory-policy is allkeys-*, which can evict it with every
	// acknowledged write in it; without it Run refuses there with
	// ErrQueueUnsafe. With it, a lost queue is detected and counted
	// (Stats.QueueLost), not prevented. Default false.
	AllowQueueEviction bool

	// Logging.

	// Logger receives the flusher's warnings and errors, each kind at most
	// once per LogEvery. Default: silent.
	Logger *slog.Logger
	// LogEvery rate-limits repeated log lines. Default DefaultLogEvery.
	LogEvery time.Duration
}

func (o *Options[V]) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	switch {
	case o.Client == nil:
		return bad("Client is nil")
	case o.Namespace == "":
		return bad("Namespace is empty")
	case o.Writer == nil:
		return bad("Writer is nil")
	case o.BatchSize < 0 || o.BatchSize > MaxBatchSize:
		return bad("BatchSize %d not in 1–%d", o.BatchSize, MaxBatchSize)
	case o.Interval < 0 || o.WriteTimeout < 0 || o.MaxAttempts < 0 || o.RetryBackoff < 0 || o.MaxBackoff < 0 || o.LeaseTTL < 0:
		return bad("Interval, WriteTimeout, MaxAttempts, RetryBackoff, MaxBackoff and LeaseTTL must not be negative")
	case o.RemoteTimeout < 0 || o.MaxValueBytes < 0 || o.LogEvery < 0:
		return bad("RemoteTimeout, MaxValueBytes and LogEvery must not be negative")
	}
	// The relations hold between the values in force.
	d := *o
	d.setDefaults()
	switch {
	case d.Interval > d.RemoteTimeout/2:
		return bad("Interval %v over RemoteTimeout/2 = %v", d.Interval, d.RemoteTimeout/2)
	case d.LeaseTTL < 2*d.WriteTimeout+d.Interval:
		return bad("LeaseTTL %v < 2 × WriteTimeout + Interval", d.LeaseTTL)
	case d.LeaseTTL < d.WriteTimeout+d.Interval+d.RemoteTimeout:
		return bad("LeaseTTL %v < WriteTimeout + Interval + RemoteTimeout = %v: the writer's deadline leaves RemoteTimeout before the lease ends", d.LeaseTTL, d.WriteTimeout+d.Interval+d.RemoteTimeout)
	}
	return nil
}

func (o *Options[V]) setDefaults() {
	if o.Codec == nil {
		o.Codec = remote.JSON{}
	}
	if o.MaxValueBytes == 0 {
		o.MaxValueBytes = DefaultMaxValueBytes
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.RetryBackoff)
	}
	if o.RemoteTimeout == 0 {
		o.RemoteTimeout = DefaultRemoteTimeout
	}
	if o.Interval == 0 {
		o.Interval = min(DefaultInterval, o.RemoteTimeout/2)
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = max(3*o.WriteTimeout, 2*o.WriteTimeout+o.Interval, o.WriteTimeout+o.Interval+o.RemoteTimeout)
	}
	if o.LogEvery == 0 {
		o.LogEvery = DefaultLogEvery
	}
}
