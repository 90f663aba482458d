package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/redistest"
)

// noExitSleep spares each run of the -race binary the race detector's 1 s sleep at exit.
const noExitSleep = "GORACE=atexit_sleep_ms=0"

func senderLs(t *testing.T, env []string) []ops.SenderInfo {
	t.Helper()
	r := runCLI(t, env, "sender", "ls", "--json")
	var ss []ops.SenderInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ss) != nil {
		t.Fatalf("sender ls --json: %+v", r)
	}
	return ss
}

// Bad arguments exit 2 with an error naming what is wrong, and change nothing.
func TestSenderRateRefusesBadArgumentsWithExit2(t *testing.T) {
	srv := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + srv.URL, noExitSleep}
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"sender", "rate"}, "arg"},
		{[]string{"sender", "rate", "+919876543210", "20", "30"}, "arg"},
		{[]string{"sender", "rate", "abc", "20"}, "not a phone number"},
		{[]string{"sender", "rate", "+1", "20"}, "sender number"},
		{[]string{"sender", "rate", "+919876543210"}, "rate in messages per second"},
		{[]string{"sender", "rate", "+919876543210", "0"}, `rate "0"`},
		{[]string{"sender", "rate", "+919876543210", "-5"}, `rate "-5"`},
		{[]string{"sender", "rate", "+919876543210", "NaN"}, `rate "NaN"`},
		{[]string{"sender", "rate", "+919876543210", "Inf"}, `rate "Inf"`},
		{[]string{"sender", "rate", "+919876543210", "2e6"}, "at most 1e+06"},
		{[]string{"sender", "rate", "+919876543210", "fast"}, `rate "fast"`},
		{[]string{"sender", "rate", "+919876543210", "20", "--burst", "0"}, "--burst must be 1 to"},
		{[]string{"sender", "rate", "+919876543210", "20", "--burst", "x"}, "burst"},
		{[]string{"sender", "rate", "+919876543210", "default", "--burst", "3"}, "--burst goes with a rate"},
		{[]string{"sender", "rate", "+919876543210", "20", "--reset"}, "not both"},
		{[]string{"sender", "rate", "+919876543210", "-0.5"}, `rate "-0.5"`},
		{[]string{"sender", "ls", "extra"}, `"extra"`},
	} {
		r := runCLI(t, env, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("wabulk %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	if ss := senderLs(t, env); len(ss) != 0 {
		t.Errorf("refused commands stored something: %+v", ss)
	}
}

func TestSenderRateThenLsShowsIt(t *testing.T) {
	srv := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + srv.URL, "WABULK_RATE=40", noExitSleep}
	if r := runCLI(t, env, "sender", "rate", "+91 98765 43210", "20"); r.code != 0 || !strings.Contains(r.stdout, "+919876543210: 20 messages/s, burst 2") {
		t.Fatalf("sender rate: %+v", r)
	}
	if r := runCLI(t, env, "sender", "rate", "919876543211", "0.5", "--burst", "4"); r.code != 0 {
		t.Fatalf("sender rate --burst: %+v", r)
	}
	ss := senderLs(t, env)
	want := []ops.SenderInfo{
		{Number: "+919876543210", Rate: 20, Burst: 2, Override: true},
		{Number: "+919876543211", Rate: 0.5, Burst: 4, Override: true},
	}
	if len(ss) != 2 || ss[0] != want[0] || ss[1] != want[1] {
		t.Errorf("sender ls --json = %+v, want %+v", ss, want)
	}
	if r := runCLI(t, env, "sender", "ls"); r.code != 0 || !strings.Contains(r.stdout, "SENDER") || !strings.Contains(r.stdout, "override") {
		t.Errorf("sender ls: %+v", r)
	}

	if r := runCLI(t, env, "sender", "rate", "+919876543210", "default"); r.code != 0 || !strings.Contains(r.stdout, "back to the default") {
		t.Errorf("sender rate default: %+v", r)
	}
	if r := runCLI(t, env, "sender", "rate", "+919876543211", "--reset"); r.code != 0 {
		t.Errorf("sender rate --reset: %+v", r)
	}
	if ss := senderLs(t, env); len(ss) != 0 {
		t.Errorf("after reset, no sender has an override or work: %+v", ss)
	}
}
