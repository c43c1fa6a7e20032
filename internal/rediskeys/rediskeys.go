package rediskeys

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/rueidis"
)

// DeletePrefix deletes every key whose name starts with prefix, a page of
// SCAN MATCH at a time; a glob character in prefix matches only itself.
// It uses DEL, which frees the memory at once, where UNLINK would leave it
// to a Redis thread running beside whatever comes next. An empty prefix is
// refused: it would delete every key. On a Cluster client SCAN reaches
// one node, so only that node's keys go. The first error ends it.
func DeletePrefix(ctx context.Context, c rueidis.Client, prefix string) error {
	if prefix == "" {
		return errors.New("rediskeys: no prefix: refusing to delete every key")
	}
	pattern := globEscaper.Replace(prefix) + "*"
	var cursor uint64
	for {
		page, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		if len(page.Elements) > 0 {
			if err := c.Do(ctx, c.B().Del().Key(page.Elements...).Build()).Error(); err != nil {
				return err
			}
		}
		if cursor = page.Cursor; cursor == 0 {
			return nil
		}
	}
}

// globEscaper escapes what SCAN's MATCH pattern would read as a wildcard.
var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
