package tiered

import (
	"errors"
	"fmt"
	"runtime/debug"
)

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
	// ErrTypeClash: the key's value in Redis was written by a cache of
	// another Options.ValueType (another value type or codec) on the same
	// namespace. The value is left in place; see Options.ValueType.
	ErrTypeClash = errors.New("tiered: value written by a cache of another value type")
	// ErrRemote: Redis failed or timed out.
	ErrRemote = errors.New("tiered: redis failed")
	// ErrLoaderPanic: the loader panicked. The error is a *LoaderPanic
	// with the panic value and the loader's stack.
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

// LoaderPanic is the error of a loader that panicked, returned to every
// caller of the load: errors.Is(err, ErrLoaderPanic) holds, and
// errors.As gives the panic value and the stack of the goroutine that
// panicked, which is otherwise lost with the recover.
type LoaderPanic struct {
	Value any
	Stack []byte
}

func (e *LoaderPanic) Error() string {
	return fmt.Sprintf("%v: %v\n\n%s", ErrLoaderPanic, e.Value, e.Stack)
}

func (e *LoaderPanic) Unwrap() error { return ErrLoaderPanic }

// loaderPanic turns a recovered panic value into a *LoaderPanic, taking the
// stack where it is called: in the deferred function, still on the
// panicking goroutine.
func loaderPanic(p any) *LoaderPanic { return &LoaderPanic{Value: p, Stack: debug.Stack()} }
