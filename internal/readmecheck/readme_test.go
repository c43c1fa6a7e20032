package readmecheck

import (
	"context"
	"testing"
	"time"
)

// readmePrelude declares what the README's fragments assume: the user
// type and database of the examples, and the client, cache and user that
// the first block makes and later blocks use.
const readmePrelude = `package snippets

import (
	"context"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/writebehind"
)

type User struct {
	ID   int
	Name string
}

type database struct{}

func (database) User(ctx context.Context, id int) (User, error) { return User{ID: id}, nil }

func (database) UpsertUsers(ctx context.Context, ws []writebehind.Write[User]) error { return nil }

var (
	db    database
	rc    rueidis.Client
	users *tiered.Cache[User]
	u     User
)
`

// TestREADME: every go block of the README compiles and passes go vet.
func TestREADME(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Check(ctx, Options{Markdown: "../../README.md", Module: "../..", Prelude: readmePrelude}); err != nil {
		t.Fatal(err)
	}
}
