package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ShapeName is the scenario ZipfShape makes.
const ShapeName = "zipf-shape"

// ErrBadShape reports a shape spec ZipfShape cannot run.
var ErrBadShape = errors.New("bench: bad shape")

// ShapeSyntax describes ZipfShape's spec, for usage messages.
const ShapeSyntax = "keys=N,s=S,goroutines=N,writes=PCT,loader=DURATION " +
	"(any subset; the rest as zipf-100k: keys=100000,s=1.01,goroutines=16,writes=5,loader=1ms; s=0 for uniform keys)"

// Bounds of a shape: the source holds sourceKeys keys, and beyond the
// others a run measures the machine's limits, not a cache.
const (
	maxShapeGoroutines = 1024
	maxShapeLoader     = 10 * time.Second
)

// ZipfShape is the zipf workload in a shape of the caller's (spec: see
// ShapeSyntax), as the scenario ShapeName: the same fleet, staleness
// check and figures as zipf and zipf-100k, for checking a claim on
// another workload than the two the report always measures.
func ZipfShape(spec string) (Scenario, error) {
	shape, err := parseShape(spec)
	if err != nil {
		return Scenario{}, err
	}
	return zipfScenario(shape), nil
}

// parseShape reads a spec of ShapeSyntax, refusing it whole (every
// problem named) if a field is unknown, repeated or out of bounds.
func parseShape(spec string) (zipfShape, error) {
	shape := zipfShape{name: ShapeName, keys: 100_000, s: 1.01, goroutines: 16, writePct: 5, loader: time.Millisecond}
	var problems []string
	seen := map[string]bool{}
	for field := range strings.SplitSeq(spec, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			problems = append(problems, fmt.Sprintf("%q is not name=value", field))
			continue
		}
		if seen[name] {
			problems = append(problems, name+" is given twice")
			continue
		}
		seen[name] = true
		if err := shape.set(name, value); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return zipfShape{}, fmt.Errorf("%w %q: %s", ErrBadShape, spec, strings.Join(problems, "; "))
	}
	keys := "uniform keys"
	if shape.s > 0 {
		keys = fmt.Sprintf("s=%g", shape.s)
	}
	shape.summary = fmt.Sprintf("%s keys, %s, %d goroutines per replica, a %v loader", thousands(strconv.Itoa(shape.keys)), keys, shape.goroutines, shape.loader)
	return shape, nil
}

// set sets one field of a shape from its spec, within its bounds.
func (z *zipfShape) set(name, value string) error {
	bad := func(want string) error { return fmt.Errorf("%s=%s: want %s", name, value, want) }
	// whole sets *to from value if it is a whole number in [lo, hi].
	whole := func(to *int, lo, hi int, want string) error {
		n, err := strconv.Atoi(value)
		if err != nil || n < lo || n > hi {
			return bad(want)
		}
		*to = n
		return nil
	}
	switch name {
	case "keys":
		return whole(&z.keys, 2, sourceKeys, fmt.Sprintf("a whole number from 2 to %d", sourceKeys))
	case "goroutines":
		return whole(&z.goroutines, 1, maxShapeGoroutines, fmt.Sprintf("a whole number from 1 to %d", maxShapeGoroutines))
	case "writes":
		return whole(&z.writePct, 0, 100, "a whole percentage from 0 to 100")
	case "s":
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || f != 0 && !(f > 1 && f <= 10) {
			return bad("0 (uniform) or a Zipf exponent above 1, at most 10")
		}
		z.s = f
	case "loader":
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 || d > maxShapeLoader {
			return bad(fmt.Sprintf("a duration from 0 to %v, e.g. 1ms", maxShapeLoader))
		}
		z.loader = d
	default:
		return fmt.Errorf("unknown field %q (fields: keys, s, goroutines, writes, loader)", name)
	}
	return nil
}
