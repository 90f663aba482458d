package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMediaIDCache(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	sum := strings.Repeat("ab", 32)
	k := MediaKey{Account: "https://api.in.kaleyra.io/v2/SID", Sender: "+919000000001", SHA256: sum, MIME: "image/jpeg"}
	if _, ok, err := l.MediaID(ctx, k); ok || err != nil {
		t.Fatalf("empty cache: %v %v", ok, err)
	}
	if err := l.SetMediaID(ctx, k, "1095582791498432"); err != nil {
		t.Fatal(err)
	}
	// Any way of writing the sender, and the hash in capitals, name the same upload.
	same := k
	same.Sender, same.SHA256 = "91 90000 00001", strings.ToUpper(sum)
	if id, ok, err := l.MediaID(ctx, same); id != "1095582791498432" || !ok || err != nil {
		t.Fatalf("MediaID = %q %v %v", id, ok, err)
	}
	for name, other := range map[string]MediaKey{
		"another sender":  {Account: k.Account, Sender: "+919000000002", SHA256: sum, MIME: k.MIME},
		"another file":    {Account: k.Account, Sender: k.Sender, SHA256: strings.Repeat("cd", 32), MIME: k.MIME},
		"another account": {Account: "http://127.0.0.1:8089/v2/sandbox-sid", Sender: k.Sender, SHA256: sum, MIME: k.MIME},
		"another type":    {Account: k.Account, Sender: k.Sender, SHA256: sum, MIME: "image/png"},
	} {
		if id, ok, err := l.MediaID(ctx, other); ok || err != nil {
			t.Errorf("%s: %q %v %v, want no id", name, id, ok, err)
		}
	}
	// One key in the namespace's slot, expiring within Meta's 30 days.
	keys, _ := l.rdb.Keys(ctx, "*").Result()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "wabulk:{whatsapp}:media:919000000001:"+sum+":") {
		t.Fatalf("keys %q", keys)
	}
	if ttl := l.rdb.TTL(ctx, keys[0]).Val(); ttl <= 24*24*time.Hour || ttl > 25*24*time.Hour {
		t.Errorf("TTL %v, want 25 days", ttl)
	}
	// A value that cannot be an id is no id.
	for _, bad := range []string{"", "a b", strings.Repeat("9", 300)} {
		l.rdb.Set(ctx, keys[0], bad, time.Hour)
		if id, ok, err := l.MediaID(ctx, k); ok || err != nil {
			t.Errorf("stored %q read as %q %v %v", bad, id, ok, err)
		}
	}
	bad := k
	bad.Sender = "nobody"
	if err := l.SetMediaID(ctx, bad, "1"); !errors.Is(err, ErrBadSender) {
		t.Errorf("bad sender: %v", err)
	}
	bad = k
	bad.SHA256 = "../x"
	if _, _, err := l.MediaID(ctx, bad); !errors.Is(err, ErrBadMediaKey) {
		t.Errorf("bad hash: %v", err)
	}
}
