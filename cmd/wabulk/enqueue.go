package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newEnqueueCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "enqueue",
		Short:  "not built yet",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("enqueue: not built yet") },
	}
}
