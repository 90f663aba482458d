package media_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
)

const (
	sender  = "+919000000001"
	sender2 = "+919000000002"
	sid     = "media-sid"
	apiKey  = "media-test-key"
)

// world is a sandbox of the test account with two senders, a client of it and a ledger on a
// fresh Redis.
type world struct {
	sb     *sandbox.Server
	client *kaleyra.Client
	ledger *store.Ledger
}

func newWorld(t *testing.T) *world {
	t.Helper()
	sb, err := sandbox.Start(sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender, sender2}, Balance: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	c, err := kaleyra.New(kaleyra.Config{SID: sid, APIKey: apiKey, BaseURL: sb.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &world{sb: sb, client: c, ledger: store.New(redistest.Start(t).Client(t), "whatsapp", time.Hour)}
}

func (w *world) uploader(t *testing.T, cache bool) *media.Uploader {
	t.Helper()
	cfg := media.Config{Kaleyra: w.client, Backoff: time.Millisecond}
	if cache {
		cfg.Cache = w.ledger
	}
	u, err := media.NewUploader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// uploadsFrom counts the sandbox's accepted uploads per sender (digits).
func (w *world) uploadsFrom() map[string]int {
	n := map[string]int{}
	for _, u := range w.sb.Uploads() {
		if u.ID != "" {
			n[u.From]++
		}
	}
	return n
}

func openJPEG(t *testing.T) *media.File {
	t.Helper()
	f, err := media.Open(write(t, "a.jpg", jpegBytes), "")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestIDUploadsOncePerSenderAndReusesTheCachedID(t *testing.T) {
	w := newWorld(t)
	u := w.uploader(t, true)
	f := openJPEG(t)
	ctx := context.Background()
	id, uploaded, err := u.ID(ctx, sender, f)
	if err != nil || !uploaded || !strings.HasPrefix(id, "sbx-") {
		t.Fatalf("first: %q %v %v", id, uploaded, err)
	}
	// Same file, same sender, another form of the number: the cached id.
	again, uploaded, err := u.ID(ctx, "91 90000 00001", f)
	if err != nil || uploaded || again != id {
		t.Fatalf("second: %q %v %v, want %q reused", again, uploaded, err, id)
	}
	// Another sender needs its own id.
	other, uploaded, err := u.ID(ctx, sender2, f)
	if err != nil || !uploaded || other == id {
		t.Fatalf("another sender: %q %v %v", other, uploaded, err)
	}
	// The same content under another name is the same file.
	same, err := media.Open(write(t, "copy.jpg", jpegBytes), "")
	if err != nil {
		t.Fatal(err)
	}
	if got, uploaded, err := u.ID(ctx, sender, same); err != nil || uploaded || got != id {
		t.Errorf("same content, other name: %q %v %v", got, uploaded, err)
	}
	if got := w.uploadsFrom(); got["919000000001"] != 1 || got["919000000002"] != 1 {
		t.Errorf("uploads per sender %v, want one each", got)
	}
	// The ids are ones the sandbox takes from their senders.
	for s, id := range map[string]string{sender: id, sender2: other} {
		if _, err := w.client.Send(ctx, s, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: id}); err != nil {
			t.Errorf("send %s from %s: %v", id, s, err)
		}
	}
}

func TestIDWithoutACacheUploadsEveryTime(t *testing.T) {
	w := newWorld(t)
	u := w.uploader(t, false)
	f := openJPEG(t)
	for range 2 {
		if _, uploaded, err := u.ID(context.Background(), sender, f); err != nil || !uploaded {
			t.Fatalf("%v %v", uploaded, err)
		}
	}
	if n := w.sb.Stats().Uploaded; n != 2 {
		t.Errorf("%d uploads, want 2", n)
	}
}

func TestIDRetriesTransientFailuresOnly(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   []string
		calls    int
		ok       bool
		code     string
		retrying bool
	}{
		{name: "two WA500 then ok is one id", script: []string{"WA500", "503"}, calls: 3, ok: true},
		{name: "three WA500 give up", script: []string{"WA500", "WA500", "WA500"}, calls: 3, code: "WA500", retrying: true},
		{name: "RBC001 is not tried again", script: []string{"RBC001"}, calls: 1, code: "RBC001"},
		{name: "an answer without an id is not tried again", script: []string{"noid200"}, calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if err := w.sb.ScriptUploads(tc.script...); err != nil {
				t.Fatal(err)
			}
			id, _, err := w.uploader(t, true).ID(context.Background(), sender, openJPEG(t))
			if n := len(w.sb.Uploads()); n != tc.calls {
				t.Errorf("%d upload calls, want %d", n, tc.calls)
			}
			if tc.ok {
				if err != nil || id == "" {
					t.Fatalf("%q %v", id, err)
				}
				return
			}
			var ke *kaleyra.Error
			if !errors.As(err, &ke) || ke.Code != tc.code || ke.Retryable() != tc.retrying {
				t.Fatalf("%v: want *kaleyra.Error %q", err, tc.code)
			}
			// Nothing was cached: the next run uploads.
			if _, ok, _ := w.ledger.MediaID(context.Background(), store.MediaKey{Account: w.client.Account(), Sender: sender,
				SHA256: openJPEG(t).SHA256, MIME: "image/jpeg"}); ok {
				t.Error("a failed upload left an id in the cache")
			}
		})
	}
}

// badIDs is a Kaleyra that answers an id no job can carry.
type badIDs struct{ *kaleyra.Client }

func (badIDs) Upload(context.Context, string, kaleyra.Media) (string, error) { return "a/b c", nil }

func TestIDRefusesAnIDNoJobCanCarry(t *testing.T) {
	w := newWorld(t)
	u, err := media.NewUploader(media.Config{Kaleyra: badIDs{w.client}, Cache: w.ledger})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.ID(context.Background(), sender, openJPEG(t)); !errors.Is(err, media.ErrBadMediaID) {
		t.Fatalf("%v, want ErrBadMediaID", err)
	}
	if _, err := media.NewUploader(media.Config{}); err == nil {
		t.Error("an uploader without a client")
	}
}
