package streamid

import "testing"

func TestLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"1-0", "2-0", true}, {"2-0", "10-0", true}, {"5-2", "5-10", true},
		{"5-10", "5-2", false}, {"7-1", "7-1", false}, {"10-0", "9-99", false},
	} {
		if got := Less(c.a, c.b); got != c.less {
			t.Errorf("Less(%q, %q) = %v, want %v", c.a, c.b, got, c.less)
		}
	}
}
