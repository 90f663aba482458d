package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"
)

type profileResult struct {
	jobs      int
	rate      float64
	file      string
	tags      string   // share of samples by role label
	flat, cum []string // top lines, worker samples only
	own       []string // wabulk's own functions by cum, worker samples only
	totalLine string
}

// profile runs the in-process worker over jobs at the throughput settings with the CPU
// profiler on, then reads the profile with `go tool pprof` restricted to the samples labelled
// role=worker (the sandbox in the same process is labelled role=sandbox; GC and runtime
// threads carry no label).
func (b *bench) profile(ctx context.Context) (profileResult, error) {
	res := profileResult{jobs: b.profJobs, file: filepath.Join(b.tmp, "worker.cpu.pprof")}
	sb, err := startSandbox(0, 0)
	if err != nil {
		return res, err
	}
	defer sb.close()
	if err := b.redis.flush(ctx); err != nil {
		return res, err
	}
	if err := enqueueCampaign(ctx, b.redis, "prof", 0, res.jobs); err != nil {
		return res, err
	}
	f, err := os.Create(res.file)
	if err != nil {
		return res, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return res, err
	}
	w, err := startInProcessWorker(workerConfig(b.redis, sb, 50, unboundRate), filepath.Join(b.tmp, "prof.log"))
	if err != nil {
		pprof.StopCPUProfile()
		return res, err
	}
	werr := sb.waitCalls(int64(res.jobs), 5*time.Minute)
	pprof.StopCPUProfile()
	f.Close()
	if err := w.stop(); err != nil {
		return res, err
	}
	if werr != nil {
		return res, werr
	}
	calls, err := sb.sortedCalls()
	if err != nil {
		return res, err
	}
	res.rate = callRate(calls)

	if res.tags, err = goPprof("-tags", res.file); err != nil {
		return res, err
	}
	res.tags = tagShares(res.tags)
	top, err := goPprof("-top", "-nodecount=22", "-tagfocus=role=worker", res.file)
	if err != nil {
		return res, err
	}
	res.totalLine, res.flat = topLines(top)
	cum, err := goPprof("-top", "-cum", "-nodecount=30", "-tagfocus=role=worker", res.file)
	if err != nil {
		return res, err
	}
	_, res.cum = topLines(cum)
	all, err := goPprof("-top", "-cum", "-nodecount=100000", "-tagfocus=role=worker", res.file)
	if err != nil {
		return res, err
	}
	_, lines := topLines(all)
	for _, l := range lines {
		own := strings.Contains(l, "github.com/wabulk/wabulk/") && !strings.Contains(l, "/internal/sandbox")
		if (own || strings.HasSuffix(l, logCall)) && len(res.own) < 25 {
			res.own = append(res.own, l)
		}
	}
	return res, nil
}

// logCall is the worker's one log line per message (zap), listed with wabulk's own functions.
const logCall = "go.uber.org/zap.(*Logger).Info"

func goPprof(args ...string) (string, error) {
	cmd := exec.Command("go", append([]string{"tool", "pprof"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("go tool pprof %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out), nil
}

// topLines splits `pprof -top` output into its summary line ("Showing nodes accounting for …")
// and the table rows (header included).
func topLines(out string) (summary string, rows []string) {
	inTable := false
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "Showing nodes"):
			summary = strings.TrimSpace(line)
		case strings.Contains(line, "flat%") && strings.Contains(line, "cum%"):
			inTable = true
			rows = append(rows, line)
		case inTable && strings.TrimSpace(line) != "":
			rows = append(rows, line)
		}
	}
	return summary, rows
}

// tagShares keeps the "role" section of `pprof -tags`.
func tagShares(out string) string {
	var b strings.Builder
	in := false
	for line := range strings.Lines(out) {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "role:") {
			in = true
		} else if in && strings.HasSuffix(t, ":") {
			break
		}
		if in && t != "" {
			b.WriteString(t + "\n")
		}
	}
	return b.String()
}
