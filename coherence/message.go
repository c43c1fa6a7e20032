package coherence

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errMalformed reports bytes that are not a readable message.
var errMalformed = errors.New("coherence: malformed message")

// Kind says what a message invalidates.
type Kind uint8

// Message kinds.
const (
	KindKeys  Kind = 1 // the listed keys
	KindTags  Kind = 2 // every key carrying one of the listed tags
	KindFlush Kind = 3 // the whole namespace
	kindPing  Kind = 4 // the bus's own liveness probe
)

func (k Kind) String() string {
	switch k {
	case KindKeys:
		return "keys"
	case KindTags:
		return "tags"
	case KindFlush:
		return "flush"
	case kindPing:
		return "ping"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Message is one invalidation.
type Message struct {
	Origin      uint64 // the publishing instance
	Namespace   string
	Kind        Kind
	Keys        []string // keys or tags, by Kind
	PublishedAt int64    // unix nanoseconds
	// LogID is the message's id in the namespace's invalidation log, when
	// the publisher keeps one (resumable mode); empty otherwise.
	LogID string
}

const (
	msgMagic   = 'i'
	msgV1      = 1
	msgV2      = 2 // v1 followed by the log id: a length byte, then the id
	maxLogID   = 64
	msgHeader  = 19
	maxMsgKeys = 1 << 16
)

// Encode returns the wire form of m.
//
// Wire format v1: magic 'i', version 1, kind, origin (8 bytes big-endian),
// published-at (8 bytes, unix ns), then uvarint-prefixed namespace, a
// uvarint key count, and each key uvarint-prefixed. Version 2, used when
// LogID is set, appends the log id after a length byte (at most 64): the
// form a publishing script gives a v1 message it has logged.
func (m *Message) Encode() []byte {
	n := msgHeader + binary.MaxVarintLen64*(2+len(m.Keys)) + len(m.Namespace)
	for _, k := range m.Keys {
		n += len(k)
	}
	b := make([]byte, msgHeader, n)
	b[0], b[1], b[2] = msgMagic, msgV1, byte(m.Kind)
	binary.BigEndian.PutUint64(b[3:], m.Origin)
	binary.BigEndian.PutUint64(b[11:], uint64(m.PublishedAt))
	b = binary.AppendUvarint(b, uint64(len(m.Namespace)))
	b = append(b, m.Namespace...)
	b = binary.AppendUvarint(b, uint64(len(m.Keys)))
	for _, k := range m.Keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	if m.LogID != "" && len(m.LogID) <= maxLogID {
		b[1] = msgV2
		b = append(b, byte(len(m.LogID)))
		b = append(b, m.LogID...)
	}
	return b
}

// decodeMessage parses the wire form, as rueidis hands it over: a string.
// The namespace, keys and log id it returns are substrings of b (a
// message is read on the subscriber's own goroutine, ahead of every copy
// it kills, so it copies nothing; the fields keep b alive while they are
// held). It never panics and never allocates more than the input's size
// in keys.
func decodeMessage(b string) (Message, error) {
	if len(b) < msgHeader || b[0] != msgMagic {
		return Message{}, fmt.Errorf("%w: bad header", errMalformed)
	}
	if b[1] != msgV1 && b[1] != msgV2 {
		return Message{}, fmt.Errorf("%w: version %d", errMalformed, b[1])
	}
	m := Message{
		Kind:        Kind(b[2]),
		Origin:      binary.BigEndian.Uint64([]byte(b[3:11])), // short: no copy on the heap
		PublishedAt: int64(binary.BigEndian.Uint64([]byte(b[11:19]))),
	}
	if m.Kind < KindKeys || m.Kind > kindPing {
		return Message{}, fmt.Errorf("%w: kind %d", errMalformed, b[2])
	}
	rest := b[msgHeader:]
	ns, rest, err := readField(rest)
	if err != nil {
		return Message{}, err
	}
	m.Namespace = ns
	count, n := uvarint(rest)
	if n <= 0 || count > maxMsgKeys || count > uint64(len(rest)) {
		return Message{}, fmt.Errorf("%w: key count", errMalformed)
	}
	rest = rest[n:]
	if count > 0 {
		m.Keys = make([]string, 0, count)
	}
	for range count {
		var k string
		if k, rest, err = readField(rest); err != nil {
			return Message{}, err
		}
		m.Keys = append(m.Keys, k)
	}
	if b[1] == msgV2 {
		if len(rest) == 0 || int(rest[0]) == 0 || int(rest[0]) > maxLogID || int(rest[0]) != len(rest)-1 {
			return Message{}, fmt.Errorf("%w: log id", errMalformed)
		}
		m.LogID, rest = rest[1:], ""
	}
	if len(rest) != 0 {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(rest))
	}
	return m, nil
}

// uvarint is binary.Uvarint of the start of b; the conversion of at most
// MaxVarintLen64 bytes stays on the stack.
func uvarint(b string) (uint64, int) {
	return binary.Uvarint([]byte(b[:min(len(b), binary.MaxVarintLen64)]))
}

func readField(b string) (field, rest string, err error) {
	l, n := uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return "", "", fmt.Errorf("%w: length prefix", errMalformed)
	}
	end := n + int(l)
	return b[n:end], b[end:], nil
}
