package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newSandboxCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "sandbox",
		Short:  "not built yet",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("sandbox: not built yet") },
	}
}
