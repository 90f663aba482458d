package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/ops"
)

func newStatusCmd() *cobra.Command {
	var v statusView
	var fin finishedFlags
	cmd := &cobra.Command{
		Use:   "status [--campaign ID] [--all] [--limit N] [--watch] [--json]",
		Short: "Job counts by state, per queue and per campaign, with dead letters by code",
		Long: `status shows the queue's tasks by state as asynq counts them (pending, scheduled, retry,
active, completed, dead = archived) and, per campaign, wabulk's own counters: enqueued, pending,
active, retry, completed (Kaleyra accepted the message), dead and dead letters by Kaleyra
code. Campaign counts are counters kept as jobs change state, so status costs the same for ten
jobs or ten million. Without --campaign it shows every campaign not finished and the most
recently finished ones (--limit, 10 by default; --all for every one kept for WABULK_RETENTION),
says how many finished campaigns it leaves out, and sums the queue counts over the lanes of the
campaigns shown: its cost follows the campaigns running, not those kept.`,
		Example: `  wabulk status
  wabulk status --campaign spring-sale --watch
  wabulk status --all --limit 50
  wabulk status --json | jq '.campaigns[] | {campaign, completed, dead}'`,
		Args: cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		var err error
		if v.Finished, err = fin.value(cmd); err != nil {
			return err
		}
		return showStatus(cmd.Context(), o, cmd.OutOrStdout(), v)
	})
	fin.register(cmd, "counts")
	f := cmd.Flags()
	f.StringVar(&v.Campaign, "campaign", "", "show this campaign only")
	f.BoolVar(&v.Watch, "watch", false, "redraw every --interval until every campaign shown is finished (exit 0) or Ctrl-C")
	f.DurationVar(&v.Interval, "interval", 2*time.Second, "time between redraws with --watch")
	f.BoolVar(&v.JSON, "json", false, "print JSON (one object per line with --watch)")
	return cmd
}

// withOps registers the flags that say which queue to operate on and sets cmd's RunE to run with
// an Ops on it: the environment's configuration with those flags over it.
func withOps(cmd *cobra.Command, run func(cmd *cobra.Command, args []string, o *ops.Ops) error, extra ...envFlag) {
	load := withEnvFlags(cmd, append([]envFlag{flagRedisURL, flagQueue, flagLogPII}, extra...)...)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		o, _, err := openOps(load)
		if err != nil {
			return err
		}
		defer o.Close()
		return run(cmd, args, o)
	}
}
