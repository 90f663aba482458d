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
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List every campaign with its state, counts, priority, times, rate and ETA",
		Args:  cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		cs, err := o.ListCampaigns(cmd.Context())
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), cs)
		}
		return writeCampaigns(cmd.OutOrStdout(), cs)
	})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// writeCampaigns writes one row per campaign.
func writeCampaigns(w io.Writer, cs []store.CampaignInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CAMPAIGN\tSTATE\tPRIORITY\tENQUEUED\tSENT\tDEAD\tCANCELLED\tLEFT\tSTARTED\tFINISHED\tRATE/S\tETA")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", printable(c.Campaign), c.State, c.Priority,
			c.Enqueued, c.Completed, c.Dead, c.Cancelled, c.Pending+c.Active+c.Retry, startText(c), clock(c.FinishedAt),
			strconv.FormatFloat(c.Rate, 'f', 1, 64), etaText(c.ETASeconds))
	}
	if len(cs) == 0 {
		fmt.Fprintln(tw, "(no campaigns)")
	}
	return tw.Flush()
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
