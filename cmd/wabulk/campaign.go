package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/store"
)

func newCampaignCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "campaign ls|pause|resume|cancel",
		Short: "List campaigns; pause, resume or cancel one",
		Long: `A campaign is scheduled (waiting for its --at time), running, paused, cancelled or done.
pause stops its sends within one in-flight round (calls already made finish) and holds no worker
slot while paused; resume continues it; cancel ends it for good: what is left of it is never sent
and counts as cancelled, and a later enqueue into it is refused. All three can be repeated
(exit 0, saying so), hold across worker restarts, and refuse an unknown campaign (exit 2). Pausing
every busy lane of a campaign in asynqmon is the same as pause.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCampaignLsCmd(),
		newCampaignActCmd("pause", "Stop a campaign's sends until it is resumed", "paused", "was paused already", (*ops.Ops).PauseCampaign),
		newCampaignActCmd("resume", "Let a paused campaign send again", "resumed", "was not paused", (*ops.Ops).ResumeCampaign),
		newCampaignActCmd("cancel", "End a campaign: what is left of it is never sent", "cancelled", "was cancelled already", (*ops.Ops).CancelCampaign),
	)
	return cmd
}

func newCampaignActCmd(name, short, done, repeat string, act func(*ops.Ops, context.Context, string) (bool, error)) *cobra.Command {
	cmd := &cobra.Command{
		Use:     name + " ID",
		Short:   short,
		Example: "  wabulk campaign " + name + " spring-sale",
		Args:    cobra.ExactArgs(1),
	}
	withOps(cmd, func(cmd *cobra.Command, args []string, o *ops.Ops) error {
		changed, err := act(o, cmd.Context(), args[0])
		if err != nil {
			return err
		}
		msg := done
		if !changed {
			msg = repeat
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "campaign %s: %s\n", printable(args[0]), msg)
		return err
	})
	return cmd
}

func newCampaignLsCmd() *cobra.Command {
	var asJSON bool
	var fin finishedFlags
	cmd := &cobra.Command{
		Use:   "ls [--all] [--limit N] [--json]",
		Short: "List the campaigns with their state, counts, priority, times, rate and ETA",
		Long: `ls lists every campaign not finished and the most recently finished ones (--limit, 10 by
default; --all for every one kept for WABULK_RETENTION), sorted by id, and says how many finished
campaigns it leaves out.`,
		Example: `  wabulk campaign ls
  wabulk campaign ls --all --limit 100`,
		Args: cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		n, err := fin.value(cmd)
		if err != nil {
			return err
		}
		list, err := o.ListCampaigns(cmd.Context(), n)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), list.Campaigns)
		}
		return writeCampaigns(cmd.OutOrStdout(), list.Campaigns, list.Unlisted)
	})
	fin.register(cmd, "campaigns")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// finishedFlags are --all and --limit: how many finished campaigns a view lists beside the
// active ones.
type finishedFlags struct {
	all   bool
	limit int
}

func (f *finishedFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&f.all, "all", false, "list the "+what+" of every finished campaign too, up to --limit when given (costs more with each one kept)")
	cmd.Flags().IntVar(&f.limit, "limit", ops.DefaultFinished, "list the "+what+" of at most this many finished campaigns, the most recently finished (0: every one)")
}

// value is the number of finished campaigns to list, as ops.View.Finished takes it.
func (f *finishedFlags) value(cmd *cobra.Command) (int, error) {
	switch {
	case f.limit < 0:
		return 0, usageError("--limit %d: want 0 (every one) or more", f.limit)
	case cmd.Flags().Changed("limit") && f.limit > 0:
		return f.limit, nil
	case f.all || f.limit == 0:
		return -1, nil
	}
	return f.limit, nil
}

// writeCampaigns writes one row per campaign, then how many finished campaigns it left out.
func writeCampaigns(w io.Writer, cs []store.CampaignInfo, unlisted int64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CAMPAIGN\tSTATE\tPRIORITY\tENQUEUED\tSENT\tDEAD\tCANCELLED\tLEFT\tSTARTED\tFINISHED\tRATE/S\tETA")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", printable(c.Campaign), c.State, c.Priority,
			c.Enqueued, c.Completed, c.Dead, c.Cancelled, c.Pending+c.Active+c.Retry, startText(c), clock(c.FinishedAt),
			strconv.FormatFloat(c.Rate, 'f', 1, 64), etaText(c.ETASeconds))
	}
	if len(cs) == 0 && unlisted == 0 {
		fmt.Fprintln(tw, "(no campaigns)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeUnlisted(w, unlisted)
}

// writeUnlisted says how many finished campaigns a view left out, if any.
func writeUnlisted(w io.Writer, n int64) error {
	if n == 0 {
		return nil
	}
	if n == 1 {
		_, err := fmt.Fprintln(w, "(1 more finished campaign not listed: --all, or --limit N, lists it)")
		return err
	}
	_, err := fmt.Fprintf(w, "(%d more finished campaigns not listed: --all, or --limit N, lists them)\n", n)
	return err
}

// startText is when the campaign started, or when it will for a scheduled one.
func startText(c store.CampaignInfo) string {
	if c.State == store.StateScheduled && c.SendAt != nil {
		return "at " + clock(c.SendAt)
	}
	return clock(c.StartedAt)
}

func clock(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func etaText(s *float64) string {
	if s == nil {
		return "-"
	}
	return (time.Duration(*s) * time.Second).Round(time.Second).String()
}
