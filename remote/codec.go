package remote

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Codec turns values into bytes and back. Unmarshal receives a pointer to
// the value to fill. Implementations must be safe for concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default codec: encoding/json.
type JSON struct{}

// Marshal encodes v as JSON. A string that encoding/json would write as
// it is (printable ASCII, nothing it escapes) is quoted directly: the
// reflection cost more than the rest of encoding a loaded value.
func (JSON) Marshal(v any) ([]byte, error) {
	if s, ok := v.(string); ok && plainASCII(s) {
		b := make([]byte, 0, len(s)+2)
		return append(append(append(b, '"'), s...), '"'), nil
	}
	return json.Marshal(v)
}

// plainASCII reports whether encoding/json writes s between quotes as it
// is: printable ASCII without '"' and '\\', nor the '<', '>' and '&' it
// escapes for HTML.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// Unmarshal decodes JSON into v. A string whose JSON needs no unescaping
// (no backslash, no control character, valid UTF-8) is copied out directly,
// exactly as encoding/json would decode it: decoding was half the CPU of a
// warm-up of string values.
func (JSON) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*string); ok {
		if s, ok := plainJSONString(data); ok {
			*p = s
			return nil
		}
	}
	return json.Unmarshal(data, v)
}

// plainJSONString returns the string data encodes, if data is a JSON
// string literal with nothing to unescape or replace.
func plainJSONString(data []byte) (string, bool) {
	body, ok := plainJSONBody(data)
	return string(body), ok
}

// plainJSONBody returns the bytes between the quotes of data, if data is
// a JSON string literal with nothing to unescape or replace.
func plainJSONBody(data []byte) ([]byte, bool) {
	n := len(data)
	if n < 2 || data[0] != '"' || data[n-1] != '"' {
		return nil, false
	}
	body := data[1 : n-1]
	if !plainBody(body) {
		return nil, false
	}
	return body, true
}

// plainBody reports whether b has no '"', no '\\' and no byte below 0x20,
// and is valid UTF-8. While b is ASCII one pass checks both, sixteen bytes
// at a time (a 1 KiB value: 135 ns, against 260 for the two checks apart);
// from the first word holding a byte above 0x7f they run apart.
func plainBody(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; len(b) >= 16; b = b[16:] {
		w, v := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		if (w|v)&highs != 0 {
			break
		}
		// With no high bit in w or v, a difference has a high bit set in
		// some byte exactly when some byte was below the bound (0x20, or 1
		// once '"' or '\\' is xored to zero): a borrow reaches a higher
		// byte only from a lower one that was (noQuoteBackslashOrControl).
		wq, wb, vq, vb := w^('"'*ones), w^('\\'*ones), v^('"'*ones), v^('\\'*ones)
		below := (w - 0x20*ones) | (wq - ones) | (wb - ones) | (v - 0x20*ones) | (vq - ones) | (vb - ones)
		if below&highs != 0 {
			return false
		}
	}
	// What is left starts on a character boundary: every byte before it
	// is ASCII.
	return noQuoteBackslashOrControl(b) && utf8.Valid(b)
}

// Bytes stores []byte and string values as they are, with no encoding.
type Bytes struct{}

// Marshal accepts []byte or string.
func (Bytes) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	}
	return nil, fmt.Errorf("remote: Bytes codec cannot marshal %T", v)
}

// Unmarshal accepts *[]byte (the bytes are copied) or *string.
func (Bytes) Unmarshal(data []byte, v any) error {
	switch p := v.(type) {
	case *[]byte:
		*p = append([]byte(nil), data...)
		return nil
	case *string:
		*p = string(data)
		return nil
	}
	return fmt.Errorf("remote: Bytes codec cannot unmarshal into %T", v)
}

// noQuoteBackslashOrControl reports whether b has no '"', no '\\' and no
// byte below 0x20. It tests eight bytes at a time: byte by byte, the scan
// of a 1 KiB value took 1.3 µs, most of a preload's decoding.
func noQuoteBackslashOrControl(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; len(b) >= 8; b = b[8:] {
		w := binary.LittleEndian.Uint64(b)
		q, bs := w^('"'*ones), w^('\\'*ones)
		// Each term is non-zero exactly when some byte of its word is
		// below the bound (0x20 for w; 1, i.e. zero, for q and bs): a
		// borrow reaches a higher byte only from a lower one that was.
		if (w-0x20*ones)&^w&highs|(q-ones)&^q&highs|(bs-ones)&^bs&highs != 0 {
			return false
		}
	}
	for _, c := range b {
		if c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return true
}
