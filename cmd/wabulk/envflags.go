package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
)

// envFlag is a flag that overrides one environment variable.
type envFlag struct {
	name, env, usage string
}

// Flags shared by the commands, each standing for the variable of the same meaning.
var (
	flagRedisURL    = envFlag{"redis-url", config.EnvRedisURL, "Redis URI (redis://, rediss://, redis-socket://, redis-sentinel://)"}
	flagQueue       = envFlag{"queue", config.EnvQueue, "asynq queue of the jobs"}
	flagConcurrency = envFlag{"concurrency", config.EnvConcurrency, "jobs this process runs at once"}
	flagRate        = envFlag{"rate", config.EnvRate, "messages per second per sender, all workers together"}
	flagBurst       = envFlag{"burst", config.EnvBurst, "tokens the shared limiter may hand out at once"}
	flagMaxRetry    = envFlag{"max-retry", config.EnvMaxRetry, "retries of a transient failure before the job is dead-lettered"}
	flagMetricsAddr = envFlag{"metrics-addr", config.EnvMetricsAddr, "listen address of /metrics, /healthz, /readyz (empty: off)"}
	flagLogLevel    = envFlag{"log-level", config.EnvLogLevel, "zap log level"}
	flagAddr        = envFlag{"addr", config.EnvAddr, "listen address of the HTTP API"}
)

// withEnvFlags registers the flags on cmd and returns a loader: the configuration from the
// environment with every flag the user set put over its variable. Validation then names the
// variable, whichever way the value came.
func withEnvFlags(cmd *cobra.Command, flags ...envFlag) func() (config.Config, error) {
	for _, f := range flags {
		cmd.Flags().String(f.name, "", f.usage+" (overrides "+f.env+")")
	}
	return func() (config.Config, error) {
		return config.Load(func(name string) (string, bool) {
			for _, f := range flags {
				if f.env == name && cmd.Flags().Changed(f.name) {
					return cmd.Flags().Lookup(f.name).Value.String(), true
				}
			}
			return os.LookupEnv(name)
		})
	}
}
