package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/httpapi"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/producer"
)

// Callback intake: Kaleyra's status callbacks posted to `wabulk serve`'s receiver against a
// bare net/http handler that decodes the same body and writes each status to Redis once.

const (
	cbToken = "bench-callback-token-0123456789abcdef"
	cbConc  = 32                      // callbacks posted at once
	cbKey   = "bench:{callbacks}:dlv" // the bare handler's one hash
)

// cbStatuses are the callbacks of each message, in the order Kaleyra sends them.
var cbStatuses = []string{"sent", "delivered", "read"}

// cbRun is one run of one side: every message's callbacks, posted by cbConc goroutines.
type cbRun struct {
	side           string
	callbacks      int
	elapsed        time.Duration
	rate           float64         // callbacks/s
	lat            []time.Duration // each post, from the request to the end of the answer's body
	cmdsPer        float64         // Redis commands processed per callback (inside scripts included)
	cpuUS, redisUS float64         // CPU µs per callback: this process (receiver and posters), redis-server
}

type callbacksResult struct {
	msgs, conc                   int // messages per run (each gets len(cbStatuses) callbacks), posters
	runs                         []cbRun
	wabulk, bare, ratio          float64 // mean callbacks/s
	wP50, wP99, wMax             time.Duration
	bP50, bP99, bMax             time.Duration
	wCmds, bCmds                 float64
	wCPU, bCPU, wRedis, bRedisUS float64
	check                        string // what the ledger counted, against what was posted
}

// callbacks maps each run's message ids with the store's own MapMessage (as the worker does on
// Kaleyra's answer), then posts sent, delivered and read for each message to the receiver of
// `wabulk serve` (httpapi, in process, on a loopback port) and to the bare handler, in ABBA order
// twice after a quarter-size warm-up of each (as §1 does), all on the benchmark's
// redis-server. At the end the ledger's counts must show every wabulk message delivered and read
// and no callback unmatched.
func (b *bench) callbacks(ctx context.Context) (callbacksResult, error) {
	res := callbacksResult{msgs: sc(6000, b.scale), conc: cbConc}
	if err := b.redis.flush(ctx); err != nil {
		return res, err
	}
	base, stop, err := serveAPI(ctx, httpapi.Config{Redis: b.redis.connOpt(), Tokens: []config.Secret{cbToken},
		Producer: producer.Config{Queue: queue, Retention: retention}})
	if err != nil {
		return res, err
	}
	defer stop()
	bare, err := startBareReceiver(b.redis)
	if err != nil {
		return res, err
	}
	defer bare.close()
	urls := map[string]string{"wabulk": base + "/v1/kaleyra/status", "bare": bare.url}

	tr := &http.Transport{MaxIdleConns: 2 * cbConc, MaxIdleConnsPerHost: cbConc}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	led := store.New(b.redis.rdb, queue, retention)
	var campaigns []string
	for k, side := range []string{"bare", "wabulk", "bare", "wabulk", "wabulk", "bare", "wabulk", "bare", "bare", "wabulk"} {
		warm := k < 2
		n := res.msgs
		if warm {
			n = max(1, n/4)
		}
		batch := fmt.Sprintf("cb%d", k)
		if side == "wabulk" {
			if err := mapMessages(ctx, led, batch, n); err != nil {
				return res, err
			}
			campaigns = append(campaigns, batch)
		}
		run, err := b.cbOnce(ctx, client, side, urls[side], batch, n)
		if err != nil {
			return res, fmt.Errorf("%s run: %w", side, err)
		}
		if warm {
			continue
		}
		b.logf("  %-6s %6.0f callbacks/s  p50 %v p99 %v max %v  %4.1f Redis commands/callback  CPU/callback: %4.0f µs here, %4.0f µs redis-server",
			side, run.rate, msf(pct(run.lat, 0.5)), msf(pct(run.lat, 0.99)), msf(run.lat[len(run.lat)-1]), run.cmdsPer, run.cpuUS, run.redisUS)
		res.runs = append(res.runs, run)
	}
	if err := res.checkCounts(ctx, led, campaigns, b.redis.rdb); err != nil {
		return res, err
	}
	res.summarise()
	return res, nil
}

// cbMessageID is message i of a run's batch, as Kaleyra's answer would carry it.
func cbMessageID(batch string, i int) string { return fmt.Sprintf("wamid.bench.%s.%07d", batch, i) }

// mapMessages declares campaign batch's lane and maps n message ids to its jobs with the store's
// own MapMessage, 16 at a time.
func mapMessages(ctx context.Context, led *store.Ledger, batch string, n int) error {
	if err := led.DeclareLane(ctx, store.Lane{Campaign: batch, Sender: sender}, false); err != nil {
		return err
	}
	lane := led.LaneName(batch, sender)
	prefix := batch + ":" + store.SenderPart(sender) + ":"
	return parallel(n, 16, func(i int) error {
		return led.MapMessage(ctx, lane, prefix+strings.TrimPrefix(recipient(i), "+"), cbMessageID(batch, i))
	})
}

// cbOnce posts the callbacks of n messages of batch to url and times each post.
func (b *bench) cbOnce(ctx context.Context, client *http.Client, side, url, batch string, n int) (cbRun, error) {
	run := cbRun{side: side, callbacks: n * len(cbStatuses)}
	bodies := make([][]byte, run.callbacks)
	for j := range bodies {
		i := j / len(cbStatuses)
		bodies[j] = sandbox.CallbackBody(cbMessageID(batch, i), recipient(i), cbStatuses[j%len(cbStatuses)], "")
	}
	run.lat = make([]time.Duration, run.callbacks)
	st0, err := b.redis.stats(ctx)
	if err != nil {
		return run, err
	}
	cpu0, rcpu0 := procCPU(os.Getpid()), b.redis.cpu()
	t0 := time.Now()
	err = parallel(run.callbacks, cbConc, func(j int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[j]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+cbToken)
		s := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		run.lat[j] = time.Since(s)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("callback %d answered %d", j, resp.StatusCode)
		}
		return nil
	})
	run.elapsed = time.Since(t0)
	if err != nil {
		return run, err
	}
	cpu, rcpu := procCPU(os.Getpid())-cpu0, b.redis.cpu()-rcpu0
	st1, err := b.redis.stats(ctx)
	if err != nil {
		return run, err
	}
	per := float64(run.callbacks)
	run.rate = per / run.elapsed.Seconds()
	run.cmdsPer = float64(st1.sub(st0).total) / per
	run.cpuUS = float64(cpu.Microseconds()) / per
	run.redisUS = float64(rcpu.Microseconds()) / per
	slices.Sort(run.lat)
	return run, nil
}

// checkCounts proves the callbacks matched: each wabulk campaign counts every message delivered
// and read, nothing is unmatched, and the bare handler's hash holds each of its messages once.
func (r *callbacksResult) checkCounts(ctx context.Context, led *store.Ledger, campaigns []string, rdb *redis.Client) error {
	var ok []string
	for _, c := range campaigns {
		n, err := led.Counts(ctx, c)
		if err != nil {
			return err
		}
		want := int64(r.msgs)
		if c == campaigns[0] {
			want = int64(max(1, r.msgs/4)) // the warm-up
		}
		if n.Delivered != want || n.Read != want {
			return fmt.Errorf("campaign %s: delivered %d, read %d, want %d each", c, n.Delivered, n.Read, want)
		}
		ok = append(ok, fmt.Sprintf("%s %d/%d", c, n.Delivered, n.Read))
	}
	unmatched, err := led.Unmatched(ctx)
	if err != nil {
		return err
	}
	if unmatched != 0 {
		return fmt.Errorf("%d callbacks unmatched", unmatched)
	}
	bareMsgs, err := rdb.HLen(ctx, cbKey).Result()
	if err != nil {
		return err
	}
	if want := int64(max(1, r.msgs/4) + 4*r.msgs); bareMsgs != want {
		return fmt.Errorf("bare handler recorded %d messages, want %d", bareMsgs, want)
	}
	r.check = fmt.Sprintf("ledger counts delivered/read per campaign: %s; unmatched 0; bare hash %d messages", strings.Join(ok, ", "), bareMsgs)
	return nil
}

// summarise averages the rates of each side and pools its latencies.
func (r *callbacksResult) summarise() {
	side := func(name string) (rate, cmds, cpu, rcpu float64, lat []time.Duration) {
		k := 0.0
		for _, run := range r.runs {
			if run.side == name {
				rate, cmds, cpu, rcpu = rate+run.rate, cmds+run.cmdsPer, cpu+run.cpuUS, rcpu+run.redisUS
				lat = append(lat, run.lat...)
				k++
			}
		}
		slices.Sort(lat)
		return rate / k, cmds / k, cpu / k, rcpu / k, lat
	}
	var wl, bl []time.Duration
	r.wabulk, r.wCmds, r.wCPU, r.wRedis, wl = side("wabulk")
	r.bare, r.bCmds, r.bCPU, r.bRedisUS, bl = side("bare")
	r.ratio = r.wabulk / r.bare
	r.wP50, r.wP99, r.wMax = pct(wl, 0.5), pct(wl, 0.99), wl[len(wl)-1]
	r.bP50, r.bP99, r.bMax = pct(bl, 0.5), pct(bl, 0.99), bl[len(bl)-1]
}

// bareCallback is what the bare handler reads of a callback: each status's message id and status.
type bareCallback struct {
	MetaObject struct {
		Value struct {
			Statuses []struct{ ID, Status string } `json:"statuses"`
		} `json:"value"`
	} `json:"meta_object"`
}

// bareReceiver is the baseline: net/http, json.Unmarshal of the body, one HSET per status on a
// client made as wabulk makes its own (config.RedisClient), 200 once written.
type bareReceiver struct {
	srv *http.Server
	rdb redis.UniversalClient
	url string
}

func startBareReceiver(r *redisServer) (*bareReceiver, error) {
	rdb, err := config.RedisClient(r.connOpt())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(err, rdb.Close())
	}
	br := &bareReceiver{rdb: rdb, url: "http://" + ln.Addr().String() + "/"}
	br.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			raw, err := io.ReadAll(io.LimitReader(req.Body, httpapi.MaxCallbackBytes+1))
			var cb bareCallback
			if err != nil || json.Unmarshal(raw, &cb) != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			for _, st := range cb.MetaObject.Value.Statuses {
				if err := rdb.HSet(req.Context(), cbKey, st.ID, st.Status).Err(); err != nil {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
			}
			w.WriteHeader(http.StatusOK)
		})}
	go br.srv.Serve(ln)
	return br, nil
}

func (br *bareReceiver) close() {
	br.srv.Close()
	br.rdb.Close()
}

// msf prints a duration in milliseconds with one decimal: callback latencies are a few ms.
func msf(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// callbacksSummary writes §8's rows of the summary table.
func (b *bench) callbacksSummary(w *strings.Builder) {
	c := b.res.cb
	if c == nil {
		return
	}
	fmt.Fprintf(w, "| 8 | callback intake: POST /v1/kaleyra/status on `wabulk serve`'s HTTP server (in process), %d posters, %d messages × sent/delivered/read per run | %.0f callbacks/s, p50 %s, p99 %s | bare net/http handler, same body, one HSET per status: %.0f callbacks/s, p99 %s | %.3f | p99 ≤ 100 ms | %s |\n",
		c.conc, c.msgs, c.wabulk, msf(c.wP50), msf(c.wP99), c.bare, msf(c.bP99), c.ratio, yes(c.wP99 <= 100*time.Millisecond))
}

// callbacksReport writes §8.
func (b *bench) callbacksReport(w *strings.Builder) {
	c := b.res.cb
	if c == nil {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("")
	p("## 8. Callback intake")
	p("")
	p("Kaleyra's status callbacks (the documented v2 body, one status each, as the sandbox posts them) sent to "+
		"`POST /v1/kaleyra/status` of `wabulk serve`'s API (httpapi.New and Serve on a loopback port, in the benchmark "+
		"process, bearer token) and to a bare `net/http` handler that reads each status's id and status through `json.Unmarshal` and makes one "+
		"`HSET` per status, answering 200 once written. Both on the benchmark's redis-server, with clients made by the same "+
		"`config.RedisClient`. Each run's %d message ids are first mapped to jobs with the ledger's own `MapMessage` (as the "+
		"worker does on Kaleyra's answer), then %d goroutines post `sent`, `delivered` and `read` for each (%d callbacks; "+
		"concurrent posts of one message may arrive out of order, as Kaleyra's do). Latency: from the request to the end of "+
		"the answer, on the posting side. Runs in ABBA order twice (bare, wabulk, wabulk, bare, wabulk, bare, bare, wabulk) after a quarter-size warm-up of each "+
		"(not counted). Run alone with `%s`.", c.msgs, c.conc, c.msgs*len(cbStatuses), b.aloneCmd("callbacks"))
	p("")
	p("| run | side | callbacks/s | p50 | p99 | max | Redis commands / callback | CPU µs / callback, bench process | CPU µs / callback, redis-server |")
	p("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for i, r := range c.runs {
		p("| %d | %s | %.0f | %s | %s | %s | %.1f | %.0f | %.0f |", i+1, r.side, r.rate, msf(pct(r.lat, 0.5)), msf(pct(r.lat, 0.99)),
			msf(r.lat[len(r.lat)-1]), r.cmdsPer, r.cpuUS, r.redisUS)
	}
	p("")
	p("Mean: wabulk %.0f, bare %.0f callbacks/s, **ratio %.3f**; latency over all runs of a side: wabulk p50 %s, p99 **%s**, "+
		"max %s; bare p50 %s, p99 %s, max %s. Checked after the runs: %s.", c.wabulk, c.bare, c.ratio, msf(c.wP50), msf(c.wP99),
		msf(c.wMax), msf(c.bP50), msf(c.bP99), msf(c.bMax), c.check)
	p("")
	p("What the receiver does beyond the bare handler, per callback: the bearer check, the checks of every field (status, " +
		"id, timestamp, code), and the ledger's two scripts: one looks the message id up (or parks the status when the worker " +
		"has not mapped it yet), one moves the message's status forward only (so duplicates and reordering count once) and " +
		"updates the campaign's counts; plus the Prometheus counters and the request metrics of every route. It answers only " +
		"once the status is recorded (a Redis failure answers 503, so Kaleyra retries), as the bare handler does.")
}
