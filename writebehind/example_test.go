package writebehind_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/writebehind"
)

type User struct {
	ID   int
	Name string
}

// table stands in for the source of truth, a database table of users.
type table struct {
	mu      sync.Mutex
	rows    map[string]User
	written chan struct{} // signalled after each batch
}

// Upsert is the flusher's writer: one batch, in one transaction of a real
// database. A write may come again (delivery is at least once), so it must
// be idempotent.
func (t *table) Upsert(ctx context.Context, ws []writebehind.Write[User]) error {
	t.mu.Lock()
	for _, w := range ws {
		t.rows[w.Key] = w.Value
	}
	t.mu.Unlock()
	select {
	case t.written <- struct{}{}:
	default:
	}
	return nil // every write accepted
}

func (t *table) Get(id string) User {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rows[id]
}

// SetBehind answers at once from both tiers; a Flusher, on this replica or
// a worker of its own, persists the write after.
func ExampleFlusher() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The Redis at REDIS_URL, which `go test` sets (TestMain starts one).
	rc, err := rueidis.NewClient(rueidis.MustParseURL(os.Getenv("REDIS_URL")))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	const ns = "example:writebehind:users" // the caches' and the flusher's

	users, err := tiered.New[User](ctx, tiered.Options[User]{
		Client: rc, Namespace: ns, LocalTTL: 30 * time.Second, RemoteTTL: 10 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()

	db := &table{rows: map[string]User{}, written: make(chan struct{}, 1)}
	flusher, err := writebehind.New(writebehind.Options[User]{
		Client: rc, Namespace: ns, // and the caches' Codec, if not JSON
		Writer: db.Upsert,
	})
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- flusher.Run(ctx) }() // until ctx ends

	if err := users.SetBehind(ctx, "42", User{ID: 42, Name: "Ada"}); err != nil {
		log.Fatal(err)
	}
	u, err := users.Get(ctx, "42")
	fmt.Println("cache:", u.Name, err)

	select {
	case <-db.written:
		fmt.Println("database:", db.Get("42").Name)
	case <-time.After(10 * time.Second):
		fmt.Println("not flushed within 10 s")
	}
	cancel()
	fmt.Println("flusher stopped:", <-stopped)
	// Output:
	// cache: Ada <nil>
	// database: Ada
	// flusher stopped: <nil>
}
