package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	sid    = "HXAP16XXXXXX97IN"
	apiKey = "A-test-key-3"
	sender = "919000000001"
	to     = "+919876543210"
)

// start runs a sandbox for one test with the test account, unlimited balance unless cfg says.
func start(t *testing.T, cfg sandbox.Config) *sandbox.Server {
	t.Helper()
	if cfg.SID == "" {
		cfg.SID, cfg.APIKey, cfg.Senders = sid, apiKey, []string{"+91 90000 00001"}
	}
	if cfg.Balance == 0 {
		cfg.Balance = -1
	}
	// The ids the payload tests send, as media the account uploaded before.
	cfg.MediaIDs = append(cfg.MediaIDs, "10xx91", "1")
	s, err := sandbox.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client is a plain client whose idle connections go away with the test, for goleak.
func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type call struct {
	path   string // default: the test account's messages path
	key    *string
	ctype  *string
	body   string
	length int64 // -1: send chunked, without Content-Length
}

func str(s string) *string { return &s }

func messagesPath(sid, from string) string { return "/v2/" + sid + "/whatsapp/" + from + "/messages" }

// post sends c and returns the status, the Content-Type and the body.
func post(t *testing.T, s *sandbox.Server, c call) (int, http.Header, []byte) {
	t.Helper()
	if c.path == "" {
		c.path = messagesPath(sid, sender)
	}
	var body io.Reader = strings.NewReader(c.body)
	if c.length < 0 {
		body = io.MultiReader(body) // hides the length: net/http sends it chunked
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.key == nil {
		c.key = str(apiKey)
	}
	if *c.key != "" {
		req.Header.Set("api-key", *c.key)
	}
	if c.ctype == nil {
		c.ctype = str("application/json")
	}
	if *c.ctype != "" {
		req.Header.Set("Content-Type", *c.ctype)
	}
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// msg builds a messaging_object body around the given fields.
func msg(fields string) string {
	return `{"messaging_object":{` + fields + `},"extra_info":{"ref":"r","wa_source":"api"}}`
}

const okFields = `"messaging_product":"whatsapp","recipient_type":"individual","to":"+919876543210","type":"image","image":{"id":"10xx91"}`

func TestValidation(t *testing.T) {
	big := msg(okFields)
	big = big[:len(big)-1] + strings.Repeat(" ", sandbox.MaxBodyBytes) + "}"
	for _, tc := range []struct {
		name   string
		call   call
		answer string // "" is accepted
	}{
		{"image by id is accepted", call{body: msg(okFields)}, ""},
		{"document by link with caption and filename is accepted", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"document","document":{"link":"https://example.com/a.pdf","caption":"c","filename":"a.pdf"}`)}, ""},
		{"recipient without plus is accepted", call{body: msg(`"messaging_product":"whatsapp","to":"919876543210","type":"sticker","sticker":{"id":"1"}`)}, ""},
		{"charset in content type is accepted", call{ctype: str("application/json; charset=utf-8"), body: msg(okFields)}, ""},
		{"unknown fields are ignored", call{body: `{"x":1,"messaging_object":{` + okFields + `,"extra":[1]}}`}, ""},

		{"wrong SID is RBC001", call{path: messagesPath("OTHER", sender), body: msg(okFields)}, "RBC001"},
		{"wrong api-key is RBC001", call{key: str("nope"), body: msg(okFields)}, "RBC001"},
		{"missing api-key is RBC001", call{key: str(""), body: msg(okFields)}, "RBC001"},
		{"sender not on the account is WA401", call{path: messagesPath(sid, "919000000002"), body: msg(okFields)}, "WA401"},
		{"sender with plus in the path is WA401", call{path: messagesPath(sid, "+919000000001"), body: msg(okFields)}, "WA401"},
		{"auth is checked before the payload", call{key: str("nope"), body: "not json"}, "RBC001"},

		{"text/plain content type is WA400", call{ctype: str("text/plain"), body: msg(okFields)}, "WA400"},
		{"missing content type is WA400", call{ctype: str(""), body: msg(okFields)}, "WA400"},
		{"bad JSON is WA400", call{body: `{"messaging_object":`}, "WA400"},
		{"trailing garbage is WA400", call{body: msg(okFields) + "x"}, "WA400"},
		{"missing messaging_object is WA400", call{body: `{"extra_info":{}}`}, "WA400"},
		{"messaging_product sms is WA400", call{body: msg(strings.Replace(okFields, `"whatsapp"`, `"sms"`, 1))}, "WA400"},
		{"missing messaging_product is WA400", call{body: msg(`"to":"+919876543210","type":"image","image":{"id":"1"}`)}, "WA400"},
		{"recipient_type group is WA400", call{body: msg(strings.Replace(okFields, `"individual"`, `"group"`, 1))}, "WA400"},
		{"missing type is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","image":{"id":"1"}`)}, "WA400"},
		{"unknown type is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"text","text":{"body":"hi"}`)}, "WA400"},
		{"media under another key than type is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"video","image":{"id":"1"}`)}, "WA400"},
		{"neither id nor link is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"image","image":{"caption":"c"}`)}, "WA400"},
		{"both id and link is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"image","image":{"id":"1","link":"https://example.com/a.png"}`)}, "WA400"},
		{"ftp link is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"image","image":{"link":"ftp://example.com/a.png"}`)}, "WA400"},
		{"relative link is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"image","image":{"link":"/a.png"}`)}, "WA400"},
		{"caption on audio is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"audio","audio":{"id":"1","caption":"c"}`)}, "WA400"},
		{"filename on image is WA400", call{body: msg(`"messaging_product":"whatsapp","to":"+919876543210","type":"image","image":{"id":"1","filename":"a.png"}`)}, "WA400"},
		{"missing to is WA400", call{body: msg(`"messaging_product":"whatsapp","type":"image","image":{"id":"1"}`)}, "WA400"},
		{"short to is WA400", call{body: msg(strings.Replace(okFields, "+919876543210", "+12345", 1))}, "WA400"},
		{"to with spaces is WA400", call{body: msg(strings.Replace(okFields, "+919876543210", "+91 98765 43210", 1))}, "WA400"},
		{"to with leading zero is WA400", call{body: msg(strings.Replace(okFields, "+919876543210", "09876543210", 1))}, "WA400"},
		{"to as a JSON number is WA400", call{body: msg(strings.Replace(okFields, `"+919876543210"`, `919876543210`, 1))}, "WA400"},
		{"body over 1 MiB is WA400", call{body: big}, "WA400"},
		{"chunked body over 1 MiB is WA400", call{body: big, length: -1}, "WA400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, sandbox.Config{})
			status, h, body := post(t, s, tc.call)
			if tc.answer == "" {
				if status != 200 || !bytes.Contains(body, []byte(`"wamid.`)) {
					t.Fatalf("got %d %s, want 200 with a message id", status, body)
				}
				return
			}
			want := map[string]int{"RBC001": 401, "WA401": 401, "WA400": 400}[tc.answer]
			if doc := documented(t, tc.answer); status != want || string(body) != doc.Body {
				t.Fatalf("got %d %s, want %d %s", status, body, want, doc.Body)
			}
			if ct := h.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if st := s.Stats(); st.Received != 1 || st.Answered[tc.answer] != 1 || st.Accepted != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestAcceptedAnswerHasRecipientAndUniqueID(t *testing.T) {
	s := start(t, sandbox.Config{})
	ids := map[string]bool{}
	for range 3 {
		status, _, body := post(t, s, call{body: msg(okFields)})
		var a struct {
			Product  string `json:"messaging_product"`
			Contacts []struct {
				Input string `json:"input"`
				WAID  string `json:"wa_id"`
			} `json:"contacts"`
			Messages []struct {
				ID string `json:"id"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(body, &a); err != nil || status != 200 {
			t.Fatalf("%d %s: %v", status, body, err)
		}
		if a.Product != "whatsapp" || len(a.Contacts) != 1 || a.Contacts[0].Input != to || a.Contacts[0].WAID != to[1:] ||
			len(a.Messages) != 1 || !strings.HasPrefix(a.Messages[0].ID, "wamid.") {
			t.Fatalf("answer %s", body)
		}
		ids[a.Messages[0].ID] = true
	}
	if len(ids) != 3 {
		t.Errorf("message ids repeat: %v", ids)
	}
	st := s.Stats()
	if st.Accepted != 3 || st.AcceptedTo[to] != 3 || fmt.Sprint(st.Duplicates()) != "["+to+"]" {
		t.Errorf("stats %+v, duplicates %v", st, st.Duplicates())
	}
	calls := s.Calls()
	if len(calls) != 3 || calls[0].From != sender || calls[0].To != to || calls[0].Answer != "ok" || calls[0].Time.IsZero() {
		t.Errorf("calls %+v", calls)
	}
}

func TestBalanceRunsOutIntoE110UntilToppedUp(t *testing.T) {
	s := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}, Balance: 2})
	var got []int
	for range 4 {
		status, _, _ := post(t, s, call{body: msg(okFields)})
		got = append(got, status)
	}
	if fmt.Sprint(got) != "[200 200 400 400]" {
		t.Fatalf("statuses %v, want two accepted then E110", got)
	}
	_, _, body := post(t, s, call{body: msg(okFields)})
	if string(body) != documented(t, "E110").Body {
		t.Fatalf("body %s", body)
	}
	control(t, s, "/_sandbox/balance", `{"balance":1}`, http.StatusOK)
	if status, _, _ := post(t, s, call{body: msg(okFields)}); status != 200 {
		t.Fatalf("after top-up: %d", status)
	}
	st := s.Stats()
	if st.Balance != 0 || st.Accepted != 3 || st.Answered["E110"] != 3 {
		t.Errorf("stats %+v", st)
	}
}

// control posts to a control endpoint and checks the status.
func control(t *testing.T, s *sandbox.Server, path, body string, want int) []byte {
	t.Helper()
	resp, err := client(t).Post(s.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s: %d %s, want %d", path, resp.StatusCode, b, want)
	}
	return b
}

func TestScriptAnswersInOrderThenOK(t *testing.T) {
	s := start(t, sandbox.Config{})
	if err := s.Script("+91 98765-43210", "WA500", "E110"); err != nil {
		t.Fatal(err)
	}
	control(t, s, "/_sandbox/script", `{"to":"919876543210","answers":["WAV2101"]}`, http.StatusNoContent)
	var got []int
	for range 4 {
		status, _, _ := post(t, s, call{body: msg(okFields)})
		got = append(got, status)
	}
	if fmt.Sprint(got) != "[500 400 400 200]" {
		t.Fatalf("statuses %v", got)
	}
	st := s.Stats()
	if st.Answered["WA500"] != 1 || st.Answered["E110"] != 1 || st.Answered["WAV2101"] != 1 || st.Answered["ok"] != 1 {
		t.Errorf("answered %v", st.Answered)
	}
	if err := s.Script(to, "WA999"); err == nil {
		t.Error("unknown answer name accepted")
	}
	if err := s.Script("12", "ok"); err == nil {
		t.Error("invalid recipient accepted")
	}
	control(t, s, "/_sandbox/script", `{"to":"+919876543210","answers":["nope"]}`, http.StatusBadRequest)
	control(t, s, "/_sandbox/balance", `{}`, http.StatusBadRequest)
}

func TestResetClearsCountersAndScripts(t *testing.T) {
	s := start(t, sandbox.Config{})
	s.Script(to, "WA500", "WA500")
	post(t, s, call{body: msg(okFields)})
	control(t, s, "/_sandbox/reset", ``, http.StatusNoContent)
	if status, _, _ := post(t, s, call{body: msg(okFields)}); status != 200 {
		t.Fatalf("script survived reset: %d", status)
	}
	resp, err := client(t).Get(s.URL + "/_sandbox/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st sandbox.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Received != 1 || st.Accepted != 1 || st.Answered["WA500"] != 0 || st.Balance != -1 {
		t.Errorf("stats after reset %+v", st)
	}
	if len(s.Calls()) != 1 {
		t.Errorf("calls after reset %+v", s.Calls())
	}
}

// answers sends n messages to each of the recipients, all recipients concurrently, and returns
// each recipient's answers in order.
func answers(t *testing.T, s *sandbox.Server, recipients []string, n int) map[string][]int {
	t.Helper()
	got := make(map[string][]int, len(recipients))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range recipients {
		wg.Go(func() {
			var seq []int
			for range n {
				status, _, _ := post(t, s, call{body: msg(strings.Replace(okFields, to, r, 1))})
				seq = append(seq, status)
			}
			mu.Lock()
			got[r] = seq
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

func TestSeedMakesFaultsDeterministicWhateverTheInterleaving(t *testing.T) {
	rates := map[string]float64{"WA500": 0.3, "E110": 0.1, "429": 0.1}
	recipients := []string{"+919800000001", "+919800000002", "+919800000003", "+919800000004"}
	run := func(seed int64) string {
		s := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}, Balance: -1, Seed: seed, Rates: rates})
		got := answers(t, s, recipients, 25)
		s.Close()
		return fmt.Sprint(got)
	}
	a, b, c := run(42), run(42), run(43)
	if a != b {
		t.Fatalf("same seed, different answers:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatalf("different seeds, same answers: %s", a)
	}
	for _, code := range []string{"500", "400", "429", "200"} {
		if !strings.Contains(a, code) {
			t.Errorf("no %s among %s", code, a)
		}
	}
}

func TestRatesAreFollowed(t *testing.T) {
	s := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}, Balance: -1, Seed: 1,
		Rates: map[string]float64{"WA500": 0.25}})
	recipients := make([]string, 20)
	for i := range recipients {
		recipients[i] = fmt.Sprintf("+9198000001%02d", i)
	}
	answers(t, s, recipients, 50)
	st := s.Stats()
	if share := float64(st.Answered["WA500"]) / float64(st.Received); share < 0.2 || share > 0.3 {
		t.Errorf("WA500 share %.3f of %d, want about 0.25", share, st.Received)
	}
	if st.Answered["ok"]+st.Answered["WA500"] != st.Received || st.Accepted != st.Answered["ok"] {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultAnswers(t *testing.T) {
	for _, tc := range []struct {
		answer string
		status int
		check  func(t *testing.T, h http.Header, body []byte)
	}{
		{"WA500", 500, exact("WA500")},
		{"E110", 400, exact("E110")},
		{"RBC001", 401, exact("RBC001")},
		{"WA401", 401, exact("WA401")},
		{"WA400", 400, exact("WA400")},
		{"WA-401-account", 401, exact("WA-401-account")},
		{"WA-401-version", 401, exact("WA-401-version")},
		{"WAV2101", 400, exact("WAV2101")},
		{"429", 429, retryAfter1},
		{"503", 503, retryAfter1},
		{"html502", 502, func(t *testing.T, h http.Header, body []byte) {
			if h.Get("Content-Type") != "text/html" || !bytes.Contains(body, []byte("<html>")) {
				t.Errorf("%v %s", h, body)
			}
		}},
		{"truncated", 500, notJSON},
		{"garbage200", 200, notJSON},
		{"empty500", 500, func(t *testing.T, _ http.Header, body []byte) {
			if len(body) != 0 {
				t.Errorf("body %q", body)
			}
		}},
		{"big", 500, func(t *testing.T, _ http.Header, body []byte) {
			if len(body) != 10<<20 {
				t.Errorf("body of %d bytes", len(body))
			}
		}},
		{"hang", 504, func(*testing.T, http.Header, []byte) {}},
		{"slowloris", 200, func(t *testing.T, _ http.Header, body []byte) {
			if !bytes.Contains(body, []byte(`"wamid.`)) || !json.Valid(body) {
				t.Errorf("body %q", body)
			}
		}},
	} {
		t.Run(tc.answer+" answers "+fmt.Sprint(tc.status), func(t *testing.T) {
			s := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}, Balance: -1, HangFor: 300 * time.Millisecond})
			if err := s.Script(to, tc.answer); err != nil {
				t.Fatal(err)
			}
			status, h, body := post(t, s, call{body: msg(okFields)})
			if status != tc.status {
				t.Fatalf("status %d, want %d (%.200s)", status, tc.status, body)
			}
			tc.check(t, h, body)
			if got := s.Stats().Answered[tc.answer]; got != 1 {
				t.Errorf("answered[%s] = %d", tc.answer, got)
			}
		})
	}
}

// A documented answer added to kaleyradocs must be one the sandbox can give, as documented.
func TestEveryDocumentedAnswerIsSentWithItsStatusAndBytes(t *testing.T) {
	for _, a := range kaleyradocs.Answers {
		t.Run(a.Name, func(t *testing.T) {
			if !slices.Contains(sandbox.Answers, a.Name) {
				t.Fatalf("%s is not among the sandbox's answers %v", a.Name, sandbox.Answers)
			}
			s := start(t, sandbox.Config{})
			if err := s.Script(to, a.Name); err != nil {
				t.Fatal(err)
			}
			status, h, body := post(t, s, call{body: msg(okFields)})
			if status != a.Status || string(body) != a.Body || h.Get("Content-Type") != "application/json" {
				t.Errorf("got %d %q %s, want %d application/json %s", status, h.Get("Content-Type"), body, a.Status, a.Body)
			}
		})
	}
}

// exact checks that the body is Kaleyra's documented body of name, byte for byte.
func exact(name string) func(*testing.T, http.Header, []byte) {
	return func(t *testing.T, _ http.Header, body []byte) {
		if string(body) != documented(t, name).Body {
			t.Errorf("body %s", body)
		}
	}
}

// documented is Kaleyra's documented answer called name.
func documented(t *testing.T, name string) kaleyradocs.Answer {
	t.Helper()
	a, ok := kaleyradocs.Lookup(name)
	if !ok {
		t.Fatalf("Kaleyra documents no answer %s", name)
	}
	return a
}

func retryAfter1(t *testing.T, h http.Header, body []byte) {
	if h.Get("Retry-After") != "1" || bytes.Contains(body, []byte(`"code"`)) {
		t.Errorf("headers %v body %s", h, body)
	}
}

func notJSON(t *testing.T, _ http.Header, body []byte) {
	if len(body) == 0 || json.Valid(body) {
		t.Errorf("body %q is not broken", body)
	}
}

func TestResetAnswerDropsTheConnection(t *testing.T) {
	s := start(t, sandbox.Config{})
	s.Script(to, "reset")
	req, _ := http.NewRequest(http.MethodPost, s.URL+messagesPath(sid, sender), strings.NewReader(msg(okFields)))
	req.Header.Set("api-key", apiKey)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := client(t).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d", resp.StatusCode)
	}
	if st := s.Stats(); st.Answered["reset"] != 1 || st.Accepted != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCloseEndsStalledAnswersPromptly(t *testing.T) {
	for _, answer := range []string{"hang", "slowloris"} {
		t.Run(answer, func(t *testing.T) {
			s := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}, Balance: -1, HangFor: time.Hour})
			s.Script(to, answer)
			errc := make(chan error, 1)
			c := client(t)
			go func() {
				req, _ := http.NewRequest(http.MethodPost, s.URL+messagesPath(sid, sender), strings.NewReader(msg(okFields)))
				req.Header.Set("api-key", apiKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				errc <- err
			}()
			testkit.Eventually(t, 5*time.Second, "the stalled answer to begin", func() bool { return s.Stats().Answered[answer] == 1 })
			begin := time.Now()
			s.Close()
			if d := time.Since(begin); d > 2*time.Second {
				t.Errorf("Close took %v", d)
			}
			if err := <-errc; err == nil {
				t.Error("the client got a whole answer from a closed server")
			}
		})
	}
}

func TestLatencyDelaysAnswersAndClientsMayLeave(t *testing.T) {
	s := start(t, sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}, Balance: -1,
		Latency: 40 * time.Millisecond, Jitter: 10 * time.Millisecond})
	begin := time.Now()
	if status, _, _ := post(t, s, call{body: msg(okFields)}); status != 200 {
		t.Fatal(status)
	}
	if d := time.Since(begin); d < 30*time.Millisecond {
		t.Errorf("answered after %v, want at least latency - jitter", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+messagesPath(sid, sender), strings.NewReader(msg(okFields)))
	req.Header.Set("api-key", apiKey)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := client(t).Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("answered before the latency")
	}
}

func TestConfigIsChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  sandbox.Config
	}{
		{"unknown answer in rates", sandbox.Config{Rates: map[string]float64{"WA999": 0.1}}},
		{"rate above 1", sandbox.Config{Rates: map[string]float64{"WA500": 1.5}}},
		{"rates adding up past 1", sandbox.Config{Rates: map[string]float64{"WA500": 0.6, "E110": 0.6}}},
		{"negative latency", sandbox.Config{Latency: -time.Second}},
		{"sender without digits", sandbox.Config{Senders: []string{"abc"}}},
		{"SID with a slash", sandbox.Config{SID: "a/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := sandbox.New(tc.cfg); err == nil {
				s.Close()
				t.Fatal("accepted")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	s, err := sandbox.Start(sandbox.Config{Balance: -1, MediaIDs: []string{"10xx91"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req, _ := http.NewRequest(http.MethodPost, s.URL+messagesPath(sandbox.DefaultSID, sandbox.DefaultSender), strings.NewReader(msg(okFields)))
	req.Header.Set("api-key", sandbox.DefaultAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestListenAndServeStopsWithTheContext(t *testing.T) {
	s, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0") }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAccept measures the sandbox's cost per accepted message over real HTTP.
func BenchmarkAccept(b *testing.B) {
	s, err := sandbox.Start(sandbox.Config{SID: sid, APIKey: apiKey, Senders: []string{sender}, Balance: -1, MediaIDs: []string{"10xx91"}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := s.URL + messagesPath(sid, sender)
	body := []byte(msg(okFields))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header["Api-Key"] = []string{apiKey}
			req.Header["Content-Type"] = []string{"application/json"}
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
