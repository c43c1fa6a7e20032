package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/tiered"
)

type User struct {
	ID   int
	Name string
}

func Example() {
	// A throwaway server so the example runs anywhere; use your own address.
	srv, err := redisserver.Start(context.Background(), redisserver.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()

	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rc.Close()

	ctx := context.Background()
	users, err := tiered.New[User](ctx, tiered.Options[User]{
		Client:    rc,
		Namespace: "svc:users",
		LocalTTL:  30 * time.Second,
		RemoteTTL: 10 * time.Minute,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer users.Close()

	u, err := users.GetOrLoad(ctx, "42", func(ctx context.Context) (User, error) {
		return User{ID: 42, Name: "Ada"}, nil // e.g. db.User(ctx, 42)
	})
	fmt.Println(u.Name, err)

	_ = users.Set(ctx, "42", User{ID: 42, Name: "Ada Lovelace"})
	u, _ = users.Get(ctx, "42")
	fmt.Println(u.Name)

	_ = users.Delete(ctx, "42")
	_, err = users.Get(ctx, "42")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output:
	// Ada <nil>
	// Ada Lovelace
	// true
}
