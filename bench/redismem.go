package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/job"
)

// redisMemResult is Redis memory per job, wabulk beside bare asynq, for jobs waiting and for
// jobs finished and kept for the retention window.
type redisMemResult struct {
	jobs                 int
	pending, pendingBare float64 // bytes of used_memory per pending job
	done, doneBare       float64 // bytes of used_memory per finished job
	// parts splits wabulk's finished jobs by key kind (MEMORY USAGE summed per kind, per job).
	parts []memPart
	// payload is the bytes of one job's JSON payload, wide those of its campaign-wide fields
	// (type, media, caption, filename, wa_source and their keys).
	payload, wide int
}

type memPart struct {
	kind  string
	bytes float64 // per job
	keys  int64
}

// redisMemory enqueues jobs and measures used_memory before and after (pending), then runs them
// all through the zero-latency sandbox and measures again (finished: task, result and wabulk's
// records, as kept for WABULK_RETENTION). wabulk: the real producer and the in-process worker;
// bare: asynq.Client.Enqueue of the request body and a bare handler that writes Kaleyra's answer
// as the task result (what an asynq user keeping the answer would do).
func (b *bench) redisMemory(ctx context.Context, jobs int) (redisMemResult, error) {
	res := redisMemResult{jobs: jobs}
	full, err := job.Encode(payload("memwabulk", 1))
	if err != nil {
		return res, err
	}
	narrow := payload("memwabulk", 1)
	narrow.Type, narrow.MediaID, narrow.MediaLink, narrow.Caption, narrow.Filename, narrow.WASource = "", "", "", "", "", ""
	slim, err := json.Marshal(narrow)
	if err != nil {
		return res, err
	}
	// WASource and Type have no omitempty: their keys stay in slim, counted as per-job bytes.
	res.payload, res.wide = len(full), len(full)-len(slim)
	sb, err := startSandbox(0, 0)
	if err != nil {
		return res, err
	}
	defer sb.close()
	for _, side := range []string{"bare", "wabulk"} {
		if err := b.redis.flush(ctx); err != nil {
			return res, err
		}
		sb.reset()
		m0, err := b.usedMemory(ctx)
		if err != nil {
			return res, err
		}
		campaign := "mem" + side
		var stop func() error
		if side == "wabulk" {
			err = enqueueCampaign(ctx, b.redis, campaign, 0, jobs)
		} else {
			err = enqueueBare(b.redis, campaign, jobs)
		}
		if err != nil {
			return res, err
		}
		m1, err := b.usedMemory(ctx)
		if err != nil {
			return res, err
		}
		if side == "wabulk" {
			w, err := startInProcessWorker(workerConfig(b.redis, sb, 50, unboundRate), filepath.Join(b.tmp, campaign+".log"))
			if err != nil {
				return res, err
			}
			stop = w.stop
		} else {
			s, err := startBare(b.redis, sb, 50, true)
			if err != nil {
				return res, err
			}
			stop = func() error { s.stop(); return nil }
		}
		werr := sb.waitCalls(int64(jobs), 5*time.Minute)
		// The last ledger writes and asynq acks land just after the last call.
		werr = firstErr(werr, b.waitCompleted(ctx, int64(jobs), time.Minute))
		serr := stop()
		if err := firstErr(werr, serr); err != nil {
			return res, err
		}
		m2, err := b.usedMemory(ctx)
		if err != nil {
			return res, err
		}
		pend, done := float64(m1-m0)/float64(jobs), float64(m2-m0)/float64(jobs)
		if side == "wabulk" {
			res.pending, res.done = pend, done
			if res.parts, err = b.memoryByKind(ctx, jobs); err != nil {
				return res, err
			}
		} else {
			res.pendingBare, res.doneBare = pend, done
		}
	}
	return res, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// usedMemory is INFO memory's used_memory after a moment for lazy frees to settle.
func (b *bench) usedMemory(ctx context.Context) (int64, error) {
	time.Sleep(200 * time.Millisecond)
	info, err := b.redis.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
}

// waitCompleted waits until asynq's completed sets hold n tasks in all.
func (b *bench) waitCompleted(ctx context.Context, n int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var total int64
		queues, err := b.redis.rdb.SMembers(ctx, "asynq:queues").Result()
		if err != nil {
			return err
		}
		for _, q := range queues {
			c, err := b.redis.rdb.ZCard(ctx, "asynq:{"+q+"}:completed").Result()
			if err != nil {
				return err
			}
			total += c
		}
		if total >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d tasks completed after %v", total, n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memKinds name keys by what they hold; the first match wins.
var memKinds = []struct {
	kind string
	re   *regexp.Regexp
}{
	{"asynq task hash (message, state, result)", regexp.MustCompile(`^asynq:\{[^}]*\}:t:`)},
	{"asynq completed set", regexp.MustCompile(`^asynq:\{[^}]*\}:completed$`)},
	{"asynq pending list", regexp.MustCompile(`^asynq:\{[^}]*\}:pending$`)},
	{"message id → job map", regexp.MustCompile(`^wabulk:[^:]*:m:\{`)},
	{"wabulk sent markers", regexp.MustCompile(`^wabulk:\{[^}]*\}:sent$`)},
	{"other asynq keys", regexp.MustCompile(`^asynq:`)},
	{"other wabulk keys", regexp.MustCompile(`^wabulk:`)},
}

// memoryByKind sums MEMORY USAGE (all samples) of every key by kind, per job.
func (b *bench) memoryByKind(ctx context.Context, jobs int) ([]memPart, error) {
	sums, counts := map[string]int64{}, map[string]int64{}
	var cursor uint64
	for {
		keys, next, err := b.redis.rdb.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return nil, err
		}
		pipe := b.redis.rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.MemoryUsage(ctx, k, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		for i, k := range keys {
			kind := "unclassified"
			for _, m := range memKinds {
				if m.re.MatchString(k) {
					kind = m.kind
					break
				}
			}
			sums[kind] += cmds[i].Val()
			counts[kind]++
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	var parts []memPart
	for k, v := range sums {
		parts = append(parts, memPart{kind: k, bytes: float64(v) / float64(jobs), keys: counts[k]})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].bytes > parts[j].bytes })
	return parts, nil
}
