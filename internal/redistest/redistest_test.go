package redistest

import (
	"context"
	"testing"
)

func TestStartGivesAWorkingServerThatSurvivesRestartWithAOF(t *testing.T) {
	if os := Start(t); os.URL == "" {
		t.Fatal("empty URL")
	}
	s := StartWith(t, Options{TCP: true, AOF: true})
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart: got %q, %v; want v", got, err)
	}
}
