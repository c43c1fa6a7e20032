package tiered

import "errors"

// Sentinel errors. Errors returned by the cache wrap one of these; test with
// errors.Is.
var (
	// ErrNotFound: neither tier has the key (Get), or the loader said the
	// key does not exist (GetOrLoad).
	ErrNotFound = errors.New("tiered: not found")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("tiered: cache closed")
	// ErrInvalidOptions: New was given options that cannot work.
	ErrInvalidOptions = errors.New("tiered: invalid options")
	// ErrInvalidKey: the key is empty or longer than Options.MaxKeyBytes.
	ErrInvalidKey = errors.New("tiered: invalid key")
	// ErrValueTooLarge: the encoded value is over Options.MaxValueBytes.
	ErrValueTooLarge = errors.New("tiered: value too large")
	// ErrCodec: the codec could not encode or decode a value.
	ErrCodec = errors.New("tiered: codec failed")
	// ErrRemote: Redis failed or timed out.
	ErrRemote = errors.New("tiered: redis failed")
	// ErrLoaderPanic: the loader panicked; the panic value is in the message.
	ErrLoaderPanic = errors.New("tiered: loader panicked")
	// ErrWriter: Options.Writer failed; the cache was not changed.
	ErrWriter = errors.New("tiered: source write failed")
	// ErrInvalidTag: a tag is empty, too long, or there are too many.
	ErrInvalidTag = errors.New("tiered: invalid tag")
	// ErrQueueFull: SetBehind found Options.WriteBehindLimit writes
	// waiting to be flushed; nothing was changed.
	ErrQueueFull = errors.New("tiered: write-behind queue full")
	// ErrQueueUnsafe: write-behind refused because Redis's eviction policy
	// can evict the queue (see Options.AllowQueueEviction).
	ErrQueueUnsafe = errors.New("tiered: write-behind queue unsafe on this Redis")
)
