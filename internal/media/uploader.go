package media

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// Client is what an Uploader needs of Kaleyra; *kaleyra.Client is one.
type Client interface {
	Upload(ctx context.Context, from string, m kaleyra.Media) (string, error)
	Account() string
}

var _ Client = (*kaleyra.Client)(nil)

// Config builds an Uploader.
type Config struct {
	// Kaleyra uploads the files. Required.
	Kaleyra Client
	// Cache keeps each media id in Redis for 25 days, per Kaleyra account, sender and file, so a
	// campaign run again does not upload again. Default nil: no cache, every call uploads (as
	// `wabulk media upload` does).
	Cache *store.Ledger
	// Attempts is how many times an upload that failed for a transient reason (Kaleyra's 5xx or
	// 429, no answer) is tried in all. Default 3.
	Attempts int
	// Backoff is the wait before the second attempt, doubled before each one after; a longer
	// Retry-After from Kaleyra wins, up to a minute. Default 1s.
	Backoff time.Duration
	// Log receives a line per upload and per id reused. Default none.
	Log *zap.Logger
	// PII says how sender numbers appear in Log. Default masked.
	PII logging.Masker
}

// Uploader gets the media id of a file for a sender. It is safe for concurrent use.
type Uploader struct {
	cfg Config
}

// NewUploader checks cfg and returns an Uploader.
func NewUploader(cfg Config) (*Uploader, error) {
	if cfg.Kaleyra == nil {
		return nil, errors.New("media: no Kaleyra client")
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Uploader{cfg: cfg}, nil
}

// ErrBadMediaID is returned (wrapped) when Kaleyra's answer names an id a job cannot carry.
var ErrBadMediaID = errors.New("unusable media id")

// ID returns the media id of f for sender (any form of the number): the cached one, or one
// uploaded now and cached; uploaded says which. An upload failure is a *kaleyra.Error (wrapped)
// after the transient ones were retried; a cache failure is Redis's error.
func (u *Uploader) ID(ctx context.Context, sender string, f *File) (id string, uploaded bool, err error) {
	key := mediaKey(u, sender, f)
	if u.cfg.Cache != nil {
		id, ok, err := u.cfg.Cache.MediaID(ctx, key)
		if err != nil {
			return "", false, err
		}
		if ok {
			u.cfg.Log.Info("media id reused", zap.String("file", f.Name), zap.String("sha256", f.SHA256),
				zap.String("sender", u.cfg.PII.Phone(sender)))
			return id, false, nil
		}
	}
	id, err = u.upload(ctx, sender, f)
	if err != nil {
		return "", false, err
	}
	if u.cfg.Cache != nil {
		if err := u.cfg.Cache.SetMediaID(ctx, key, id); err != nil {
			return "", false, err
		}
	}
	return id, true, nil
}

// mediaKey names the upload of f for sender on u's Kaleyra account in the cache.
func mediaKey(u *Uploader, sender string, f *File) store.MediaKey {
	return store.MediaKey{Account: u.cfg.Kaleyra.Account(), Sender: sender, SHA256: f.SHA256, MIME: f.MIME}
}

// upload sends the file, trying a transient failure again after a backoff.
func (u *Uploader) upload(ctx context.Context, sender string, f *File) (string, error) {
	wait := u.cfg.Backoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		id, err := u.once(ctx, sender, f)
		log := u.cfg.Log.With(zap.String("file", f.Name), zap.String("mime", f.MIME), zap.Int64("size", f.Size),
			zap.String("sender", u.cfg.PII.Phone(sender)), zap.Int("attempt", attempt), zap.Duration("duration", time.Since(start)))
		if err == nil {
			log.Info("media uploaded", zap.String("media_id", id))
			return id, nil
		}
		var ke *kaleyra.Error
		if !errors.As(err, &ke) || !ke.Retryable() || attempt >= u.cfg.Attempts || ctx.Err() != nil {
			log.Warn("media upload failed", zap.Error(err))
			return "", fmt.Errorf("upload %s from %s: %w", f.Name, sender, err)
		}
		d := max(wait, min(ke.RetryAfter, time.Minute))
		log.Warn("media upload failed, trying again", zap.Error(err), zap.Duration("wait", d))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("upload %s from %s: %w (after %v)", f.Name, sender, ctx.Err(), err)
		case <-t.C:
		}
		wait *= 2
	}
}

func (u *Uploader) once(ctx context.Context, sender string, f *File) (string, error) {
	in, err := f.open()
	if err != nil {
		return "", err
	}
	defer in.Close()
	id, err := u.cfg.Kaleyra.Upload(ctx, sender, kaleyra.Media{Name: f.Name, Type: f.MIME, Body: in, Size: f.Size})
	if err != nil {
		return "", err
	}
	if err := job.CheckMediaID(id); err != nil {
		return "", fmt.Errorf("%w: Kaleyra answered %q, which a job cannot send: %v", ErrBadMediaID, id, err)
	}
	return id, nil
}
