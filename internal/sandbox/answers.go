package sandbox

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
)

// The answer names usable in Config.Rates, in scripts and as keys of Stats.Answered. Each is
// what the sandbox sends back for one call.
const (
	// AnswerOK accepts the message: 200 with contacts and a wamid message id; costs 1 of Balance.
	AnswerOK = "ok"
	// AnswerInternal is 500 WA500, Kaleyra's internal error (transient).
	AnswerInternal = "WA500"
	// AnswerLowBalance is 400 E110; also every answer once Balance reaches 0.
	AnswerLowBalance = "E110"
	// AnswerBadPayload is 400 WA400; also every payload that fails validation.
	AnswerBadPayload = "WA400"
	// AnswerAuth is 401 RBC001; also every wrong SID or api-key.
	AnswerAuth = "RBC001"
	// AnswerSender is 401 WA401; also every sender number that is not on the account.
	AnswerSender = "WA401"
	// AnswerAccount is 401 WA-401, "API is not available for given customer".
	AnswerAccount = "WA-401-account"
	// AnswerVersion is 401 WA-401, the sender belongs to another version of the WhatsApp API.
	AnswerVersion = "WA-401-version"
	// AnswerDailyLimit is 400 WAV2101, the account's daily limit is reached.
	AnswerDailyLimit = "WAV2101"
	// AnswerTooMany is 429 with Retry-After: 1.
	AnswerTooMany = "429"
	// AnswerUnavailable is 503 with Retry-After: 1 and a plain-text body without a code.
	AnswerUnavailable = "503"
	// AnswerHTML502 is a 502 text/html page, as a proxy in front of Kaleyra sends.
	AnswerHTML502 = "html502"
	// AnswerHang stalls for Config.HangFor (or until the client or the server goes away), then
	// answers 504 as a proxy would: it outlasts any sensible client timeout.
	AnswerHang = "hang"
	// AnswerReset closes the connection without answering (a TCP reset where possible).
	AnswerReset = "reset"
	// AnswerTruncated is 500 with a JSON body cut in the middle.
	AnswerTruncated = "truncated"
	// AnswerGarbage200 is 200 with a body that is not JSON: no message id, so not accepted.
	AnswerGarbage200 = "garbage200"
	// AnswerBig is 500 with a 10 MB body.
	AnswerBig = "big"
	// AnswerSlowloris sends 200 headers at once, then the accepted body one byte per 100ms for
	// about Config.HangFor (faster when HangFor is too short for that). It accepts the message (and costs 1 of Balance) like ok.
	AnswerSlowloris = "slowloris"
	// AnswerEmpty500 is 500 with an empty body.
	AnswerEmpty500 = "empty500"
	// AnswerUnknownMedia is 400 WA400 with error.media: a send whose media id this account never
	// uploaded from that sender (or uploaded more than 30 days ago). The real API accepts such a
	// send and reports the failure later in a status callback; the sandbox has no callbacks, so
	// it answers at once, in the shape of Kaleyra's payload error. Every well-formed send with
	// such an id gets it where it would have been accepted.
	AnswerUnknownMedia = "media-unknown"
	// AnswerNoID200 is 200 with a JSON body that names no id: an upload without a media id, a
	// send without a message id.
	AnswerNoID200 = "noid200"
	// AnswerBig200 is 200 with a 10 MB body that starts like an id answer and never ends within
	// any sane read cap.
	AnswerBig200 = "big200"
)

// Answers lists every answer name, in the order the help text shows them.
var Answers = []string{AnswerOK, AnswerInternal, AnswerLowBalance, AnswerBadPayload, AnswerAuth,
	AnswerSender, AnswerAccount, AnswerVersion, AnswerDailyLimit, AnswerTooMany, AnswerUnavailable,
	AnswerHTML502, AnswerHang, AnswerReset, AnswerTruncated, AnswerGarbage200, AnswerBig,
	AnswerSlowloris, AnswerEmpty500, AnswerUnknownMedia, AnswerNoID200, AnswerBig200}

// AnswerHelp describes each answer name in one line, for `wabulk sandbox --help`.
var AnswerHelp = map[string]string{
	AnswerOK:           "200, message accepted with a wamid id (costs 1 of the balance)",
	AnswerInternal:     "500 WA500 internal error (transient)",
	AnswerLowBalance:   "400 E110 low balance",
	AnswerBadPayload:   "400 WA400 incorrect payload",
	AnswerAuth:         "401 RBC001 incorrect SID or API key",
	AnswerSender:       "401 WA401 sender number not on the account",
	AnswerAccount:      "401 WA-401 API not available for the account",
	AnswerVersion:      "401 WA-401 sender uses another WhatsApp API version",
	AnswerDailyLimit:   "400 WAV2101 daily limit of the account reached",
	AnswerTooMany:      "429 with Retry-After: 1",
	AnswerUnavailable:  "503 with Retry-After: 1, no code",
	AnswerHTML502:      "502 text/html page from a proxy",
	AnswerHang:         "no answer for --hang-for, then 504 (outlasts the client timeout)",
	AnswerReset:        "connection closed without an answer",
	AnswerTruncated:    "500 with a cut JSON body",
	AnswerGarbage200:   "200 with a non-JSON body (no message id)",
	AnswerBig:          "500 with a 10 MB body",
	AnswerSlowloris:    "200 headers, then the body one byte per 100ms for about --hang-for",
	AnswerEmpty500:     "500 with an empty body",
	AnswerUnknownMedia: "400 WA400 error.media: media id not uploaded by this account for that sender (the real API fails it later, by callback)",
	AnswerNoID200:      "200 with JSON that names no id (upload: no media id; send: no message id)",
	AnswerBig200:       "200 with a 10 MB body",
}

// answer is how one name is sent: a fixed status, headers and body, or a special behaviour.
type answer struct {
	status     int
	ctype      []string
	body       []byte
	retryAfter bool
}

// Header values are shared slices: net/http only reads them, and sharing spares an allocation
// per answer on the hot path.
var (
	ctJSON  = []string{"application/json"}
	ctHTML  = []string{"text/html"}
	ctText  = []string{"text/plain; charset=utf-8"}
	oneSec  = []string{"1"}
	noCache = []string{"no-cache"}
)

// Pages a proxy in front of Kaleyra sends, as nginx writes them.
const (
	bodyHTML502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	bodyHTML504 = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

// fixed holds every answer that is a plain status + body.
var fixed = map[string]answer{
	AnswerAuth:        documented(AnswerAuth),
	AnswerSender:      documented(AnswerSender),
	AnswerBadPayload:  documented(AnswerBadPayload),
	AnswerInternal:    documented(AnswerInternal),
	AnswerLowBalance:  documented(AnswerLowBalance),
	AnswerAccount:     documented(AnswerAccount),
	AnswerVersion:     documented(AnswerVersion),
	AnswerDailyLimit:  documented(AnswerDailyLimit),
	AnswerTooMany:     {status: 429, ctype: ctJSON, body: []byte(`{"message":"API rate limit exceeded"}`), retryAfter: true},
	AnswerUnavailable: {status: 503, ctype: ctText, body: []byte("Service Unavailable\n"), retryAfter: true},
	AnswerHTML502:     {status: 502, ctype: ctHTML, body: []byte(bodyHTML502)},
	AnswerTruncated:   {status: 500, ctype: ctJSON, body: truncated(documented(AnswerInternal).body)},
	AnswerGarbage200:  {status: 200, ctype: ctJSON, body: []byte("\x00\xffOK<<not json>>\x1b[0m")},
	AnswerEmpty500:    {status: 500, ctype: ctJSON},
	AnswerNoID200:     {status: 200, ctype: ctJSON, body: []byte(`{"messaging_product":"whatsapp","status":"uploaded"}`)},
	// Not a documented body: Kaleyra documents no synchronous answer for this (see AnswerUnknownMedia).
	AnswerUnknownMedia: {status: 400, ctype: ctJSON, body: []byte(`{"code":"WA400","message":"Refer to correct payload format","data":{},` +
		`"error":{"media":"Media id is not valid for this business number"}}`)},
}

// documented is the answer Kaleyra documents under name, with the status and the exact body of
// kaleyradocs.
func documented(name string) answer {
	a, ok := kaleyradocs.Lookup(name)
	if !ok {
		panic("sandbox: Kaleyra documents no answer " + name)
	}
	return answer{status: a.Status, ctype: ctJSON, body: []byte(a.Body)}
}

// truncated is the first half of body: JSON cut in the middle.
func truncated(body []byte) []byte { return body[:len(body)/2] }

// knownAnswer reports whether name is one of Answers.
func knownAnswer(name string) bool {
	if _, ok := fixed[name]; ok {
		return true
	}
	switch name {
	case AnswerOK, AnswerHang, AnswerReset, AnswerBig, AnswerBig200, AnswerSlowloris:
		return true
	}
	return false
}

// writeFixed sends a plain answer.
func writeFixed(w http.ResponseWriter, a answer) {
	h := w.Header()
	h["Content-Type"] = a.ctype
	h["Cache-Control"] = noCache
	if a.retryAfter {
		h["Retry-After"] = oneSec
	}
	// No Content-Length: net/http adds it for a body written at once, without an allocation here.
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// bigChunk is written again and again to make the 10 MB answer without holding 10 MB.
var bigChunk = func() []byte {
	b := make([]byte, 32<<10)
	for i := range b {
		b[i] = 'x'
	}
	return b
}()

const bigSize = 10 << 20

// writeBig sends a 500 whose 10 MB body starts like WA500's JSON (or, for big200, a 200 whose
// body starts like an id answer) but never closes within any sane read cap, so a client can
// only classify it by status.
func writeBig(w http.ResponseWriter, r *http.Request, name string) {
	head, status := []byte(`{"code":"WA500","message":"`), 500
	if name == AnswerBig200 {
		head, status = []byte(`{"id":"`), 200
	}
	tail := []byte(`"}`)
	h := w.Header()
	h["Content-Type"] = ctJSON
	h["Content-Length"] = []string{strconv.Itoa(bigSize)}
	w.WriteHeader(status)
	if _, err := w.Write(head); err != nil {
		return
	}
	left := bigSize - len(head) - len(tail)
	for left > 0 && r.Context().Err() == nil {
		n := min(left, len(bigChunk))
		if _, err := w.Write(bigChunk[:n]); err != nil {
			return
		}
		left -= n
	}
	w.Write(tail)
}

// writeReset drops the connection without a word. SetLinger(0) turns the close into a TCP RST,
// the "connection reset by peer" that clients see from a crashing load balancer.
func writeReset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		// HTTP/2 or a recorder: the closest we can do is abort the handler.
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// writeHang stalls until hangFor passes, the client leaves or the server closes, then answers
// 504 if anyone is still there.
func writeHang(w http.ResponseWriter, r *http.Request, hangFor time.Duration, done <-chan struct{}) {
	t := time.NewTimer(hangFor)
	defer t.Stop()
	select {
	case <-t.C:
		writeFixed(w, answer{status: 504, ctype: ctHTML, body: []byte(bodyHTML504)})
	case <-r.Context().Done():
		panic(http.ErrAbortHandler)
	case <-done:
		panic(http.ErrAbortHandler)
	}
}

// A handler that returns without writing makes net/http send an empty 200, which would turn an
// interrupted stall into a success. Stalls cut short therefore panic with http.ErrAbortHandler:
// net/http drops the connection without an answer and without logging.

// slowTick is the pace of the slowloris answer.
const slowTick = 100 * time.Millisecond

// writeSlow sends 200 headers, then body one byte per slowTick, padded in front with JSON
// whitespace so the whole trickle lasts about hangFor. A hangFor too short for the body at that
// pace (tests) speeds the pace up instead, so the trickle still ends after about hangFor.
func writeSlow(w http.ResponseWriter, r *http.Request, body []byte, hangFor time.Duration, done <-chan struct{}) {
	pad := max(int(hangFor/slowTick)-len(body), 0)
	tickEvery := min(slowTick, max(hangFor/time.Duration(pad+len(body)), time.Millisecond))
	h := w.Header()
	h["Content-Type"] = ctJSON
	h["Content-Length"] = []string{strconv.Itoa(pad + len(body))}
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	one := []byte{' '}
	for i := 0; i < pad+len(body); i++ {
		select {
		case <-tick.C:
		case <-r.Context().Done():
			panic(http.ErrAbortHandler)
		case <-done:
			panic(http.ErrAbortHandler)
		}
		if i >= pad {
			one[0] = body[i-pad]
		}
		if _, err := w.Write(one); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}
