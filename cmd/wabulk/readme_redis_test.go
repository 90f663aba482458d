package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsStartRedisOnLoopbackOnly: every redis-server command in a code block of the README or
// docs/ binds 127.0.0.1 (a throwaway Redis without a password must not listen on every
// interface).
func TestDocsStartRedisOnLoopbackOnly(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range append(files, "../../README.md") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inCode := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode = !inCode
				continue
			}
			if !inCode || !strings.HasPrefix(strings.TrimSpace(line), "redis-server ") {
				continue
			}
			seen++
			if !strings.Contains(line, "--bind 127.0.0.1") {
				t.Errorf("%s:%d starts redis-server without --bind 127.0.0.1: %s", filepath.Base(f), i+1, line)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no redis-server command found in the README or docs: the test proves nothing")
	}
}
