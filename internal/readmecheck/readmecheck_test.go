package readmecheck

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBlocks(t *testing.T) {
	md := "# title\n" + // 1
		"```sh\n" + // 2
		"make test\n" + // 3
		"```\n" + // 4
		"````go\n" + // 5
		"x := 1\n" + // 6
		"```\n" + // 7: inside: the fence is four backticks
		"````\n" + // 8
		"~~~go title=main.go\n" + // 9
		"// A file of its own.\n" + // 10
		"package main\n" + // 11
		"~~~\n" // 12
	blocks, err := Blocks([]byte(md))
	require.NoError(t, err)
	require.Len(t, blocks, 2)
	assert.Equal(t, Block{Line: 6, Code: "x := 1\n```\n"}, blocks[0])
	assert.False(t, blocks[0].IsFile())
	assert.Equal(t, Block{Line: 10, Code: "// A file of its own.\npackage main\n"}, blocks[1])
	assert.True(t, blocks[1].IsFile())

	_, err = Blocks([]byte("text\n```go\nx := 1\n"))
	assert.ErrorContains(t, err, "line 2: a go block with no closing fence")
}

// check runs Check on a Markdown file of the given text in a directory of
// its own, against this module.
func check(t *testing.T, markdown, prelude string) error {
	t.Helper()
	md := filepath.Join(t.TempDir(), "snippets.md")
	require.NoError(t, os.WriteFile(md, []byte(markdown), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return Check(ctx, Options{Markdown: md, Module: "../..", Prelude: prelude})
}

// TestBrokenBlockNamesItsLine: a block that does not compile fails the
// check, with the Markdown file's line and column of the error.
func TestBrokenBlockNamesItsLine(t *testing.T) {
	err := check(t, "# Use\n\n```go\nusers, err := tiered.New[string](ctx, tiered.Options[string]{})\nusers.Close()\n```\n", "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "snippets.md:4:8: declared and not used: err")

	err = check(t, "```go\nfmt.Printf(\"%d\\n\", \"not a number\")\n```\n", "")
	require.Error(t, err, "go vet runs too")
	assert.Contains(t, err.Error(), "snippets.md:2:13: fmt.Printf format %d has arg")
}

// TestBlocksCompile: fragments with the names of a prelude, a block ending
// in a return, a file of its own, and a block importing the nested module
// tiered/tieredotel all compile.
func TestBlocksCompile(t *testing.T) {
	prelude := "package snippets\n\nimport \"github.com/redis/rueidis\"\n\nvar rc rueidis.Client\n"
	md := strings.Join([]string{
		"```go",
		`users, err := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: "svc:users",`,
		"	LocalTTL: time.Minute, RemoteTTL: time.Hour})",
		"if err != nil {",
		"	return err",
		"}",
		"defer users.Close()",
		"```",
		"```go",
		`return errors.New("a fragment ending in a return")`,
		"```",
		"```go",
		"package main",
		"",
		`import "fmt"`,
		"",
		`func main() { fmt.Println("a file of its own") }`,
		"```",
		"```go",
		`tracing, err := tieredotel.New(tieredotel.Options{Namespace: "svc:users"})`,
		"if err != nil {",
		"	return err",
		"}",
		`_ = tiered.Options[string]{Client: rc, Namespace: "svc:users", Observer: tracing}`,
		"```",
	}, "\n") + "\n"
	require.NoError(t, check(t, md, prelude))
}
