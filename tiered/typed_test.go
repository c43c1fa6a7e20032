package tiered

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWrongLoaderDoesNotCompile: Options[V] types Loader and Writer, so a
// loader of another value type is a compile error, not a run-time one. The
// program is built through an overlay, inside this module, without writing
// into the source tree.
func TestWrongLoaderDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		t.Skipf("no go tool: %v", err)
	}
	wd, err := os.Getwd()
	require.NoError(t, err)
	build := func(loader string) (string, error) {
		src := `package wrongloader

import (
	"context"

	"github.com/tiercache/tiercache/tiered"
)

var _ = tiered.Options[string]{Loader: ` + loader + `}
`
		dir := t.TempDir()
		file := filepath.Join(dir, "wrong.go")
		require.NoError(t, os.WriteFile(file, []byte(src), 0o600))
		overlay := filepath.Join(dir, "overlay.json")
		target := filepath.Join(wd, "internal_wrongloader", "wrong.go")
		require.NoError(t, os.WriteFile(overlay, []byte(`{"Replace":{"`+target+`":"`+file+`"}}`), 0o600))
		cmd := exec.Command(goBin, "build", "-overlay", overlay, "./internal_wrongloader")
		cmd.Dir = wd
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := build(`func(ctx context.Context, key string) (string, error) { return key, nil }`)
	require.NoError(t, err, "the right loader compiles: %s", out)

	out, err = build(`func(ctx context.Context, key string) (int, error) { return 0, nil }`)
	require.Error(t, err, "a loader of int for a cache of string must not compile")
	assert.True(t, strings.Contains(out, "cannot use func(ctx context.Context, key string) (int, error)"), out)
	t.Logf("the compiler says: %s", strings.TrimSpace(out))
}
