package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/ops"
)

// errRedriveFailed is the exit error of a redrive where some dead letters could not be put back.
var errRedriveFailed = errors.New("some dead letters could not be redriven (Redis errors); they are still dead letters: run redrive again")

func newQueueCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue pause|resume|ls",
		Short: "Pause, resume and list queues",
		Long: `A paused queue keeps its jobs in Redis; workers take none until it is resumed (jobs running
at the pause finish). With WABULK_PAUSE_ON=E110,RBC001 the worker pauses the queue itself on those
account-level codes: fix the account, then "wabulk queue resume".`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		newQueueStateCmd("pause", "Stop workers taking jobs of the queue", (*ops.Ops).Pause),
		newQueueStateCmd("resume", "Let workers take jobs of the queue again", (*ops.Ops).Resume),
		newQueueLsCmd(),
	)
	return cmd
}

func newQueueStateCmd(name, short string, act func(*ops.Ops, string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " [QUEUE]",
		Short: short + " (default: WABULK_QUEUE)",
		Args:  cobra.MaximumNArgs(1),
	}
	withOps(cmd, func(cmd *cobra.Command, args []string, o *ops.Ops) error {
		q := o.Queue()
		if len(args) == 1 {
			q = args[0]
		}
		if err := act(o, q); err != nil {
			return err
		}
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "queue %s: %sd\n", q, name)
		return err
	})
	return cmd
}

func newQueueLsCmd() *cobra.Command {
	var asJSON bool
	var fin finishedFlags
	cmd := &cobra.Command{
		Use:   "ls [--all] [--limit N] [--json]",
		Short: "List the namespace's queues with their state and counts",
		Long: `ls lists the namespace (WABULK_QUEUE) summed over the queues listed, then the lanes of every
campaign not finished and of the most recently finished ones (--limit, 10 by default), and says
how many other queues the Redis holds. --all lists every queue on the Redis instead (drained
lanes kept for WABULK_RETENTION, other namespaces), the namespace summed over all of its own.`,
		Example: `  wabulk queue ls
  wabulk queue ls --all --json`,
		Args: cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		n, err := fin.value(cmd)
		if err != nil {
			return err
		}
		list, err := o.Queues(cmd.Context(), n)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), list.Queues)
		}
		if err := writeQueueTable(cmd.OutOrStdout(), list.Queues); err != nil {
			return err
		}
		switch {
		case list.More == 1:
			_, err = fmt.Fprintln(cmd.OutOrStdout(), "(1 more queue on this Redis not listed: --all lists it)")
		case list.More > 1:
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "(%d more queues on this Redis not listed: --all lists them)\n", list.More)
		}
		return err
	})
	cmd.Flags().BoolVar(&fin.all, "all", false, "list every queue on this Redis (costs more with each lane kept)")
	cmd.Flags().IntVar(&fin.limit, "limit", ops.DefaultFinished, "list the lanes of at most this many finished campaigns, the most recently finished (0: as --all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
