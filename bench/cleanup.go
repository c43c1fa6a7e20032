package bench

import (
	"context"
	"time"

	"github.com/tiercache/tiercache/internal/rediskeys"
)

// Every fleet (and every set of replicas a single-process scenario makes)
// writes under a namespace of its own, whose keys would otherwise outlive
// it by the remote TTL. The keys of one run expiring during a later one
// cost Redis CPU then (its active expiry cycle deletes them), charged to
// whichever candidate is running: in a full bench the zipf-100k runs leave
// half a million keys each, which expire a minute later in the middle of
// another candidate's timed run. So a namespace is deleted when its fleet
// closes, before the next run starts, outside any timed window.

// dropTimeout bounds a namespace's deletion: Redis may be down (the
// failover scenario kills it), and what is left only expires later.
const dropTimeout = 10 * time.Second

// dropNamespace deletes every key under ns (named ns + ":" + anything).
// Errors are ignored, for the reasons above.
func (r *Run) dropNamespace(ns string) {
	c, err := r.adminClient()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	_ = rediskeys.DeletePrefix(ctx, c, ns+":") // ignored: see above
}
