package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/metrics"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// wabulk_build_info carries the same version.
func init() { metrics.Version = version }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print wabulk's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version
			if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			fmt.Fprintln(cmd.OutOrStdout(), "wabulk", v)
			return nil
		},
	}
}
