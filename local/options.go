package local

import (
	"errors"
	"fmt"
)

// Options, their defaults and checks, and what sizing them costs.

// ErrInvalidOptions is returned by New for options that cannot work.
var ErrInvalidOptions = errors.New("local: invalid options")

// Options configures a Tier. Zero values mean the documented defaults.
type Options struct {
	// MaxCost bounds the tier's heap, in bytes: entries (each charged
	// EntryOverhead plus the size its filler gives) and ristretto's
	// admission counters together. Default DefaultMaxCost.
	MaxCost int64
	// MaxEntries bounds the number of entries: each is charged at least
	// MaxCost/MaxEntries. It also sizes the admission counters (10 per
	// entry), so a generous MaxCost costs no counting. Default
	// DefaultMaxEntries.
	MaxEntries int64
	// NumCounters overrides the number of admission counters. Default:
	// 10 × min(MaxEntries, MaxCost/EntryOverhead), at least 1,000.
	NumCounters int64
	// Stripes is the number of fence stripes, rounded up to a power of two.
	// More stripes mean fewer fills refused by an unrelated key's
	// invalidation. Default 4096.
	Stripes int
}

// Defaults, and what an entry costs the heap beyond its value.
const (
	DefaultMaxCost    = 64 << 20
	DefaultMaxEntries = 100_000
	// EntryOverhead is the heap an entry takes besides its value's own
	// bytes, measured with ristretto v2.4 on Go 1.26 (the entry, ristretto's
	// store and policy maps): at most 314 B by how full the maps are
	// between two growths (measured when ristretto also kept an expiry map;
	// without it, entries take less).
	EntryOverhead = 320
)

func (o *Options) validate() error {
	switch {
	case o.MaxCost < 0:
		return fmt.Errorf("%w: MaxCost %d < 0", ErrInvalidOptions, o.MaxCost)
	case o.MaxEntries < 0:
		return fmt.Errorf("%w: MaxEntries %d < 0", ErrInvalidOptions, o.MaxEntries)
	case o.NumCounters < 0:
		return fmt.Errorf("%w: NumCounters %d < 0", ErrInvalidOptions, o.NumCounters)
	case o.Stripes < 0 || o.Stripes > 1<<20:
		return fmt.Errorf("%w: Stripes %d not in [0, 2^20]", ErrInvalidOptions, o.Stripes)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.MaxCost == 0 {
		o.MaxCost = DefaultMaxCost
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.NumCounters == 0 {
		o.NumCounters = max(10*min(o.MaxEntries, o.MaxCost/EntryOverhead), 1000)
	}
	if o.Stripes == 0 {
		o.Stripes = 4096
	}
	n := 1
	for n < o.Stripes {
		n <<= 1
	}
	o.Stripes = n
}

// counterBytes is the heap ristretto v2.4's admission counters take for n
// counters: a count-min sketch of 4 rows of 4-bit counters, rounded up to a
// power of two, and a doorkeeper Bloom filter of about 9.6 bits per counter
// (1 % false positives), rounded up too.
func counterBytes(n int64) int64 {
	return 2*pow2(n) + pow2(n*9585/1000)/8
}

func pow2(n int64) int64 {
	p := int64(1)
	for p < n {
		p <<= 1
	}
	return p
}
