package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Status callbacks. With Config.CallbackURL set, every accepted message gets the callbacks
// Kaleyra would send once WhatsApp decides: "sent", then "delivered" and for some "read", or
// "failed" with a Meta error code, or "not-sent" alone; some come twice, some in the wrong order,
// each after a short random delay, and each is posted again until the receiver answers 200.
// A message's outcome, its duplicate and swap and its delays are drawn from the same hash as the
// answer to its send (Seed, the recipient, how many sends that recipient has had), so the same
// Seed and the same sends give the same delivered, read and failed counts on every run (only the
// posts' order and timing vary). The outcome is counted when the message is accepted
// (CallbackStats), so a test can compare the receiver's counts with it.

// Defaults of the callback knobs, used when CallbackURL is set and the knob is unset: a nil share,
// a zero delay, concurrency or retry count.
const (
	DefaultCallbackFail        = 0.2
	DefaultCallbackRead        = 0.5
	DefaultCallbackDup         = 0.1
	DefaultCallbackReorder     = 0.1
	DefaultCallbackMaxDelay    = 100 * time.Millisecond
	DefaultCallbackConcurrency = 16
	DefaultCallbackRetries     = 20
)

// DefaultCallbackCodes are the Meta codes failed messages get, drawn evenly: outside the 24-hour
// window, not on WhatsApp, per-user marketing cap, stopped marketing, media not downloadable.
var DefaultCallbackCodes = []string{"131047", "131026", "131049", "131050", "131053"}

// CallbackStats counts the outcomes of the accepted messages as the callbacks will tell them,
// and how posting them went.
type CallbackStats struct {
	Messages  int64            `json:"messages"`  // accepted messages that get callbacks
	Delivered int64            `json:"delivered"` // delivered (read ones included)
	Read      int64            `json:"read"`
	Failed    map[string]int64 `json:"failed"` // by Meta code
	NotSent   int64            `json:"not_sent"`
	Posted    int64            `json:"posted"`    // callbacks answered 200
	Retried   int64            `json:"retried"`   // posts answered otherwise (or not at all), posted again
	Abandoned int64            `json:"abandoned"` // callbacks given up after CallbackRetries posts
	Pending   int64            `json:"pending"`   // callbacks not yet answered 200 nor abandoned
}

// callback is one status post, and the delay before it.
type callback struct {
	id, to, status, code string
	delay                time.Duration
}

// callbacker posts the callbacks of accepted messages through a pool of posters.
type callbacker struct {
	cfg    Config
	shares shares
	client *http.Client
	done   <-chan struct{}
	ctx    context.Context // cancelled when done is closed: cuts a post short

	mu    sync.Mutex
	queue [][]callback // each message's callbacks, in the order they are posted
	wake  chan struct{}
	stats CallbackStats
	wg    sync.WaitGroup
}

func newCallbacker(cfg Config, done <-chan struct{}) *callbacker {
	c := &callbacker{cfg: cfg, shares: sharesOf(cfg), done: done, wake: make(chan struct{}, 1),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.CallbackConcurrency}}, stats: CallbackStats{Failed: map[string]int64{}}}
	ctx, cancel := context.WithCancel(context.Background())
	c.ctx = ctx
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		<-done
		cancel()
	}()
	for range cfg.CallbackConcurrency {
		c.wg.Add(1)
		go c.post()
	}
	return c
}

// shares are Config's callback shares, set (withDefaults gives every nil one its default).
type shares struct{ fail, notSent, read, dup, reorder float64 }

func sharesOf(cfg Config) shares {
	return shares{*cfg.CallbackFail, *cfg.CallbackNotSent, *cfg.CallbackRead, *cfg.CallbackDup, *cfg.CallbackReorder}
}

// callbackSalt sets the callbacks' draws apart from the answer's, which come from the same hash.
const callbackSalt = 0x63616c6c6261636b // "callback"

// plan draws the message's outcome, duplicate, swap and delays from draw (the hash its send's
// answer was chosen by) and queues its callbacks.
func (c *callbacker) plan(draw uint64, id, to string) {
	h := mix(draw ^ callbackSalt)
	u := func(i uint64) float64 { return unit(mix(h + i)) }
	sh := c.shares
	var seq []callback
	c.mu.Lock()
	c.stats.Messages++
	switch f := u(1); {
	case f < sh.fail:
		code := c.cfg.CallbackCodes[int(u(2)*float64(len(c.cfg.CallbackCodes)))%len(c.cfg.CallbackCodes)]
		seq = []callback{{id: id, to: to, status: "sent"}, {id: id, to: to, status: "failed", code: code}}
		c.stats.Failed[code]++
	case f < sh.fail+sh.notSent:
		seq = []callback{{id: id, to: to, status: "not-sent"}}
		c.stats.NotSent++
	default:
		seq = []callback{{id: id, to: to, status: "sent"}, {id: id, to: to, status: "delivered"}}
		c.stats.Delivered++
		if u(3) < sh.read {
			seq = append(seq, callback{id: id, to: to, status: "read"})
			c.stats.Read++
		}
	}
	if n := len(seq); n > 1 && u(4) < sh.reorder {
		seq[n-2], seq[n-1] = seq[n-1], seq[n-2]
	}
	if u(5) < sh.dup {
		seq = append(seq, seq[int(u(6)*float64(len(seq)))%len(seq)])
	}
	for i := range seq {
		seq[i].delay = time.Duration(u(16+uint64(i)) * float64(c.cfg.CallbackMaxDelay))
	}
	c.stats.Pending += int64(len(seq))
	c.queue = append(c.queue, seq)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// post is one poster: it takes a message's callbacks and posts them in order, each after a
// random delay.
func (c *callbacker) post() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		var seq []callback
		if len(c.queue) > 0 {
			seq, c.queue[0] = c.queue[0], nil
			c.queue = c.queue[1:]
		}
		more := len(c.queue) > 0
		c.mu.Unlock()
		if more {
			select { // pass the wake-up on to another poster
			case c.wake <- struct{}{}:
			default:
			}
		}
		if seq == nil {
			select {
			case <-c.wake:
				continue
			case <-c.done:
				return
			}
		}
		for _, cb := range seq {
			if !c.sleep(cb.delay) {
				return
			}
			c.deliver(cb)
		}
	}
}

// wait returns once every poster has stopped (after done is closed), with no idle connection left.
func (c *callbacker) wait() {
	c.wg.Wait()
	c.client.CloseIdleConnections()
}

func (c *callbacker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

// deliver posts cb until the receiver answers 200, backing off between tries.
func (c *callbacker) deliver(cb callback) {
	body := callbackBody(cb)
	for attempt := 0; ; attempt++ {
		if c.send(body) {
			c.count(func(s *CallbackStats) { s.Posted++; s.Pending-- })
			return
		}
		if attempt+1 >= c.cfg.CallbackRetries {
			c.count(func(s *CallbackStats) { s.Abandoned++; s.Pending-- })
			return
		}
		c.count(func(s *CallbackStats) { s.Retried++ })
		if !c.sleep(min(50*time.Millisecond<<min(attempt, 5), 2*time.Second)) {
			return
		}
	}
}

func (c *callbacker) send(body []byte) bool {
	req, err := http.NewRequestWithContext(c.ctx, http.MethodPost, c.cfg.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	if c.cfg.CallbackToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.CallbackToken)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (c *callbacker) count(f func(*CallbackStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

func (c *callbacker) snapshot() CallbackStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Failed = make(map[string]int64, len(c.stats.Failed))
	for k, v := range c.stats.Failed {
		s.Failed[k] = v
	}
	return s
}

// CallbackBody is the documented body of a status callback (API v2) as the sandbox posts it:
// message msgID to recipient to (E.164) has status ("sent", "delivered", "read", "failed",
// "not-sent"), with Meta error code for a failed one. The benchmark posts it too.
func CallbackBody(msgID, to, status, code string) []byte {
	return callbackBody(callback{id: msgID, to: to, status: status, code: code})
}

// callbackBody is the documented body of a status callback (API v2).
func callbackBody(cb callback) []byte {
	now := strconv.FormatInt(time.Now().Unix(), 10)
	errs := ""
	if cb.code != "" {
		errs = `,"errors":[{"code":` + cb.code + `,"title":"sandbox","message":"sandbox failure ` + cb.code + `","error_data":{"details":"drawn by the sandbox"}}]`
	}
	rid := cb.to
	if len(rid) > 0 && rid[0] == '+' {
		rid = rid[1:]
	}
	return fmt.Appendf(nil, `{"meta_object":{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"","phone_number_id":"sandbox"},"statuses":[{"id":%q,"status":%q,"timestamp":%q,"recipient_id":%q%s}]}},"extra_info":{"message_id":%q},"status":%q,"message_id":%q}`,
		cb.id, cb.status, now, rid, errs, cb.id, cb.status, cb.id)
}
