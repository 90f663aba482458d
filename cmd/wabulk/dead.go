package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/ops"
)

func newDeadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead list|redrive|purge",
		Short: "Inspect dead letters and put them back in the queue",
		Long: `Dead letters are jobs Kaleyra refused for good (E110 low balance, WA400 bad payload, …) or
that ran out of retries. wabulk keeps a durable record of each (recipient, code, message, refs,
payload) that nothing trims, beside asynq's archive (which keeps at most 10,000 per queue). A
campaign that holds dead letters keeps its record until they are redriven or purged.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newDeadListCmd(), newDeadRedriveCmd(), newDeadPurgeCmd())
	return cmd
}

func newDeadPurgeCmd() *cobra.Command {
	var campaign string
	cmd := &cobra.Command{
		Use:   "purge --campaign ID",
		Short: "Delete a campaign's dead letters for good (they can no longer be redriven)",
		Long: `purge deletes the campaign's dead-letter records and asynq's archived tasks of them. The
campaign's dead count stays; once nothing else of it is left, its record expires after
WABULK_RETENTION like any finished campaign's.`,
		Example: "  wabulk dead purge --campaign spring-sale",
		Args:    cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		if campaign == "" {
			return errors.New("purge needs --campaign: dead letters are purged one campaign at a time, on purpose")
		}
		n, err := o.PurgeDead(cmd.Context(), campaign)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "campaign %s: %d dead letters purged\n", printable(campaign), n)
		return err
	})
	cmd.Flags().StringVar(&campaign, "campaign", "", "the campaign whose dead letters to delete (required)")
	return cmd
}

func newDeadListCmd() *cobra.Command {
	var (
		f      ops.DeadFilter
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [--campaign ID] [--code CODE] [--limit N] [--json]",
		Short: "List dead letters, newest first: recipient (masked), code, message, refs, time",
		Long: `list prints dead letters, newest first. Recipients are masked (+91******7890) unless
` + config.EnvLogPII + `=full.`,
		Example: `  wabulk dead list --campaign spring-sale --code E110
  wabulk dead list --limit 0 --json > dead.json`,
		Args: cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		ds, err := o.DeadLetters(cmd.Context(), f)
		if err != nil {
			return err
		}
		if asJSON {
			if ds == nil {
				ds = []ops.DeadEntry{}
			}
			return writeJSON(cmd.OutOrStdout(), ds)
		}
		return writeDead(cmd.OutOrStdout(), ds)
	})
	fl := cmd.Flags()
	fl.StringVar(&f.Campaign, "campaign", "", "this campaign only (default: every campaign)")
	fl.StringVar(&f.Code, "code", "", "this Kaleyra code only (E110, WA400, …; any case)")
	fl.IntVar(&f.Limit, "limit", 50, "at most this many, newest first (0: all)")
	fl.BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func newDeadRedriveCmd() *cobra.Command {
	var (
		f      ops.DeadFilter
		dryRun bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "redrive [--campaign ID] [--code CODE] [--dry-run]",
		Short: "Put dead letters back in the queue with a fresh retry budget",
		Long: `redrive enqueues each matching dead letter again under its own TaskID with a fresh retry
budget (` + config.EnvMaxRetry + `), then removes its record. A job Kaleyra already accepted (it has a
sent marker) is never sent again. Run it after fixing the cause, e.g. every E110 after a top-up.`,
		Example: `  wabulk dead redrive --campaign spring-sale --code E110 --dry-run
  wabulk dead redrive --campaign spring-sale --code E110`,
		Args: cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		rep, err := o.Redrive(cmd.Context(), f, dryRun)
		if errors.Is(err, ops.ErrUnknownCampaign) {
			return err // not "matched 0": the campaign is not there at all
		}
		if asJSON {
			if jerr := writeJSON(cmd.OutOrStdout(), rep); jerr != nil {
				return jerr
			}
		} else if werr := writeRedrive(cmd.OutOrStdout(), rep); werr != nil {
			return werr
		}
		if err == nil && rep.Failed > 0 {
			return &exitError{code: 1, err: errRedriveFailed}
		}
		return err
	}, flagMaxRetry, flagRetention)
	fl := cmd.Flags()
	fl.StringVar(&f.Campaign, "campaign", "", "this campaign only (default: every campaign)")
	fl.StringVar(&f.Code, "code", "", "this Kaleyra code only (E110, WA400, …; any case)")
	fl.BoolVar(&dryRun, "dry-run", false, "count what would be redriven; change nothing")
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
