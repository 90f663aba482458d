package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/store"
)

func newMigrateCmd() *cobra.Command {
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "migrate [--dry-run] [--json]",
		Short: "Move what the legacy single queue still holds into the lanes, once, before upgrading workers",
		Long: `Versions before this one served, beside the lanes, one legacy asynq queue named after the
namespace (WABULK_QUEUE), the "single queue", and kept its jobs' records apart. This version's
workers no longer serve it: run migrate once, after stopping the old workers and before starting
the new ones, so nothing left there is lost or sent twice.

migrate moves every task of the single queue (pending, scheduled, retry, archived, completed)
into its lane, named from the task's payload (campaign and sender), under its TaskID with its
retry count; a task whose payload does not decode becomes a dead letter of the campaign
` + store.PoisonCampaign + `. It moves the single queue's ledger records into the lanes' too: the
counts, the dead letters with their codes, and the sent markers, so a campaign enqueued again
still finds its sent jobs as duplicates. Then it deletes the single queue and those records.

It refuses while an old worker serves the single queue or one of its tasks is being sent: stop
the old workers (or wait for those tasks), then run it again. Running it again is harmless: a
migration cut short is finished, and one that is done finds nothing to do. --dry-run reads only
and prints what migrate would do.`,
		Example: `  wabulk migrate --dry-run
  wabulk migrate`,
		Args: cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		rep, err := o.Migrate(cmd.Context(), dryRun)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), rep)
		}
		return writeMigrate(cmd.OutOrStdout(), o.Queue(), rep)
	})
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be moved and deleted, change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// writeMigrate prints what migrate did (or, in a dry run, would do).
func writeMigrate(w io.Writer, queue string, r *store.MigrateReport) error {
	if r.Empty() {
		_, err := fmt.Fprintf(w, "nothing to migrate: the single queue %s holds no task and no record\n", printable(queue))
		return err
	}
	verb := func(done, would string) string {
		if r.DryRun {
			return would
		}
		return done
	}
	var b strings.Builder
	if r.DryRun {
		b.WriteString("dry run: nothing changed\n")
	}
	tasks, parts := 0, []string{}
	for _, st := range []string{"pending", "scheduled", "retry", "archived", "completed"} {
		if n := r.Tasks[st]; n > 0 {
			tasks += n
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	fmt.Fprintf(&b, "tasks %s into their lanes: %d", verb("moved", "to move"), tasks)
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "undecodable tasks %s to the dead letters of %s: %d\n", verb("moved", "to move"), store.PoisonCampaign, r.Poison)
	fmt.Fprintf(&b, "sent markers %s: %d\ndead letters %s: %d\nmessage mappings %s: %d\n",
		verb("moved", "to move"), r.Sent, verb("moved", "to move"), r.Dead, verb("rewritten", "to rewrite"), r.Mappings)
	fmt.Fprintf(&b, "campaigns: %d, lanes: %d\n", len(r.Campaigns), len(r.Lanes))
	for _, ln := range r.Lanes {
		c := r.Counts[ln]
		fmt.Fprintf(&b, "  %s:", printable(ln))
		for _, f := range slices.Sorted(maps.Keys(c)) {
			fmt.Fprintf(&b, " %s %+d", f, c[f])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "keys of the single queue %s and its records %s: %d\n", printable(queue), verb("deleted", "to delete"), r.Keys)
	_, err := io.WriteString(w, b.String())
	return err
}
