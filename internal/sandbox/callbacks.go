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
// The outcome of a message is a pure function of Seed and its message id, and is counted when
// the message is accepted (CallbackStats), so a test can compare the receiver's counts with it.

// Defaults of the callback knobs, used when CallbackURL is set and the knob is zero.
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

// callback is one status post.
type callback struct {
	id, to, status, code string
}

// callbacker posts the callbacks of accepted messages through a pool of posters.
type callbacker struct {
	cfg    Config
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
	c := &callbacker{cfg: cfg, done: done, wake: make(chan struct{}, 1),
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

// plan draws the message's outcome and queues its callbacks.
func (c *callbacker) plan(seed uint64, id, to string) {
	h := mix(seed ^ hashString(id))
	u := func(i uint64) float64 { return unit(mix(h + i)) }
	var seq []callback
	c.mu.Lock()
	c.stats.Messages++
	switch f := u(1); {
	case f < c.cfg.CallbackFail:
		code := c.cfg.CallbackCodes[int(u(2)*float64(len(c.cfg.CallbackCodes)))%len(c.cfg.CallbackCodes)]
		seq = []callback{{id, to, "sent", ""}, {id, to, "failed", code}}
		c.stats.Failed[code]++
	case f < c.cfg.CallbackFail+c.cfg.CallbackNotSent:
		seq = []callback{{id, to, "not-sent", ""}}
		c.stats.NotSent++
	default:
		seq = []callback{{id, to, "sent", ""}, {id, to, "delivered", ""}}
		c.stats.Delivered++
		if u(3) < c.cfg.CallbackRead {
			seq = append(seq, callback{id, to, "read", ""})
			c.stats.Read++
		}
	}
	if n := len(seq); n > 1 && u(4) < c.cfg.CallbackReorder {
		seq[n-2], seq[n-1] = seq[n-1], seq[n-2]
	}
	if u(5) < c.cfg.CallbackDup {
		seq = append(seq, seq[int(u(6)*float64(len(seq)))%len(seq)])
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
		for i, cb := range seq {
			d := time.Duration(unit(mix(hashString(cb.id)+uint64(i)+uint64(time.Now().UnixNano()))) * float64(c.cfg.CallbackMaxDelay))
			if !c.sleep(d) {
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
