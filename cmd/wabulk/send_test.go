package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/inprocess"
)

func TestSendCLIOnEmbeddedRedisAndSandbox(t *testing.T) {
	csv := "to,type,media_link,ref\n+919876543210,image,https://x.test/a.jpg,a\n+919876543211,image,https://x.test/a.jpg,b\n" +
		"+919876543212,image,https://x.test/a.jpg,c\n+14155550123,image,https://x.test/a.jpg,d\nnot-a-number,image,https://x.test/a.jpg,e\n"
	r := runCLI(t, []string{"WABULK_RETRY_BASE=20ms", "WABULK_RETRY_MAX=100ms"}, "send", "--embedded-redis", "--sandbox",
		"--fault", "WA500=0.3", "--seed", "5", "--json", writeFile(t, "spring.csv", csv))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (one row rejected); stderr:\n%s", r.code, r.stderr)
	}
	var res inprocess.SendResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not the JSON summary: %v\n%s", err, r.stdout)
	}
	if res.Campaign != "spring" || res.Enqueue.Enqueued != 4 || res.Enqueue.Rejected != 1 || res.Sent != 4 || res.Left() != 0 {
		t.Errorf("summary %+v", res)
	}
	if res.Sandbox == nil || res.Sandbox.Accepted != res.Sent || res.Sandbox.Answered["WA500"] != res.Retried {
		t.Errorf("summary %+v does not match the sandbox %+v", res, res.Sandbox)
	}
	for _, want := range []string{"line 6:", "nothing survives the process"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	r = runCLI(t, nil, "send", "--embedded-redis", writeFile(t, "c.csv", csv))
	if r.code != 2 || !strings.Contains(r.stderr, "KALEYRA_SID") {
		t.Errorf("send to the real API without credentials: exit %d, stderr %q; want 2 naming KALEYRA_SID", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "send", "--help"); !strings.Contains(r.stdout, "NOTHING SURVIVES THE") {
		t.Errorf("send --help does not warn that the embedded Redis is lost:\n%s", r.stdout)
	}
}
