package remote

import (
	"encoding/json"
	"fmt"
)

// Codec turns values into bytes and back. Unmarshal receives a pointer to
// the value to fill. Implementations must be safe for concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default codec: encoding/json.
type JSON struct{}

// Marshal encodes v as JSON.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON into v.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

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
