// Package sandbox is a fake Kaleyra: an http.Handler that implements the Send Media Messages
// endpoint (POST /v2/{sid}/whatsapp/{from}/messages) and the Upload Media Files endpoint (POST
// /v2/{sid}/whatsapp/{from}/media) with the checks the real API makes and its documented error
// answers, plus fault injection for everything else that goes wrong in practice:
// error rates per code, latency with jitter, hangs, resets, HTML pages from proxies, truncated,
// empty, huge and trickling bodies, and a balance that runs out into E110.
//
// Tests start it in-process with Start; `wabulk sandbox` serves it for laptops and compose. It
// counts what it received and answered (Stats, Calls, GET /_sandbox/stats) so tests and the
// demo can check outcomes, such as a recipient accepted twice. A send by media id is accepted only
// for an id the account uploaded from that sender (or one of Config.MediaIDs); any other id is
// answered 400 WA400 at once (AnswerUnknownMedia), where the real API accepts the send and
// reports the failure in a status callback. With Config.CallbackURL it posts status callbacks
// for accepted messages as Kaleyra does (callbacks.go). Fault choice is a pure function of
// Seed, the recipient and how many sends that recipient has had, so a run is deterministic even
// when calls arrive concurrently in a different order.
package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wabulk/wabulk/internal/defaults"
)

// Config sets up a Server. The zero value is usable except for Balance (see there).
type Config struct {
	// SID is the account SID the path must name. Default "sandbox-sid".
	SID string
	// APIKey is the key the api-key header must carry. Default "sandbox-key".
	APIKey string
	// Senders are the business numbers on the account; only their digits count, so
	// "+91 90000 00001" and "919000000001" are the same sender. Default ["919000000001"].
	Senders []string
	// Seed makes fault choice and jitter deterministic: the same Seed and the same sends to a
	// recipient give the same answers, whatever the interleaving with other recipients. Default 0.
	Seed int64
	// Latency delays every answer to a well-formed send. Default 0.
	Latency time.Duration
	// Jitter spreads each delay uniformly over Latency ± Jitter (never below 0). Default 0.
	Jitter time.Duration
	// Rates maps answer names (see Answers) to the probability a send gets that answer, e.g.
	// {"WA500": 0.05, "E110": 0.01}; their sum must not exceed 1 and the rest is "ok".
	// Default none: every well-formed send is accepted.
	Rates map[string]float64
	// Balance is how many messages the account can pay for: each accepted message costs 1, and
	// at 0 every send answers 400 E110 until SetBalance tops it up. Negative means unlimited.
	// Default 0, an empty account, as the flag says; set -1 for unlimited.
	Balance int64
	// HangFor is how long a "hang" answer stalls before answering 504, and about how long a
	// "slowloris" answer trickles. Both end early when the client leaves or the server closes.
	// Default 1 minute.
	HangFor time.Duration
	// MediaIDs are media ids the account holds already (uploaded before this sandbox started):
	// every sender may send them, besides the ids the media endpoint issues. Default none.
	MediaIDs []string
	// Prepaid makes the account a prepaid one: the Upload Media Files API is for postpaid
	// accounts only, so every upload answers 401 WA-401 ("API is not available for given
	// customer", the documented body closest to the undocumented one). Default false.
	Prepaid bool

	// CallbackURL, when set, makes the sandbox post status callbacks there for every accepted
	// message, as Kaleyra does (see callbacks.go). Default unset: no callbacks.
	CallbackURL string
	// CallbackToken is sent as "Authorization: Bearer <token>" with each callback. Default unset.
	CallbackToken string
	// CallbackFail is the share of accepted messages that fail (a Meta code from CallbackCodes);
	// CallbackNotSent the share Kaleyra never passes on; the rest are delivered, and of those
	// CallbackRead are read. Each share is between 0 and 1, and 0 means none: nil is what stands
	// for the default. Defaults 0.2, 0, 0.5 (e.g. CallbackFail: new(0.0) for no failures).
	CallbackFail, CallbackNotSent, CallbackRead *float64
	// CallbackDup is the share of messages with one callback posted twice, CallbackReorder the
	// share whose last two callbacks are swapped. Defaults 0.1 each (nil); 0 means none.
	CallbackDup, CallbackReorder *float64
	// CallbackCodes are the Meta codes of failed messages, drawn evenly. Default DefaultCallbackCodes.
	CallbackCodes []string
	// CallbackMaxDelay bounds the random delay before each callback. Default 100ms.
	CallbackMaxDelay time.Duration
	// CallbackConcurrency is how many callbacks are posted at once. Default 16.
	CallbackConcurrency int
	// CallbackRetries is how many times one callback is posted before it is given up. Default 20.
	CallbackRetries int
}

// Defaults of Config.
const (
	DefaultSID     = "sandbox-sid"
	DefaultAPIKey  = "sandbox-key"
	DefaultSender  = "919000000001"
	DefaultHangFor = time.Minute
)

// MaxBodyBytes is the largest request body the sandbox reads; a larger one is a WA400.
const MaxBodyBytes = 1 << 20

func (c Config) withDefaults() Config {
	defaults.Set(&c.SID, DefaultSID)
	defaults.Set(&c.APIKey, DefaultAPIKey)
	if len(c.Senders) == 0 {
		c.Senders = []string{DefaultSender}
	}
	defaults.Set(&c.HangFor, DefaultHangFor)
	// A share set stays as it is, 0 included; only an unset one takes its default.
	def := func(v **float64, d float64) {
		if *v == nil {
			*v = &d
		}
	}
	def(&c.CallbackFail, DefaultCallbackFail)
	def(&c.CallbackRead, DefaultCallbackRead)
	def(&c.CallbackDup, DefaultCallbackDup)
	def(&c.CallbackReorder, DefaultCallbackReorder)
	def(&c.CallbackNotSent, 0)
	if len(c.CallbackCodes) == 0 {
		c.CallbackCodes = DefaultCallbackCodes
	}
	defaults.Set(&c.CallbackMaxDelay, DefaultCallbackMaxDelay)
	defaults.Set(&c.CallbackConcurrency, DefaultCallbackConcurrency)
	defaults.Set(&c.CallbackRetries, DefaultCallbackRetries)
	return c
}

func (c Config) validate() error {
	if strings.ContainsAny(c.SID, "/?#% \t\r\n") {
		return fmt.Errorf("sandbox: SID %q must not contain '/', '?', '#', '%%' or spaces", c.SID)
	}
	for _, s := range c.Senders {
		if digits(s) == "" {
			return fmt.Errorf("sandbox: sender %q has no digits", s)
		}
	}
	if c.Latency < 0 || c.Jitter < 0 {
		return errors.New("sandbox: latency and jitter must be >= 0")
	}
	sum := 0.0
	for name, p := range c.Rates {
		if !knownAnswer(name) {
			return fmt.Errorf("sandbox: unknown answer %q in rates (known: %s)", name, strings.Join(Answers, ", "))
		}
		if math.IsNaN(p) || p < 0 || p > 1 {
			return fmt.Errorf("sandbox: rate of %s must be between 0 and 1, got %v", name, p)
		}
		sum += p
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("sandbox: rates add up to %v, more than 1", sum)
	}
	if c.CallbackURL != "" && !httpURL(c.CallbackURL) {
		return fmt.Errorf("sandbox: callback URL %q is not an absolute http(s) URL", c.CallbackURL)
	}
	for name, p := range map[string]float64{"fail": *c.CallbackFail, "not-sent": *c.CallbackNotSent, "read": *c.CallbackRead,
		"dup": *c.CallbackDup, "reorder": *c.CallbackReorder} {
		if math.IsNaN(p) || p < 0 || p > 1 {
			return fmt.Errorf("sandbox: callback %s share must be between 0 and 1, got %v", name, p)
		}
	}
	if *c.CallbackFail+*c.CallbackNotSent > 1+1e-9 {
		return errors.New("sandbox: callback fail and not-sent shares add up to more than 1")
	}
	for _, code := range c.CallbackCodes {
		if code == "" || len(code) > 12 || strings.ContainsFunc(code, func(r rune) bool { return r < '0' || r > '9' }) {
			return fmt.Errorf("sandbox: callback code %q is not a numeric Meta code", code)
		}
	}
	return nil
}

// Server is a running (or ready to run) fake Kaleyra. It is safe for concurrent use.
type Server struct {
	// URL is http://host:port once Start or Listen has bound: the KALEYRA_BASE_URL to use.
	URL string

	cfg      Config
	key      []byte
	mediaKey []byte              // the MAC key of media ids: the account's SID and API key
	mediaIDs map[string]struct{} // Config.MediaIDs
	senders  map[string]string   // digits → the same string, so Calls share one copy per sender
	rates    []rateStep
	seed     uint64
	idBase   [8]byte
	idSeq    atomic.Uint64
	mux      *http.ServeMux

	mu         sync.Mutex
	balance    int64
	seen       map[string]uint64 // sends per recipient: the fault draw's sequence number
	scripts    map[string][]string
	received   int64
	answered   map[string]int64
	accepted   int64
	acceptedTo map[string]int64
	calls      []Call

	uploadScript []string
	uploads      []Upload
	uploaded     int64

	// done is closed by Close: every stalled answer (latency, hang, slowloris) watches it.
	done      chan struct{}
	closeOnce sync.Once
	flightMu  sync.Mutex
	closed    bool
	inflight  sync.WaitGroup

	srv       *http.Server
	serveDone chan struct{}
	serveErr  error

	callbacks *callbacker // nil without Config.CallbackURL
}

// rateStep is one answer of the cumulative distribution built from Config.Rates.
type rateStep struct {
	name string
	upTo float64
}

// New checks cfg and returns a Server that is an http.Handler but not yet listening; use
// Start or Listen to serve it, or mount it on your own server.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		key:        []byte(cfg.APIKey),
		senders:    make(map[string]string, len(cfg.Senders)),
		seed:       uint64(cfg.Seed),
		balance:    cfg.Balance,
		seen:       map[string]uint64{},
		scripts:    map[string][]string{},
		answered:   map[string]int64{},
		acceptedTo: map[string]int64{},
		mediaIDs:   make(map[string]struct{}, len(cfg.MediaIDs)),
		done:       make(chan struct{}),
	}
	mk := sha256.Sum256([]byte("wabulk-sandbox-media\x00" + cfg.SID + "\x00" + cfg.APIKey))
	s.mediaKey = mk[:]
	for _, id := range cfg.MediaIDs {
		s.mediaIDs[id] = struct{}{}
	}
	for _, snd := range cfg.Senders {
		d := digits(snd)
		s.senders[d] = d
	}
	// Sorted so the same Rates give the same distribution (map order is random).
	names := make([]string, 0, len(cfg.Rates))
	for name, p := range cfg.Rates {
		if p > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	cum := 0.0
	for _, name := range names {
		cum += cfg.Rates[name]
		s.rates = append(s.rates, rateStep{name: name, upTo: cum})
	}
	// Message ids are unique across servers and runs, unlike the fault choice.
	rand.Read(s.idBase[:])
	if cfg.CallbackURL != "" {
		s.callbacks = newCallbacker(cfg, s.done)
	}

	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v2/{sid}/whatsapp/{from}/messages", s.send)
	s.mux.HandleFunc("POST /v2/{sid}/whatsapp/{from}/media", s.upload)
	s.mux.HandleFunc("POST /_sandbox/script", s.handleScript)
	s.mux.HandleFunc("POST /_sandbox/balance", s.handleBalance)
	s.mux.HandleFunc("POST /_sandbox/reset", s.handleReset)
	s.mux.HandleFunc("GET /_sandbox/stats", s.handleStats)
	s.mux.HandleFunc("GET /_sandbox/calls", s.handleCalls)
	s.mux.HandleFunc("GET /_sandbox/uploads", s.handleUploads)
	return s, nil
}

// Start returns a Server listening on 127.0.0.1 at a free port; URL says where. Close it.
func Start(cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

// Listen binds addr, sets URL and serves in the background until Close.
func (s *Server) Listen(addr string) error {
	if s.srv != nil {
		return errors.New("sandbox: already listening")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sandbox: listen %s: %w", addr, err)
	}
	s.URL = "http://" + publicAddr(ln.Addr())
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		// Broken clients are part of the job; their errors are not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	s.serveDone = make(chan struct{})
	go func() {
		defer close(s.serveDone)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
		}
	}()
	return nil
}

// ListenAndServe serves on addr until ctx is cancelled, then closes the server and returns nil;
// it returns an error if it cannot listen or the server fails.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if err := s.Listen(addr); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.serveDone:
	}
	s.Close()
	return s.serveErr
}

// publicAddr turns a wildcard listen address into one a client on this machine can dial.
func publicAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Close stops listening, cuts every stalled answer short (hang, slowloris, latency), closes
// open connections and returns once every handler has returned. It is safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.flightMu.Lock()
		s.closed = true
		s.flightMu.Unlock()
		close(s.done)
		if s.srv != nil {
			s.srv.Close()
			<-s.serveDone
		}
		s.inflight.Wait()
		if s.callbacks != nil {
			s.callbacks.wait()
		}
	})
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Add under the same lock Close takes, so no handler starts after Close began to wait.
	s.flightMu.Lock()
	if s.closed {
		s.flightMu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.inflight.Add(1)
	s.flightMu.Unlock()
	defer s.inflight.Done()
	s.mux.ServeHTTP(w, r)
}

// Script makes the next sends to recipient to get answers in this order, after any answers
// still scripted for it; then the configured Rates apply again. to is any form of the number.
func (s *Server) Script(to string, answers ...string) error {
	key, ok := scriptKey(to)
	if !ok {
		return fmt.Errorf("sandbox: script recipient %q is not an E.164 number", to)
	}
	if err := checkAnswers(answers); err != nil {
		return err
	}
	s.mu.Lock()
	s.scripts[key] = append(s.scripts[key], answers...)
	s.mu.Unlock()
	return nil
}

func checkAnswers(answers []string) error {
	for _, a := range answers {
		if !knownAnswer(a) {
			return fmt.Errorf("sandbox: unknown answer %q (known: %s)", a, strings.Join(Answers, ", "))
		}
	}
	return nil
}

// SetBalance sets the account's balance (a top-up, or negative for unlimited).
func (s *Server) SetBalance(n int64) {
	s.mu.Lock()
	s.balance = n
	s.mu.Unlock()
}

// Balance returns the account's balance; negative means unlimited.
func (s *Server) Balance() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.balance
}

// Reset clears the counters, the call and upload logs, pending scripts and each recipient's
// sequence number (so fault choice starts over as for a fresh server). The balance stays, and
// so do the media ids issued: the account keeps its media.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received, s.accepted = 0, 0
	s.answered = map[string]int64{}
	s.acceptedTo = map[string]int64{}
	s.seen = map[string]uint64{}
	s.scripts = map[string][]string{}
	s.calls = nil
	s.uploadScript, s.uploads, s.uploaded = nil, nil, 0
}

// Stats counts what the sandbox received and how it answered.
type Stats struct {
	// Received counts every call to the messages endpoint, malformed ones included.
	Received int64 `json:"received"`
	// Answered counts calls by answer name (see Answers): "ok", "WA400", "hang", …
	Answered map[string]int64 `json:"answered"`
	// Accepted counts answers that accepted a message with an id ("ok" and "slowloris").
	Accepted int64 `json:"accepted"`
	// AcceptedTo counts accepted messages per recipient ("+digits"); above 1 is a duplicate send.
	AcceptedTo map[string]int64 `json:"accepted_to"`
	// Balance is what is left; negative means unlimited.
	Balance int64 `json:"balance"`
	// Uploaded counts accepted uploads: media ids issued.
	Uploaded int64 `json:"uploaded"`
	// Callbacks are the status callbacks planned and posted; nil without Config.CallbackURL.
	Callbacks *CallbackStats `json:"callbacks,omitempty"`
}

// Duplicates returns the recipients accepted more than once, sorted.
func (st Stats) Duplicates() []string {
	var d []string
	for to, n := range st.AcceptedTo {
		if n > 1 {
			d = append(d, to)
		}
	}
	sort.Strings(d)
	return d
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Received: s.received, Accepted: s.accepted, Balance: s.balance, Uploaded: s.uploaded,
		Answered: make(map[string]int64, len(s.answered)), AcceptedTo: make(map[string]int64, len(s.acceptedTo))}
	for k, v := range s.answered {
		st.Answered[k] = v
	}
	for k, v := range s.acceptedTo {
		st.AcceptedTo[k] = v
	}
	if s.callbacks != nil {
		cs := s.callbacks.snapshot()
		st.Callbacks = &cs
	}
	return st
}

// Call is one call to the messages endpoint.
type Call struct {
	// Time is when the call arrived.
	Time time.Time `json:"time"`
	// From is the sender of the path (digits), To the recipient ("+digits"); empty when the
	// call was rejected before they could be read.
	From string `json:"from"`
	To   string `json:"to"`
	// Answer is the answer's name (see Answers).
	Answer string `json:"answer"`
	// Type is the message's media type, MediaID its media id and Link whether it named a link
	// instead; empty when the call was rejected before its payload was read.
	Type    string `json:"type,omitempty"`
	MediaID string `json:"media_id,omitempty"`
	Link    bool   `json:"link,omitempty"`
}

// Calls returns every call so far, in the order their answers were chosen (arrival order up to
// concurrent calls racing for the lock), for rate-window checks.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// record counts a call answered before it reached the fault choice (auth, validation).
func (s *Server) record(at time.Time, from, to, name string) {
	s.mu.Lock()
	s.received++
	s.answered[name]++
	s.calls = append(s.calls, Call{Time: at, From: from, To: to, Answer: name})
	s.mu.Unlock()
}

// choose picks the answer for a well-formed send and counts it, all under one lock so the
// sequence number, the script, the balance and the counters agree. A send that would be
// accepted but names a media id the sender may not send gets AnswerUnknownMedia instead (E110
// first when the balance is empty), and costs nothing.
func (s *Server) choose(at time.Time, from string, m sendInfo, mediaOK bool) (name string, draw uint64) {
	to := m.to
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.seen[to]
	s.seen[to] = n + 1
	draw = mix(s.seed ^ hashString(to) ^ mix(n+1))
	if q := s.scripts[to]; len(q) > 0 {
		name = q[0]
		if len(q) == 1 {
			delete(s.scripts, to)
		} else {
			s.scripts[to] = q[1:]
		}
	} else {
		name = AnswerOK
		u := unit(draw)
		for _, r := range s.rates {
			if u < r.upTo {
				name = r.name
				break
			}
		}
	}
	if name == AnswerOK || name == AnswerSlowloris {
		// The balance is checked when the send arrives; the media only when WhatsApp fetches it.
		switch {
		case s.balance == 0:
			name = AnswerLowBalance
		case !mediaOK:
			name = AnswerUnknownMedia
		default:
			if s.balance > 0 {
				s.balance--
			}
			s.accepted++
			s.acceptedTo[to]++
		}
	}
	s.received++
	s.answered[name]++
	s.calls = append(s.calls, Call{Time: at, From: from, To: to, Answer: name, Type: m.typ, MediaID: m.id, Link: m.link})
	return name, draw
}

// mix is splitmix64's finaliser: a cheap, well-spread hash step.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashString is FNV-1a.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// unit maps a hash to [0, 1).
func unit(x uint64) float64 { return float64(x>>11) / (1 << 53) }

func digits(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
