package store

// Sender settings and send counts. Every key is in the namespace's slot {ns}, so a pipeline of
// them is one round trip to one node, on Redis Cluster too:
//
//	wabulk:{ns}:senders:rates        HASH  sender digits -> {"rate":R} or {"rate":R,"burst":B}
//	wabulk:{ns}:senders:default      STRING {"rate":R,"burst":B}: the default workers run with,
//	                                 written by each worker's limiter while it sends, for an hour
//	wabulk:{ns}:sends:<unix minute>  HASH  sender digits (or "default") -> sends counted by
//	                                 workers in that minute; expires after 3 minutes
//
// A rate override is read by every worker's limiter about once a second (one HGETALL for all
// senders), so a change reaches the fleet within seconds. Values are checked where they are
// read as well as where they are written: a hand-edited or corrupt entry is skipped, and the
// sender keeps the default.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/job"
)

// SenderRate is one sender's rate setting: messages per second for all workers together, and a
// burst (0: ceil(rate/10), at least 1). It is the limiter's Override, so (*Ledger).SyncSenderRates
// is a ratelimit.RateSource as it stands.
type SenderRate = ratelimit.Override

// ErrBadSender is returned (wrapped) for a sender number that is not a phone number.
var ErrBadSender = errors.New("bad sender number")

// ErrBadRate is returned (wrapped) for a rate or burst out of range.
var ErrBadRate = errors.New("bad rate")

const (
	// defaultRateTTL is how long the default a worker published stays after its last refresh:
	// long enough that `sender ls` shows the fleet's default while the fleet idles.
	defaultRateTTL = time.Hour
	// sendsTTL keeps the current and the previous minute's counts (SentLastMinute reads them)
	// plus a minute of slack for clocks that disagree.
	sendsTTL = 3 * time.Minute
)

// storedRate is a SenderRate as the hash holds it.
type storedRate struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst,omitempty"`
}

// SenderDigits normalises sender with job.NormalizeNumber and returns its digits, the form
// the settings and counters are keyed by (E.164 without "+"), so "+91 90000 00001" and
// "919000000001" name the same sender.
func SenderDigits(sender string) (string, error) {
	n, err := job.NormalizeNumber(sender)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSender, err)
	}
	return strings.TrimPrefix(n, "+"), nil
}

// SetSenderRate overrides the rate (and, if burst > 0, the burst) of sender for every worker.
// rate must be > 0 and at most ratelimit.MaxRate, burst 0 to ratelimit.MaxBurst.
func (l *Ledger) SetSenderRate(ctx context.Context, sender string, rate float64, burst int) error {
	d, err := SenderDigits(sender)
	if err != nil {
		return err
	}
	if err := ratelimit.CheckOverride(SenderRate{Rate: rate, Burst: burst}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRate, err)
	}
	v, err := json.Marshal(storedRate{Rate: rate, Burst: burst})
	if err != nil {
		return err
	}
	if err := l.rdb.HSet(ctx, l.ratesKey(), d, v).Err(); err != nil {
		return fmt.Errorf("set rate of %s: %w", d, err)
	}
	return nil
}

// ClearSenderRate removes sender's override: it goes back to the default. Clearing a sender
// without one is not an error.
func (l *Ledger) ClearSenderRate(ctx context.Context, sender string) error {
	d, err := SenderDigits(sender)
	if err != nil {
		return err
	}
	if err := l.rdb.HDel(ctx, l.ratesKey(), d).Err(); err != nil {
		return fmt.Errorf("clear rate of %s: %w", d, err)
	}
	return nil
}

// SenderRates returns the overrides, keyed by sender digits. An entry that does not parse or is
// out of range is left out (that sender has the default).
func (l *Ledger) SenderRates(ctx context.Context) (map[string]SenderRate, error) {
	raw, err := l.rdb.HGetAll(ctx, l.ratesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("sender rates: %w", err)
	}
	return parseRates(raw), nil
}

// SyncSenderRates is the limiter's RateSource: it publishes def, the default this worker runs
// with, and reads the overrides, in one round trip.
func (l *Ledger) SyncSenderRates(ctx context.Context, def SenderRate) (map[string]SenderRate, error) {
	v, err := json.Marshal(storedRate{Rate: def.Rate, Burst: def.Burst})
	if err != nil {
		return nil, err
	}
	pipe := l.rdb.Pipeline()
	pipe.Set(ctx, l.defaultRateKey(), v, defaultRateTTL)
	all := pipe.HGetAll(ctx, l.ratesKey())
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("sender rates: %w", err)
	}
	return parseRates(all.Val()), nil
}

// DefaultSenderRate is the default a worker published in the last hour, and whether there is
// one.
func (l *Ledger) DefaultSenderRate(ctx context.Context) (SenderRate, bool, error) {
	v, err := l.rdb.Get(ctx, l.defaultRateKey()).Result()
	if errors.Is(err, redis.Nil) {
		return SenderRate{}, false, nil
	}
	if err != nil {
		return SenderRate{}, false, fmt.Errorf("default rate: %w", err)
	}
	r, ok := parseRate(v)
	return r, ok, nil
}

func parseRates(raw map[string]string) map[string]SenderRate {
	out := make(map[string]SenderRate, len(raw))
	for d, v := range raw {
		if !allDigits(d) {
			continue
		}
		if r, ok := parseRate(v); ok {
			out[d] = r
		}
	}
	return out
}

// parseRate reads one stored value: the JSON this file writes, or a bare number (someone
// typed HSET by hand). Anything else, or a value out of range, is refused.
func parseRate(v string) (SenderRate, bool) {
	var s storedRate
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil || dec.More() {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return SenderRate{}, false
		}
		s = storedRate{Rate: f}
	}
	r := SenderRate{Rate: s.Rate, Burst: s.Burst}
	if ratelimit.CheckOverride(r) != nil {
		return SenderRate{}, false
	}
	return r, true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// SendCounter counts accepted sends per sender in memory and adds them to Redis once a second,
// so counting costs the handler no round trip. Start Run once; call Add from any goroutine.
type SendCounter struct {
	l   *Ledger
	now func() time.Time // the clock minutes are taken from; tests set it

	mu     sync.Mutex
	counts map[string]int64
}

// NewSendCounter returns a counter writing to l's namespace.
func (l *Ledger) NewSendCounter() *SendCounter {
	return &SendCounter{l: l, now: time.Now, counts: make(map[string]int64)}
}

// Add counts one send from sender (E.164 or digits; empty: the worker's default sender).
func (c *SendCounter) Add(sender string) {
	d := SenderPart(sender)
	c.mu.Lock()
	c.counts[d]++
	c.mu.Unlock()
}

// Run writes the counts every second until ctx ends, then writes what is left (with a short
// timeout of its own) and returns.
func (c *SendCounter) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.Flush(ctx)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c.Flush(fctx)
			cancel()
			return
		}
	}
}

// Flush writes the counts so far into the current minute's bucket in one round trip. On error
// they are kept for the next flush, so a Redis outage delays counts rather than losing them.
func (c *SendCounter) Flush(ctx context.Context) error {
	c.mu.Lock()
	counts := c.counts
	if len(counts) == 0 {
		c.mu.Unlock()
		return nil
	}
	c.counts = make(map[string]int64, len(counts))
	c.mu.Unlock()

	key := c.l.sendsKey(c.now().Unix() / 60)
	pipe := c.l.rdb.Pipeline()
	for d, n := range counts {
		pipe.HIncrBy(ctx, key, d, n)
	}
	pipe.Expire(ctx, key, sendsTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		// HINCRBY may have applied for some senders before the error; putting all back may
		// count those twice, losing them would count them never. An outage is rare and the
		// figure is for operators, so prefer the estimate that does not hide sends.
		c.mu.Lock()
		for d, n := range counts {
			c.counts[d] += n
		}
		c.mu.Unlock()
		return fmt.Errorf("flush send counts: %w", err)
	}
	return nil
}

// SentLastMinute estimates each sender's sends in the last 60 s from the current and the
// previous minute's buckets: the current count plus the share of the previous one that falls
// in the window (exact for a steady rate). Senders with none are left out.
func (l *Ledger) SentLastMinute(ctx context.Context) (map[string]int64, error) {
	return l.sentLastMinute(ctx, time.Now())
}

func (l *Ledger) sentLastMinute(ctx context.Context, now time.Time) (map[string]int64, error) {
	minute := now.Unix() / 60
	elapsed := float64(now.UnixNano()-minute*60*int64(time.Second)) / float64(time.Minute)
	pipe := l.rdb.Pipeline()
	cur := pipe.HGetAll(ctx, l.sendsKey(minute))
	prev := pipe.HGetAll(ctx, l.sendsKey(minute-1))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("sends in the last minute: %w", err)
	}
	out := map[string]int64{}
	add := func(m map[string]string, share float64) {
		for d, v := range m {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				continue
			}
			out[d] += int64(math.Round(float64(n) * share))
		}
	}
	add(cur.Val(), 1)
	add(prev.Val(), 1-min(max(elapsed, 0), 1))
	for d, n := range out {
		if n <= 0 {
			delete(out, d)
		}
	}
	return out, nil
}
