package sandbox

import (
	"testing"
	"time"
)

func TestMediaIDsExpireAndCannotBeForged(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	from := DefaultSender
	for _, tc := range []struct {
		name string
		id   string
		want bool
	}{
		{"issued now", s.issue(from, now), true},
		{"issued 29 days ago", s.issue(from, now.Add(-29*24*time.Hour)), true},
		{"issued 31 days ago", s.issue(from, now.Add(-31*24*time.Hour)), false},
		{"issued in an hour", s.issue(from, now.Add(time.Hour)), false},
		{"issued to another sender", s.issue("919000000002", now), false},
		{"with another MAC", s.issue(from, now)[:40] + "0000000000000000000000000000", false},
		{"not a sandbox id", "1234567890", false},
		{"three parts", "sbx-1-2", false},
		{"time not a number", "sbx-x-aaaa-bbbb", false},
		{"empty", "", false},
	} {
		if got := s.knownMedia(from, tc.id, now); got != tc.want {
			t.Errorf("%s (%q): known %v, want %v", tc.name, tc.id, got, tc.want)
		}
	}
}
