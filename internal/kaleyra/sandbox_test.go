package kaleyra_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
	"github.com/wabulk/wabulk/internal/sandbox"
)

const sandboxSender = "919000000001"

// startSandbox runs a sandbox of the test account for one test.
func startSandbox(t *testing.T, cfg sandbox.Config) *sandbox.Server {
	t.Helper()
	cfg.SID, cfg.APIKey, cfg.Senders = testSID, testKey, []string{"+" + sandboxSender}
	// The ids the send tests name, as media the account uploaded before.
	cfg.MediaIDs = []string{"1", "2", "3"}
	s, err := sandbox.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The client reads every documented answer the sandbox sends as it reads the documented body.
func TestClientAgainstSandboxDocumentedAnswers(t *testing.T) {
	s := startSandbox(t, sandbox.Config{Balance: -1})
	c := newClient(t, s.URL, time.Second)
	checkDocumentedAnswers(t, func(name string) error { return s.Script("+919876543210", name) }, func() error {
		_, err := c.Send(context.Background(), sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
		return err
	})
}

// checkDocumentedAnswers scripts each documented answer in turn and checks that call reads it
// as the client reads the documented body.
func checkDocumentedAnswers(t *testing.T, script func(name string) error, call func() error) {
	t.Helper()
	for _, a := range kaleyradocs.Answers {
		t.Run(a.Name, func(t *testing.T) {
			var want *kaleyra.Error
			if !errors.As(kaleyra.ParseAnswer(a.Status, nil, []byte(a.Body)), &want) {
				t.Fatalf("the documented body of %s is no *kaleyra.Error", a.Name)
			}
			if err := script(a.Name); err != nil {
				t.Fatal(err)
			}
			err := call()
			var e *kaleyra.Error
			if !errors.As(err, &e) || e.Status != want.Status || e.Code != want.Code || e.Message != want.Message ||
				!maps.Equal(e.Fields, want.Fields) || e.Retryable() != want.Retryable() {
				t.Errorf("got %v, want %v", err, want)
			}
		})
	}
}

func TestClientAgainstSandboxFaults(t *testing.T) {
	type want struct {
		status  int
		code    string
		retry   bool
		timeout bool
	}
	for _, tc := range []struct {
		name   string
		answer string
		want   want
	}{
		{"WA500 comes back transient", "WA500", want{500, "WA500", true, false}},
		{"E110 comes back permanent", "E110", want{400, "E110", false, false}},
		{"WA400 comes back permanent", "WA400", want{400, "WA400", false, false}},
		{"RBC001 comes back permanent", "RBC001", want{401, "RBC001", false, false}},
		{"WA401 comes back permanent", "WA401", want{401, "WA401", false, false}},
		{"WA-401 account comes back permanent", "WA-401-account", want{401, "WA-401", false, false}},
		{"WA-401 version comes back permanent", "WA-401-version", want{401, "WA-401", false, false}},
		{"WAV2101 comes back permanent", "WAV2101", want{400, "WAV2101", false, false}},
		{"429 comes back transient", "429", want{429, "", true, false}},
		{"503 comes back transient", "503", want{503, "", true, false}},
		{"HTML 502 comes back transient", "html502", want{502, "", true, false}},
		{"truncated 500 comes back transient", "truncated", want{500, "", true, false}},
		{"10 MB 500 comes back transient", "big", want{500, "", true, false}},
		{"empty 500 comes back transient", "empty500", want{500, "", true, false}},
		{"hang comes back as a timeout", "hang", want{0, "", true, true}},
		{"reset comes back as a network error", "reset", want{0, "", true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSandbox(t, sandbox.Config{Balance: -1, HangFor: time.Minute})
			if err := s.Script("+919876543210", tc.answer); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, s.URL, 300*time.Millisecond)
			_, err := c.Send(context.Background(), sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
			var e *kaleyra.Error
			if !errors.As(err, &e) {
				t.Fatalf("%v: want *kaleyra.Error", err)
			}
			got := want{e.Status, e.Code, e.Retryable(), e.Timeout}
			if got != tc.want {
				t.Errorf("got %+v, want %+v (%v)", got, tc.want, err)
			}
			if tc.answer == "429" || tc.answer == "503" {
				if e.RetryAfter != time.Second {
					t.Errorf("RetryAfter %v", e.RetryAfter)
				}
			}
			// The script is used up: the next send is accepted.
			res, err := c.Send(context.Background(), sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
			if err != nil || res.MessageID == "" {
				t.Fatalf("next send: %+v %v", res, err)
			}
		})
	}
}

func TestClientAgainstSandboxAccepts(t *testing.T) {
	s := startSandbox(t, sandbox.Config{Balance: -1})
	c := newClient(t, s.URL, time.Second)
	for _, m := range []kaleyra.Message{
		{To: "+919876543210", Type: "image", MediaID: "1", Caption: "c"},
		{To: "+919876543211", Type: "document", MediaLink: "https://example.com/a.pdf", Caption: "c", Filename: "a.pdf", Ref: "r", WASource: "api"},
		{To: "+919876543212", Type: "video", MediaLink: "http://example.com/a.mp4"},
		{To: "+919876543213", Type: "audio", MediaID: "2"},
		{To: "+919876543214", Type: "sticker", MediaID: "3"},
	} {
		res, err := c.Send(context.Background(), "+91 90000 00001", m)
		if err != nil || res.Status != 200 || len(res.MessageID) < len("wamid.")+8 {
			t.Errorf("%s: %+v %v", m.Type, res, err)
		}
	}
	if st := s.Stats(); st.Accepted != 5 || len(st.Duplicates()) != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestClientAgainstSandboxChecks(t *testing.T) {
	s := startSandbox(t, sandbox.Config{Balance: -1})
	for _, tc := range []struct {
		name string
		key  string
		from string
		msg  kaleyra.Message
		code string
	}{
		{"wrong key is RBC001", "other-key", sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"}, "RBC001"},
		{"foreign sender is WA401", testKey, "919000000999", kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"}, "WA401"},
		{"both id and link is WA400", testKey, sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1", MediaLink: "https://example.com/a.png"}, "WA400"},
		{"ftp link is WA400", testKey, sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaLink: "ftp://example.com/a.png"}, "WA400"},
		{"missing to is WA400", testKey, sandboxSender, kaleyra.Message{Type: "image", MediaID: "1"}, "WA400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := kaleyra.New(kaleyra.Config{SID: testSID, APIKey: tc.key, BaseURL: s.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Send(context.Background(), tc.from, tc.msg)
			var e *kaleyra.Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Retryable() {
				t.Fatalf("%v: want permanent %s", err, tc.code)
			}
		})
	}
}

func TestClientAgainstSandboxRatesAndBalance(t *testing.T) {
	s := startSandbox(t, sandbox.Config{Seed: 3, Balance: 80, Rates: map[string]float64{"WA500": 0.2, "WAV2101": 0.1, "429": 0.1}})
	c := newClient(t, s.URL, time.Second)
	got := map[string]int64{}
	for i := range 200 {
		_, err := c.Send(context.Background(), sandboxSender, kaleyra.Message{To: fmt.Sprintf("+9198000%05d", i), Type: "image", MediaID: "1"})
		var e *kaleyra.Error
		switch {
		case err == nil:
			got["ok"]++
		case errors.As(err, &e) && e.Code != "":
			got[e.Code]++
		case errors.As(err, &e):
			got[e.Label()]++
		default:
			t.Fatalf("untyped error %v", err)
		}
	}
	st := s.Stats()
	want := map[string]int64{"ok": st.Answered["ok"], "WA500": st.Answered["WA500"], "WAV2101": st.Answered["WAV2101"],
		"HTTP 429": st.Answered["429"], "E110": st.Answered["E110"]}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("client saw %v, sandbox answered %v", got, st.Answered)
			break
		}
	}
	if got["WA500"] == 0 || got["WAV2101"] == 0 || got["HTTP 429"] == 0 || got["E110"] == 0 {
		t.Errorf("some fault never showed: %v", got)
	}
	if st.Accepted != 80 || st.Balance != 0 {
		t.Errorf("accepted %d with balance %d left, want 80 and 0", st.Accepted, st.Balance)
	}
}

func TestSlowlorisAcceptedAnswerIsASendEvenIfTheBodyNeverEnds(t *testing.T) {
	s := startSandbox(t, sandbox.Config{Balance: -1, HangFor: time.Minute})
	s.Script("+919876543210", "slowloris")
	c := newClient(t, s.URL, 300*time.Millisecond)
	res, err := c.Send(context.Background(), sandboxSender, kaleyra.Message{To: "+919876543210", Type: "image", MediaID: "1"})
	// 200 headers mean Kaleyra took the message; retrying would send it twice.
	if err != nil || res.Status != 200 {
		t.Fatalf("%+v %v", res, err)
	}
	if st := s.Stats(); st.Accepted != 1 {
		t.Errorf("stats %+v", st)
	}
}
