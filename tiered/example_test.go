package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
)

type User struct {
	ID   int
	Name string
}

// newUsers is tiered.New over a client of its own of the Redis at
// REDIS_URL, as ExampleNew spells out. closeAll invalidates the namespace,
// so that the example loads again when run again (go test -count), and
// closes the cache, then the client.
func newUsers(ctx context.Context, opts tiered.Options[User]) (users *tiered.Cache[User], closeAll func()) {
	rc, err := rueidis.NewClient(rueidis.MustParseURL(os.Getenv("REDIS_URL")))
	if err != nil {
		log.Fatal(err)
	}
	opts.Client = rc
	if users, err = tiered.New(ctx, opts); err != nil {
		log.Fatal(err)
	}
	return users, func() {
		users.InvalidateAll(ctx)
		users.Close()
		rc.Close()
	}
}

func ExampleNew() {
	ctx := context.Background()
	// The caller's client, which the cache never closes: here of the Redis
	// at REDIS_URL, which `go test` sets (TestMain starts a redis-server).
	rc, err := rueidis.NewClient(rueidis.MustParseURL(os.Getenv("REDIS_URL")))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()

	users, err := tiered.New[User](ctx, tiered.Options[User]{
		Client:    rc,
		Namespace: "example:tiered:new", // prefixes every Redis key, names the invalidation channel
		LocalTTL:  30 * time.Second,
		RemoteTTL: 10 * time.Minute,
	})
	if err != nil {
		log.Fatal(err) // no cache to Close
	}
	defer users.Close()

	if err := users.Set(ctx, "42", User{ID: 42, Name: "Ada"}); err != nil {
		log.Fatal(err)
	}
	u, err := users.Get(ctx, "42")
	fmt.Println(u.Name, err)

	_, err = users.Get(ctx, "43")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output:
	// Ada <nil>
	// true
}

func ExampleCache_GetOrLoad() {
	ctx := context.Background()
	users, closeAll := newUsers(ctx, tiered.Options[User]{
		Namespace: "example:tiered:getorload", LocalTTL: 30 * time.Second, RemoteTTL: 10 * time.Minute})
	defer closeAll()

	// Built once: a loader that captures nothing keeps hits allocation-free.
	loadUser := func(ctx context.Context) (User, error) {
		fmt.Println("loading 42 from the database")
		return User{ID: 42, Name: "Ada"}, nil // e.g. db.User(ctx, 42)
	}
	for range 3 { // one load, for the whole fleet; then both tiers answer
		u, err := users.GetOrLoad(ctx, "42", loadUser)
		fmt.Println(u.Name, err)
	}
	// Output:
	// loading 42 from the database
	// Ada <nil>
	// Ada <nil>
	// Ada <nil>
}

// Options.Loader makes the cache read-through: Get loads a key neither tier
// holds, and a loader's ErrNotFound is remembered for NegativeTTL.
func ExampleOptions_readThrough() {
	ctx := context.Background()
	db := map[string]User{"7": {ID: 7, Name: "Grace"}}
	users, closeAll := newUsers(ctx, tiered.Options[User]{
		Namespace: "example:tiered:readthrough", LocalTTL: 30 * time.Second, RemoteTTL: 10 * time.Minute,
		Loader: func(ctx context.Context, id string) (User, error) {
			fmt.Println("loading", id)
			u, ok := db[id]
			if !ok {
				return User{}, tiered.ErrNotFound
			}
			return u, nil
		},
	})
	defer closeAll()

	u, err := users.Get(ctx, "7")
	fmt.Println(u.Name, err)
	u, err = users.Get(ctx, "7") // cached: no load
	fmt.Println(u.Name, err)
	for range 2 { // the second miss is a tombstone: no load either
		_, err = users.Get(ctx, "8")
		fmt.Println(errors.Is(err, tiered.ErrNotFound))
	}
	// Output:
	// loading 7
	// Grace <nil>
	// Grace <nil>
	// loading 8
	// true
	// true
}

// A value may carry tags, invalidated together everywhere by InvalidateTags,
// and a lifetime of its own.
func ExampleCache_Set() {
	ctx := context.Background()
	users, closeAll := newUsers(ctx, tiered.Options[User]{
		Namespace: "example:tiered:set", LocalTTL: 30 * time.Second, RemoteTTL: 10 * time.Minute})
	defer closeAll()

	// Both of team 7; Ada's entry lives a minute in Redis, not RemoteTTL.
	err := users.Set(ctx, "42", User{ID: 42, Name: "Ada"}, tiered.WithTags("team:7"), tiered.WithTTL(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	if err := users.Set(ctx, "43", User{ID: 43, Name: "Grace"}, tiered.WithTags("team:7")); err != nil {
		log.Fatal(err)
	}
	u, err := users.Get(ctx, "42")
	fmt.Println(u.Name, err)

	// Team 7 was renamed: every replica drops both, in O(1).
	if err := users.InvalidateTags(ctx, "team:7"); err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"42", "43"} {
		_, err := users.Get(ctx, id)
		fmt.Println(id, errors.Is(err, tiered.ErrNotFound))
	}
	// Output:
	// Ada <nil>
	// 42 true
	// 43 true
}

func ExampleCache_GetOrLoadMany() {
	ctx := context.Background()
	users, closeAll := newUsers(ctx, tiered.Options[User]{
		Namespace: "example:tiered:getorloadmany", LocalTTL: 30 * time.Second, RemoteTTL: 10 * time.Minute})
	defer closeAll()

	// One call loads every key neither tier holds (e.g. one SELECT … IN);
	// a key it leaves out is not found.
	loadUsers := func(ctx context.Context, ids []string) (map[string]User, error) {
		fmt.Println("loading", ids)
		found := make(map[string]User, len(ids))
		for _, id := range ids {
			if id != "4" {
				found[id] = User{Name: "user " + id}
			}
		}
		return found, nil
	}
	for _, ids := range [][]string{{"1", "2", "3"}, {"2", "3", "4"}} {
		got, err := users.GetOrLoadMany(ctx, ids, loadUsers)
		names := make([]string, 0, len(got))
		for _, u := range got {
			names = append(names, u.Name)
		}
		slices.Sort(names) // a map: sorted for the output
		fmt.Println(strings.Join(names, ", "), err)
	}
	// Output:
	// loading [1 2 3]
	// user 1, user 2, user 3 <nil>
	// loading [4]
	// user 2, user 3 <nil>
}

func ExampleCache_InvalidateAll() {
	ctx := context.Background()
	users, closeAll := newUsers(ctx, tiered.Options[User]{
		Namespace: "example:tiered:invalidateall", LocalTTL: 30 * time.Second, RemoteTTL: 10 * time.Minute})
	defer closeAll()

	for _, id := range []string{"42", "43"} {
		if err := users.Set(ctx, id, User{Name: "user " + id}); err != nil {
			log.Fatal(err)
		}
	}
	// A new generation of keys: every replica flushes its local tier, and
	// the old entries expire in Redis by their TTL.
	if err := users.InvalidateAll(ctx); err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"42", "43"} {
		_, err := users.Get(ctx, id)
		fmt.Println(id, errors.Is(err, tiered.ErrNotFound))
	}
	// Output:
	// 42 true
	// 43 true
}
