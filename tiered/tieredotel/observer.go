package tieredotel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/tiered"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/tiercache/tiercache/tiered/tieredotel"

// Attribute keys of the spans.
const (
	// AttrOp is the step: redis.read, lease.wait, load, fill, write.
	AttrOp = attribute.Key("tiercache.op")
	// AttrTier is where the step went: redis, or origin for a loader.
	AttrTier = attribute.Key("tiercache.tier")
	// AttrResult is how the step ended (see tiered.Op for each step's).
	AttrResult = attribute.Key("tiercache.result")
	// AttrKeys is how many keys the step covers.
	AttrKeys = attribute.Key("tiercache.keys")
	// AttrKey is the key, hashed or raw, when Options.Keys allows it.
	AttrKey = attribute.Key("tiercache.key")
	// AttrNamespace is Options.Namespace, when set.
	AttrNamespace = attribute.Key("tiercache.namespace")
)

// Keys says what a span records of a step's key.
type Keys int

const (
	// KeysOmitted records no key (the default).
	KeysOmitted Keys = iota
	// KeysHashed records the first 16 hex digits of the key's SHA-256:
	// enough to find the spans of one key, though a key from a small set
	// (a user id) can be guessed back from its hash.
	KeysHashed
	// KeysRaw records the key as it is.
	KeysRaw
)

// Options configure the Observer New returns.
type Options struct {
	// TracerProvider makes the tracer. Default: otel.GetTracerProvider()
	// at the time New is called.
	TracerProvider trace.TracerProvider
	// Keys says what spans record of keys. Default KeysOmitted.
	Keys Keys
	// Namespace, when set, is recorded on every span (AttrNamespace).
	Namespace string
}

// ErrInvalidOptions is returned by New for options out of range.
var ErrInvalidOptions = errors.New("tieredotel: invalid options")

func (o *Options) validate() error {
	if o.Keys < KeysOmitted || o.Keys > KeysRaw {
		return fmt.Errorf("%w: Keys %d is not KeysOmitted, KeysHashed or KeysRaw", ErrInvalidOptions, o.Keys)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
}

// Observer turns a cache's steps into spans; set it as
// tiered.Options.Observer.
type Observer struct {
	tracer trace.Tracer
	keys   Keys
	common []attribute.KeyValue
}

var _ tiered.Observer = (*Observer)(nil)

// New returns an Observer, or an error wrapping ErrInvalidOptions.
func New(opts Options) (*Observer, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	o := &Observer{tracer: opts.TracerProvider.Tracer(ScopeName), keys: opts.Keys}
	if opts.Namespace != "" {
		o.common = []attribute.KeyValue{AttrNamespace.String(opts.Namespace)}
	}
	return o, nil
}

// Start begins a step's span, a child of ctx's span.
func (o *Observer) Start(ctx context.Context, call tiered.Call) (context.Context, func(string, error)) {
	attrs := make([]attribute.KeyValue, 0, 4+len(o.common))
	attrs = append(attrs, AttrOp.String(string(call.Op)), AttrTier.String(tierOf(call.Op)), AttrKeys.Int(call.Keys))
	if k, ok := o.key(call.Key); ok {
		attrs = append(attrs, AttrKey.String(k))
	}
	attrs = append(attrs, o.common...)
	ctx, span := o.tracer.Start(ctx, spanName(call), trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	return ctx, func(result string, err error) {
		span.SetAttributes(AttrResult.String(result))
		if err != nil && result != "cancelled" {
			span.RecordError(err)
			span.SetStatus(codes.Error, result)
		}
		span.End()
	}
}

func (o *Observer) key(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	switch o.keys {
	case KeysHashed:
		sum := sha256.Sum256([]byte(key))
		return hex.EncodeToString(sum[:8]), true
	case KeysRaw:
		return key, true
	}
	return "", false
}

// spanName is "tiercache <op>", and "tiercache <Method>" for a write: a
// small, fixed set of names, as span names should be.
func spanName(call tiered.Call) string {
	if call.Op == tiered.OpWrite && call.Name != "" {
		return "tiercache " + call.Name
	}
	return "tiercache " + string(call.Op)
}

func tierOf(op tiered.Op) string {
	if op == tiered.OpLoad {
		return "origin"
	}
	return "redis"
}
