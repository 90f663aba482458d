package main

import (
	"regexp"
	"testing"
)

// TestDemoCLI is the README's first command: it needs no Redis and no Kaleyra, and ends with the
// summary and the commands for a real run.
func TestDemoCLI(t *testing.T) {
	r := runCLI(t, nil, "demo")
	if r.code != 0 {
		t.Fatalf("wabulk demo: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{`nothing survives the process`, `enqueued\s+200`, `sent\s+\d+`, `delivered\s+\d+\s+of them, \d+ read`,
		`failed\s+\d+`, `dead\s+\d+`, `calls received`, `wabulk worker`, `wabulk enqueue`, `wabulk status`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}
