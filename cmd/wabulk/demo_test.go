package main

import (
	"strings"
	"testing"
)

// TestDemoCLI is the README's first command: it needs no Redis and no Kaleyra, and ends with the
// summary and the commands for a real run.
func TestDemoCLI(t *testing.T) {
	r := runCLI(t, nil, "demo")
	if r.code != 0 {
		t.Fatalf("wabulk demo: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"nothing survives the process", "enqueued  200", "sent      ", "dead      ",
		"calls received", "wabulk worker", "wabulk enqueue", "wabulk status"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}
