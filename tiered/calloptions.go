package tiered

import "time"

// CallOption adjusts one call.
type CallOption func(*callOptions)

type callOptions struct {
	freshFor    time.Duration
	hasFreshFor bool
	ttl         time.Duration
	hasTTL      bool
	tags        []string
}

// WithFreshFor overrides Options.FreshFor for the value this call writes
// (Set, or a load by Get/GetOrLoad).
func WithFreshFor(d time.Duration) CallOption {
	return func(o *callOptions) { o.freshFor, o.hasFreshFor = d, true }
}

// WithTags tags the value the call writes: by Set or SetBehind, or by the
// load of GetOrLoad, GetOrLoadMany or a read-through Get. InvalidateTags of
// any of the tags invalidates it, in both tiers of every replica. A tagged
// value costs one more small Redis read when it is read from Redis (its
// tags' versions), and a tagged load one more before it loads.
func WithTags(tags ...string) CallOption {
	return func(o *callOptions) { o.tags = append(o.tags, tags...) }
}

// checkCall validates a call's options.
func (c *Cache[V]) checkCall(co callOptions) error {
	if co.hasTTL {
		if err := checkTTL(co.ttl); err != nil {
			return err
		}
	}
	return c.checkTags(co.tags)
}

func (c *Cache[V]) callOptions(opts []CallOption) callOptions {
	if len(opts) == 0 {
		// Apart: the options take co's address, which moves it to the heap.
		return callOptions{freshFor: c.opts.FreshFor}
	}
	co := callOptions{freshFor: c.opts.FreshFor}
	for _, o := range opts {
		o(&co)
	}
	return co
}
