package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

type enqueueResult struct {
	rows        int
	fileBytes   int64
	conc        int
	bare, ours  float64 // rows/s
	ratio       float64
	peakKiB     int64 // wabulk enqueue's peak RSS (VmHWM sampled every 20 ms)
	elapsed     time.Duration
	bareElapsed time.Duration
	summary     string
	sameBytes   bool
}

// producerConcurrency is producer.Config.Concurrency's default, which `wabulk enqueue` uses.
const producerConcurrency = 16

// enqueue writes a campaign file of rows and runs `wabulk enqueue FILE` (the built binary) on
// it, between two halves of a bare asynq Enqueue loop over the same payload bytes and TaskIDs
// at the producer's concurrency; each run starts on an empty Redis.
func (b *bench) enqueue(ctx context.Context, rows int) (enqueueResult, error) {
	res := enqueueResult{rows: rows, conc: producerConcurrency}
	const campaign = "million"
	path := filepath.Join(b.tmp, campaign+".csv")
	if err := writeCampaignFile(path, rows); err != nil {
		return res, err
	}
	if fi, err := os.Stat(path); err == nil {
		res.fileBytes = fi.Size()
	}
	samples := []int{0, rows / 2, rows - 1}
	for _, i := range samples {
		if err := checkPayload(campaign, i); err != nil {
			return res, err
		}
	}

	// The bare loop: payloads and ids made beforehand, so it times asynq and Redis alone.
	payloads := make([][]byte, rows)
	ids := make([]string, rows)
	for i := range rows {
		p := payload(campaign, i)
		payloads[i], _ = job.Encode(p)
		ids[i] = job.TaskID(p)
	}
	want := map[string][]byte{}
	for _, i := range samples {
		want[ids[i]] = payloads[i]
	}
	// Half the rows before `wabulk enqueue` and half after (each into an empty Redis), so drift
	// on a shared machine falls on both sides alike.
	bareHalf := func(from, to int) error {
		if err := b.redis.flush(ctx); err != nil {
			return err
		}
		client := asynq.NewClient(b.redis.connOpt())
		defer client.Close()
		t0 := time.Now()
		err := parallel(to-from, res.conc, func(i int) error {
			_, err := client.Enqueue(asynq.NewTask(job.TaskType, payloads[from+i]), taskOptions(ids[from+i])...)
			return err
		})
		res.bareElapsed += time.Since(t0)
		if err == nil {
			err = b.redis.flush(ctx)
		}
		return err
	}
	if err := bareHalf(0, rows/2); err != nil {
		return res, err
	}

	cmd := exec.Command(b.bin, "enqueue", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"WABULK_REDIS_URL=" + b.redis.url(), "WABULK_QUEUE=" + queue, "KALEYRA_FROM=" + sender}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	done := make(chan struct{})
	var rss, hwm atomic.Int64
	sampled := make(chan struct{})
	go func() { sampleMemory(cmd.Process.Pid, done, 20*time.Millisecond, &rss, &hwm); close(sampled) }()
	err := cmd.Wait()
	res.elapsed = time.Since(t0)
	close(done)
	<-sampled
	if err != nil {
		return res, fmt.Errorf("wabulk enqueue: %v\n%s", err, tail(stderr.String(), 2000))
	}
	res.peakKiB = hwm.Load()
	res.ours = float64(rows) / res.elapsed.Seconds()
	res.summary = strings.TrimSpace(lastLine(stdout.String()))
	if wantSum := fmt.Sprintf("enqueued %d, duplicates 0, rejected 0", rows); res.summary != wantSum {
		return res, fmt.Errorf("wabulk enqueue printed %q, want %q", res.summary, wantSum)
	}
	insp := asynq.NewInspector(b.redis.connOpt())
	defer insp.Close()
	res.sameBytes = true
	lane := store.New(nil, queue, 0).LaneName(campaign, sender) // where the producer puts them
	for id, p := range want {
		info, err := insp.GetTaskInfo(lane, id)
		if err != nil {
			return res, fmt.Errorf("task %s after wabulk enqueue: %w", id, err)
		}
		res.sameBytes = res.sameBytes && bytes.Equal(info.Payload, p)
	}
	if err := bareHalf(rows/2, rows); err != nil {
		return res, err
	}
	res.bare = float64(rows) / res.bareElapsed.Seconds()
	res.ratio = res.ours / res.bare
	return res, nil
}

func writeCampaignFile(path string, rows int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("to,type,media_link,ref\n")
	line := make([]byte, 0, 80)
	for i := range rows {
		line = append(line[:0], recipient(i)...)
		line = append(line, ",image,"+mediaLink+",r"...)
		line = strconv.AppendInt(line, int64(i), 10)
		line = append(line, '\n')
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
