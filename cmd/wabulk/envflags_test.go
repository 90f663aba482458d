package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/redistest"
)

// TestEnvFlagsAreTypedInHelp: every setting the worker reads (but the Kaleyra account's) is a
// flag, and a numeric one shows its type in --help rather than "string".
func TestEnvFlagsAreTypedInHelp(t *testing.T) {
	r := runCLI(t, nil, "worker", "--help")
	if r.code != 0 {
		t.Fatalf("worker --help: %+v", r)
	}
	want := map[string]string{
		"concurrency": "int", "burst": "int", "rate": "float",
		"retry-base": "duration", "retry-max": "duration", "http-timeout": "duration",
		"retention": "duration", "shutdown-timeout": "duration", "pause-on": "strings",
		"log-pii": "string", "log-level": "string", "metrics-addr": "string", "queue": "string", "redis-url": "string",
	}
	for name, typ := range want {
		if !regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(name) + ` ` + typ + `\s`).MatchString(r.stdout) {
			t.Errorf("worker --help: want --%s %s in\n%s", name, typ, r.stdout)
		}
	}
	for _, cmd := range [][]string{{"send", "--help"}, {"enqueue", "--help"}, {"serve", "--help"}} {
		r := runCLI(t, nil, cmd...)
		if r.code != 0 || !strings.Contains(r.stdout, "--max-retry int") {
			t.Errorf("wabulk %s: want --max-retry int, got %+v", strings.Join(cmd, " "), r)
		}
	}
}

// TestBadFlagValueNamesTheFlag: a bad value given as a flag is refused (exit 2) in the flag's
// name, one from the environment in the variable's.
func TestBadFlagValueNamesTheFlag(t *testing.T) {
	env := []string{"KALEYRA_SID=sid", "KALEYRA_API_KEY=key", "WABULK_METRICS_ADDR=", "WABULK_REDIS_URL=redis://127.0.0.1:1/0"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "--concurrency", "abc"}, `--concurrency" flag: want a whole number, got "abc"`},
		{[]string{"worker", "--concurrency", "0"}, `--concurrency" flag: want a whole number ≥ 1`},
		{[]string{"worker", "--rate", "fast"}, `--rate" flag: want a number > 0`},
		{[]string{"worker", "--retry-base", "5"}, `--retry-base" flag: want a positive Go duration`},
		{[]string{"send", "--max-retry", "-1", "--campaign", "c", "-"}, `--max-retry" flag: want a whole number ≥ 0`},
		{[]string{"enqueue", "--max-retry", "x", "--campaign", "c", "-"}, `--max-retry" flag: want a whole number`},
		{[]string{"worker", "--queue", "a b"}, `--queue (WABULK_QUEUE) must be`},
		{[]string{"worker", "--log-pii", "some"}, `--log-pii (WABULK_LOG_PII) must be masked or full`},
	} {
		r := runCLI(t, env, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("wabulk %s: exit %d, stderr %q: want 2 and %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	r := runCLI(t, append(env, "WABULK_CONCURRENCY=abc"), "worker")
	if r.code != 2 || !strings.Contains(r.stderr, `WABULK_CONCURRENCY must be an integer ≥ 1, got "abc"`) || strings.Contains(r.stderr, "--concurrency") {
		t.Errorf("WABULK_CONCURRENCY=abc wabulk worker: exit %d, stderr %q: want 2 naming the variable", r.code, r.stderr)
	}
}

// TestEnqueueMaxRetryFlag: --max-retry sets the retry budget of the jobs enqueue writes (the
// worker reads it from each job, so it is a flag where jobs are enqueued).
func TestEnqueueMaxRetryFlag(t *testing.T) {
	srv := redistest.Start(t)
	if r := enqueueCLI(t, srv.URL, "to\n+919812345678\n", "--campaign", "mr", "--type", "image", "--media-id", "m1", "--max-retry", "3", "-"); r.code != 0 {
		t.Fatalf("enqueue --max-retry 3: %+v", r)
	}
	opt, err := asynq.ParseRedisURI(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	in := asynq.NewInspector(opt)
	defer in.Close()
	qs, err := in.Queues()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, q := range qs {
		tasks, err := in.ListPendingTasks(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range tasks {
			got = append(got, ti.MaxRetry)
		}
	}
	if len(got) != 1 || got[0] != 3 {
		t.Errorf("pending tasks' MaxRetry %v in queues %v: want [3]", got, qs)
	}
}

// TestProducerConfigReadsZeroRetriesAsNone: WABULK_MAX_RETRY=0 means no retries, which
// producer.Config says with a negative MaxRetry (its 0 means the default).
func TestProducerConfigReadsZeroRetriesAsNone(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
	}{{"0", -1}, {"3", 3}} {
		c, err := config.Load(func(k string) (string, bool) {
			v, ok := map[string]string{config.EnvMaxRetry: tc.env, config.EnvQueue: "other", config.EnvFrom: "+919812345601"}[k]
			return v, ok
		})
		if err != nil {
			t.Fatal(err)
		}
		pc := producerConfig(c)
		if pc.MaxRetry != tc.want || pc.Queue != "other" || pc.DefaultFrom != "+919812345601" {
			t.Errorf("WABULK_MAX_RETRY=%s: producer config %+v, want MaxRetry %d, queue other, sender set", tc.env, pc, tc.want)
		}
		api, err := apiConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		if api.Producer != pc {
			t.Errorf("serve's producer config %+v differs from enqueue's %+v", api.Producer, pc)
		}
	}
}
