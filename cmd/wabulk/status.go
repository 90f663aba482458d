package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/ops"
)

func newStatusCmd() *cobra.Command {
	var v ops.StatusView
	cmd := &cobra.Command{
		Use:   "status [--campaign ID] [--watch] [--json]",
		Short: "Job counts by state, per queue and per campaign, with dead letters by code",
		Long: `status shows the queue's tasks by state as asynq counts them (pending, scheduled, retry,
active, completed, dead = archived) and, per campaign, wabulk's own counters: enqueued, pending,
active, retry, sent, dead and dead letters by Kaleyra code. Campaign counts are counters kept as
jobs change state, so status costs the same for ten jobs or ten million.`,
		Example: `  wabulk status
  wabulk status --campaign spring-sale --watch
  wabulk status --json | jq '.campaigns[] | {campaign, completed, dead}'`,
		Args: cobra.NoArgs,
	}
	open := opsOpener(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o, err := open()
		if err != nil {
			return err
		}
		defer o.Close()
		return o.ShowStatus(cmd.Context(), cmd.OutOrStdout(), v)
	}
	f := cmd.Flags()
	f.StringVar(&v.Campaign, "campaign", "", "show this campaign only")
	f.BoolVar(&v.Watch, "watch", false, "redraw every --interval until Ctrl-C")
	f.DurationVar(&v.Interval, "interval", 2*time.Second, "time between redraws with --watch")
	f.BoolVar(&v.JSON, "json", false, "print JSON (one object per line with --watch)")
	return cmd
}

// opsOpener registers the flags that say which queue to operate on and returns what opens it:
// the environment's configuration with those flags over it.
func opsOpener(cmd *cobra.Command, extra ...envFlag) func() (*ops.Ops, error) {
	load := withEnvFlags(cmd, append([]envFlag{flagRedisURL, flagQueue}, extra...)...)
	return func() (*ops.Ops, error) {
		c, err := load()
		if err != nil {
			return nil, err
		}
		oc, err := ops.ConfigFrom(c)
		if err != nil {
			return nil, err
		}
		return ops.New(oc)
	}
}
