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
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List the queues on this Redis with their state and counts",
		Args:  cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		qs, err := o.Queues()
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), qs)
		}
		return writeQueueTable(cmd.OutOrStdout(), qs)
	})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
