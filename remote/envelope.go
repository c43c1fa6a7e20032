package remote

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/klauspost/compress/s2"
)

// ErrCorrupt reports a value in Redis that is not a readable envelope: a
// foreign value, a truncated or corrupt one, or one from a newer format.
var ErrCorrupt = errors.New("remote: corrupt or foreign value")

// ErrTooLarge reports a value over Options.MaxValueBytes.
var ErrTooLarge = errors.New("remote: value too large")

const (
	magic0, magic1 = 't', 'c'
	formatV1       = 1
	// formatLease marks a fill lease held in the value key itself (see
	// leaseMarker): no value, only the token of the replica loading one.
	formatLease = 0
	headerLen   = 32

	flagCompressed = 1 << 0
	flagNegative   = 1 << 1
	flagTagged     = 1 << 2
	flagTyped      = 1 << 3
	knownFlags     = flagCompressed | flagNegative | flagTagged | flagTyped
	typeLen        = 8
)

// MaxTags bounds the tags an envelope may carry, and MaxTagBytes the
// length of a tag or of its version, so a decoder never allocates more
// than its input allows. Encode refuses an envelope over them (it could
// not be read back).
const (
	MaxTags     = 1024
	MaxTagBytes = 4096
)

// Envelope is a value as stored in Redis, with the metadata freshness
// decisions need.
//
// Wire format v1 (big-endian):
//
//	0   2  magic "tc"
//	2   1  format version (1)
//	3   1  flags: 1 = payload s2-compressed, 2 = negative (tombstone),
//	           4 = tagged, 8 = typed
//	4   8  written-at, unix nanoseconds
//	12  8  fresh-until, unix nanoseconds (0 = fresh until it expires)
//	20  8  expires-at, unix nanoseconds (0 = unknown)
//	28  4  load duration, microseconds (the last measured load time)
//	32  8  when typed: the writer's value type (Envelope.Type)
//	…   …  when tagged: a uvarint count, then per tag a uvarint-prefixed
//	       tag and a uvarint-prefixed version (see tags.go)
//	…   …  payload
type Envelope struct {
	WrittenAt  int64 // unix nanoseconds
	FreshUntil int64 // unix nanoseconds; 0 = fresh until expiry
	ExpiresAt  int64 // unix nanoseconds: the Redis TTL's end; 0 = unknown
	LoadMicros uint32
	Negative   bool
	Tags       []TagVersion // the tags the value was written with
	// Type is a fingerprint of the writer's value type and codec, so a
	// reader of another type can tell a clash from a corrupt value; 0 =
	// not stated.
	Type    uint64
	Payload []byte // the codec's bytes, uncompressed
	header  []byte // the wire header it was decoded from, if any
	// immutable: Payload is never changed (a view of a string read from
	// Redis, or a buffer decompressed for it), so a decoded value may
	// share it.
	immutable bool
}

// Unmarshal decodes the payload with c into v. When the payload is
// immutable and v is a *string, the JSON and Bytes codecs' result shares
// its memory instead of copying it (a warm-up of string values spent a
// fifth of its CPU on those copies); any other decoding is c.Unmarshal.
func (e *Envelope) Unmarshal(c Codec, v any) error {
	p, ok := v.(*string)
	if !ok || !e.immutable {
		return c.Unmarshal(e.Payload, v)
	}
	switch c.(type) {
	case JSON:
		if body, ok := plainJSONBody(e.Payload); ok {
			*p = unsafe.String(unsafe.SliceData(body), len(body))
			return nil
		}
	case Bytes:
		*p = unsafe.String(unsafe.SliceData(e.Payload), len(e.Payload))
		return nil
	}
	return c.Unmarshal(e.Payload, v)
}

// TTL is how long the envelope was stamped to live in Redis (from its
// write to its expiry), or 0 when it does not say.
func (e *Envelope) TTL() time.Duration {
	if e.ExpiresAt == 0 || e.ExpiresAt <= e.WrittenAt {
		return 0
	}
	return time.Duration(e.ExpiresAt - e.WrittenAt)
}

// TagVersion is a tag and the version it had when a value was written.
type TagVersion struct {
	Tag, Version string
}

// encode appends the wire form of e, compressing payloads of at least
// compressAbove bytes (never when compressAbove < 0) when that saves space.
func (e *Envelope) encode(compressAbove int) []byte {
	flags := byte(0)
	payload := e.Payload
	if compressAbove >= 0 && len(payload) >= compressAbove && len(payload) > 0 {
		if c := s2.Encode(nil, payload); len(c) < len(payload) {
			payload = c
			flags |= flagCompressed
		}
	}
	if e.Negative {
		flags |= flagNegative
	}
	tagBytes := 0
	if e.Type != 0 {
		flags |= flagTyped
		tagBytes = typeLen
	}
	if len(e.Tags) > 0 {
		flags |= flagTagged
		tagBytes += binary.MaxVarintLen64
		for _, t := range e.Tags {
			tagBytes += 2*binary.MaxVarintLen64 + len(t.Tag) + len(t.Version)
		}
	}
	b := make([]byte, headerLen, headerLen+tagBytes+len(payload))
	b[0], b[1], b[2], b[3] = magic0, magic1, formatV1, flags
	binary.BigEndian.PutUint64(b[4:], uint64(e.WrittenAt))
	binary.BigEndian.PutUint64(b[12:], uint64(e.FreshUntil))
	binary.BigEndian.PutUint64(b[20:], uint64(e.ExpiresAt))
	binary.BigEndian.PutUint32(b[28:], e.LoadMicros)
	if e.Type != 0 {
		b = binary.BigEndian.AppendUint64(b, e.Type)
	}
	if len(e.Tags) > 0 {
		b = binary.AppendUvarint(b, uint64(len(e.Tags)))
		for _, t := range e.Tags {
			b = binary.AppendUvarint(b, uint64(len(t.Tag)))
			b = append(b, t.Tag...)
			b = binary.AppendUvarint(b, uint64(len(t.Version)))
			b = append(b, t.Version...)
		}
	}
	return append(b, payload...)
}

// decodeTags reads the tag section of a tagged envelope.
func decodeTags(b []byte) ([]TagVersion, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > MaxTags || n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: tag count", ErrCorrupt)
	}
	b = b[w:]
	tags := make([]TagVersion, n)
	for i := range tags {
		var tag, version []byte
		var err error
		if tag, b, err = readField(b); err != nil {
			return nil, nil, err
		}
		if version, b, err = readField(b); err != nil {
			return nil, nil, err
		}
		tags[i] = TagVersion{Tag: string(tag), Version: string(version)}
	}
	return tags, b, nil
}

func readField(b []byte) (field, rest []byte, err error) {
	l, w := binary.Uvarint(b)
	if w <= 0 || l > MaxTagBytes || l > uint64(len(b)-w) {
		return nil, nil, fmt.Errorf("%w: tag length", ErrCorrupt)
	}
	return b[w : w+int(l)], b[w+int(l):], nil
}

// DecodeEnvelope parses the wire form. maxPayload bounds the uncompressed
// payload (a decompression bomb is ErrCorrupt, not an allocation). The
// returned payload may alias b.
func DecodeEnvelope(b []byte, maxPayload int) (Envelope, error) {
	if IsLeaseMarker(b) {
		return Envelope{}, fmt.Errorf("%w: a fill lease, not a value", ErrMiss)
	}
	if len(b) < headerLen || b[0] != magic0 || b[1] != magic1 {
		return Envelope{}, fmt.Errorf("%w: not a tiercache envelope", ErrCorrupt)
	}
	if b[2] != formatV1 {
		return Envelope{}, fmt.Errorf("%w: envelope format %d", ErrCorrupt, b[2])
	}
	flags := b[3]
	if flags&^knownFlags != 0 {
		return Envelope{}, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	e := Envelope{
		WrittenAt:  int64(binary.BigEndian.Uint64(b[4:])),
		FreshUntil: int64(binary.BigEndian.Uint64(b[12:])),
		ExpiresAt:  int64(binary.BigEndian.Uint64(b[20:])),
		LoadMicros: binary.BigEndian.Uint32(b[28:]),
		Negative:   flags&flagNegative != 0,
		Payload:    b[headerLen:],
		header:     b[:headerLen],
	}
	if flags&flagTyped != 0 {
		if len(e.Payload) < typeLen {
			return Envelope{}, fmt.Errorf("%w: short type", ErrCorrupt)
		}
		e.Type = binary.BigEndian.Uint64(e.Payload)
		e.Payload = e.Payload[typeLen:]
	}
	if flags&flagTagged != 0 {
		var err error
		if e.Tags, e.Payload, err = decodeTags(e.Payload); err != nil {
			return Envelope{}, err
		}
	}
	if flags&flagCompressed != 0 {
		n, err := s2.DecodedLen(e.Payload)
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if n > maxPayload {
			return Envelope{}, fmt.Errorf("%w: payload of %d bytes over the %d limit", ErrCorrupt, n, maxPayload)
		}
		p, err := s2.Decode(nil, e.Payload)
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		e.Payload = p
	} else if len(e.Payload) > maxPayload {
		return Envelope{}, fmt.Errorf("%w: payload of %d bytes over the %d limit", ErrCorrupt, len(e.Payload), maxPayload)
	}
	return e, nil
}

// leaseMarkerPrefix starts a lease marker: the magic and format 0, which no
// envelope has. Scripts spell it 'tc\0'.
const leaseMarkerPrefix = "tc\x00"

// leaseMarker is what a value key holds while a replica holds its fill
// lease in place (SET NX, so only while there is no value): readers see
// no value (DecodeEnvelope says ErrMiss) and the holder's token.
func leaseMarker(token string) string { return leaseMarkerPrefix + token }

// IsLeaseMarker reports whether b, read from a value key, is a fill lease
// rather than a value: nothing to read or copy.
func IsLeaseMarker(b []byte) bool {
	return len(b) >= len(leaseMarkerPrefix) && string(b[:len(leaseMarkerPrefix)]) == leaseMarkerPrefix
}

// markerToken returns the token of a lease marker, if b is one.
func markerToken(b []byte) (string, bool) {
	if !IsLeaseMarker(b) {
		return "", false
	}
	return string(b[len(leaseMarkerPrefix):]), true
}
