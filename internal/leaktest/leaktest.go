// Package leaktest holds what the packages' goleak checks must ignore: the
// goroutines a rueidis Cluster client leaves behind Close, which end by
// themselves. (A package of its own, so that the modules that use the
// Redis test harness do not need goleak.)
package leaktest

import "go.uber.org/goleak"

// IgnoreClusterClient ignores rueidis's Cluster client goroutines: one
// closes the connections a topology refresh replaced after a 5 s sleep,
// the other runs a delayed ("lazy") refresh after up to a second.
func IgnoreClusterClient() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
	}
}
