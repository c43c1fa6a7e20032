// Package tieredotel traces a tiered.Cache with OpenTelemetry: each step
// of a call that leaves the process becomes a span — a local miss read
// from Redis, a wait for another replica's load, a loader call, the fill
// of a loaded value, a write — with attributes for the tier it reached and
// its result. Local hits do no I/O and make no span.
//
//	tracing, err := tieredotel.New(tieredotel.Options{})
//	…
//	cache, err := tiered.New[User](ctx, tiered.Options[User]{
//		Client: client, Namespace: "svc:users", Observer: tracing,
//	})
//
// It is a module of its own, so only services that import it compile
// OpenTelemetry.
//
// Keys stay out of spans by default: a cache key often holds a user id or
// an e-mail address. Options.Keys can put a hash of the key on the span
// (enough to correlate the spans of one key) or the key itself.
//
// The spans nest under the caller's span, and each step runs with its own
// span's context: a rueidis client traced by rueidisotel puts its command
// spans under the step that sent them (docs/tracing.md).
package tieredotel
