// Package carry carries a panic from the goroutines of a group (an
// errgroup's) to the goroutine that waits for them, where the caller's
// recover can see it: on a group's goroutine nobody's can, and the process
// would end. tiered's GetOrLoadMany and warmup's Preload use it.
package carry
