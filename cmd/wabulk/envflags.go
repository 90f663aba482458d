package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
)

// flagKind is what an envFlag holds: it names the type in --help and says how a value given on
// the command line is checked, so `--concurrency abc` is refused as a flag before the
// configuration is read.
type flagKind int

const (
	kindString   flagKind = iota
	kindInt               // a whole number ≥ envFlag.min
	kindFloat             // a number > 0
	kindDuration          // a positive Go duration
	kindList              // comma-separated values
)

// envFlag is a flag that overrides one environment variable.
type envFlag struct {
	name, env, usage string
	kind             flagKind
	min              int // the least value of a kindInt flag
}

// Flags shared by the commands, each standing for the variable of the same meaning.
var (
	flagRedisURL    = envFlag{name: "redis-url", env: config.EnvRedisURL, usage: "Redis URI (redis://, rediss://, redis-socket://, redis-sentinel://)"}
	flagQueue       = envFlag{name: "queue", env: config.EnvQueue, usage: "asynq queue of the jobs"}
	flagConcurrency = envFlag{name: "concurrency", env: config.EnvConcurrency, usage: "jobs this process runs at once", kind: kindInt, min: 1}
	flagRate        = envFlag{name: "rate", env: config.EnvRate, usage: "messages per second per sender, all workers together", kind: kindFloat}
	flagBurst       = envFlag{name: "burst", env: config.EnvBurst, usage: "tokens the shared limiter may hand out at once", kind: kindInt, min: 1}
	flagMaxRetry    = envFlag{name: "max-retry", env: config.EnvMaxRetry, usage: "retries of a transient failure before the job is dead-lettered (fixed per job when it is enqueued)", kind: kindInt}
	flagMetricsAddr = envFlag{name: "metrics-addr", env: config.EnvMetricsAddr, usage: "listen address of /metrics, /healthz, /readyz (empty: off)"}
	flagLogLevel    = envFlag{name: "log-level", env: config.EnvLogLevel, usage: "zap log level"}
	flagLogPII      = envFlag{name: "log-pii", env: config.EnvLogPII, usage: "masked or full: how phone numbers appear in logs"}
	flagAddr        = envFlag{name: "addr", env: config.EnvAddr, usage: "listen address of the HTTP API"}
	flagRetryBase   = envFlag{name: "retry-base", env: config.EnvRetryBase, usage: "backoff base of a transient failure (full jitter)", kind: kindDuration}
	flagRetryMax    = envFlag{name: "retry-max", env: config.EnvRetryMax, usage: "backoff cap of a transient failure", kind: kindDuration}
	flagHTTPTimeout = envFlag{name: "http-timeout", env: config.EnvHTTPTimeout, usage: "timeout of one Kaleyra call", kind: kindDuration}
	flagRetention   = envFlag{name: "retention", env: config.EnvRetention, usage: "how long completed jobs stay in Redis (the dedupe window)", kind: kindDuration}
	flagShutdown    = envFlag{name: "shutdown-timeout", env: config.EnvShutdown, usage: "how long a stopping worker lets in-flight jobs finish", kind: kindDuration}
	flagPauseOn     = envFlag{name: "pause-on", env: config.EnvPauseOn, usage: "Kaleyra codes that pause the queue instead of dead-lettering (e.g. E110,RBC001)", kind: kindList}
)

// workerFlags are the settings a process that runs a worker reads (worker, send), besides the
// Kaleyra account's, which stay in the environment: a secret on the command line is in ps.
var workerFlags = []envFlag{flagRedisURL, flagQueue, flagConcurrency, flagRate, flagBurst, flagRetryBase,
	flagRetryMax, flagHTTPTimeout, flagRetention, flagShutdown, flagPauseOn, flagMetricsAddr, flagLogLevel, flagLogPII}

// envValue is an envFlag's pflag.Value: Type gives --help its type name, Set checks the value's
// form so that pflag's error names the flag ("invalid argument "abc" for "--concurrency" flag").
type envValue struct {
	f envFlag
	s string
}

func (v *envValue) String() string { return v.s }

// Type is the type name --help shows.
func (v *envValue) Type() string {
	switch v.f.kind {
	case kindInt:
		return "int"
	case kindFloat:
		return "float"
	case kindDuration:
		return "duration"
	case kindList:
		return "strings"
	}
	return "string"
}

// Set checks what the configuration would check of the variable, in the flag's words.
func (v *envValue) Set(s string) error {
	t := strings.TrimSpace(s)
	switch v.f.kind {
	case kindInt:
		n, err := strconv.Atoi(t)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		if n < v.f.min {
			return fmt.Errorf("want a whole number ≥ %d, got %q", v.f.min, s)
		}
	case kindFloat:
		r, err := strconv.ParseFloat(t, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			return fmt.Errorf("want a number > 0, got %q", s)
		}
	case kindDuration:
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive Go duration such as 5s or 10m, got %q", s)
		}
	}
	v.s = s
	return nil
}

// withEnvFlags registers the flags on cmd and returns a loader: the configuration from the
// environment with every flag the user set put over its variable. Form errors are pflag's,
// naming the flag; what the configuration then refuses names the variable, and the flag as
// well ("--queue (WABULK_QUEUE) must …") when the value came from the flag.
func withEnvFlags(cmd *cobra.Command, flags ...envFlag) func() (config.Config, error) {
	for _, f := range flags {
		cmd.Flags().Var(&envValue{f: f}, f.name, f.usage+" (overrides "+f.env+")")
	}
	return func() (config.Config, error) {
		c, err := config.Load(func(name string) (string, bool) {
			for _, f := range flags {
				if f.env == name && cmd.Flags().Changed(f.name) {
					return cmd.Flags().Lookup(f.name).Value.String(), true
				}
			}
			return os.LookupEnv(name)
		})
		if err == nil {
			return c, nil
		}
		msg := err.Error()
		for _, f := range flags {
			if cmd.Flags().Changed(f.name) {
				msg = strings.ReplaceAll(msg, f.env, "--"+f.name+" ("+f.env+")")
			}
		}
		if msg == err.Error() {
			return c, err
		}
		return c, errors.New(msg)
	}
}
