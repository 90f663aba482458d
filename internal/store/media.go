package store

// Media ids of uploaded files, so that a campaign run again does not upload its file again.
// One key per upload, in the namespace's slot {ns}:
//
//	wabulk:{ns}:media:<sender digits>:<file SHA-256, hex>:<scope>  STRING the media id;
//	                                 expires after defaults.MediaCacheTTL (25 days)
//
// scope is the first 16 hex digits of the SHA-256 of the Kaleyra account (endpoint and SID) and
// the MIME type the file went up as: an id is good only on the account and from the sender that
// uploaded it, and a sandbox's ids must never be sent to the real API. The expiry stays below
// the 30 days Meta keeps uploaded media, so a cached id is never one Meta has dropped.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/defaults"
)

// MediaKey names one upload: the same file, sent from the same sender of the same account as
// the same MIME type, has the same media id.
type MediaKey struct {
	// Account is the Kaleyra account (kaleyra.Client.Account: endpoint and SID, no secret).
	Account string
	// Sender is the business number, in any form job.NormalizeNumber takes.
	Sender string
	// SHA256 is the file's SHA-256 in hex.
	SHA256 string
	// MIME is the type the file is uploaded as (image/jpeg).
	MIME string
}

// ErrBadMediaKey is returned (wrapped) for a MediaKey whose file hash is not 64 hex digits.
var ErrBadMediaKey = errors.New("bad media key")

// maxCachedID bounds a cached id; a longer value is corrupt and read as no id.
const maxCachedID = 256

func (l *Ledger) mediaKey(k MediaKey) (string, error) {
	d, err := SenderDigits(k.Sender)
	if err != nil {
		return "", err
	}
	if _, err := hex.DecodeString(k.SHA256); err != nil || len(k.SHA256) != 2*sha256.Size {
		return "", fmt.Errorf("%w: file hash %q is not a hex SHA-256", ErrBadMediaKey, clip(k.SHA256))
	}
	scope := sha256.Sum256([]byte(k.Account + "\x00" + k.MIME))
	return l.mediaCacheKey(d, strings.ToLower(k.SHA256), hex.EncodeToString(scope[:8])), nil
}

// MediaID returns the cached media id of k, and whether there is one. A value that cannot be an
// id (empty, too long, with spaces) counts as none, so it is uploaded again and overwritten.
func (l *Ledger) MediaID(ctx context.Context, k MediaKey) (string, bool, error) {
	key, err := l.mediaKey(k)
	if err != nil {
		return "", false, err
	}
	id, err := l.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("media id cache: %w", err)
	}
	if id == "" || len(id) > maxCachedID || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return "", false, nil
	}
	return id, true, nil
}

// SetMediaID caches id as the media id of k for defaults.MediaCacheTTL. Two uploads of one file
// at once both succeed and the later id is kept: both are good.
func (l *Ledger) SetMediaID(ctx context.Context, k MediaKey, id string) error {
	key, err := l.mediaKey(k)
	if err != nil {
		return err
	}
	if err := l.rdb.Set(ctx, key, id, defaults.MediaCacheTTL).Err(); err != nil {
		return fmt.Errorf("media id cache: %w", err)
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
