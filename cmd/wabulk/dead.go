package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newDeadCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "dead",
		Short:  "not built yet",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("dead: not built yet") },
	}
}
