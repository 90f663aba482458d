package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/demo"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/termline"
)

func newDemoCmd() *cobra.Command {
	var logFile string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Send a bundled sample campaign through an in-process Redis and a fake Kaleyra",
		Long: `demo is "wabulk send --embedded-redis --sandbox" on a sample campaign built into the binary:
200 recipients in six countries, images, documents, videos, audio and stickers, each with refs. The
fake Kaleyra answers about one send in eight with WA500 (retried until it goes through) and a few
with E110 or WA400 (dead letters), always the same for its fixed seed. It needs nothing but this
binary and ends in seconds, with the summary and the commands that do the same against a real Redis
and Kaleyra. Nothing survives the process: the Redis lives in its memory.`,
		Example: `  go run ./cmd/wabulk demo
  wabulk demo --log-file demo.log   # keep the per-attempt JSON log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := demo.Options{Out: cmd.OutOrStdout(), Live: termline.IsTerminal(cmd.OutOrStdout())}
			if logFile != "" {
				f, err := os.Create(logFile)
				if err != nil {
					return fmt.Errorf("--log-file: %w", err)
				}
				defer f.Close()
				if o.Log, err = logging.New("info", io.Writer(f)); err != nil {
					return err
				}
			}
			res, err := demo.Run(cmd.Context(), o)
			if err == nil && res.Interrupted {
				return &exitError{code: 130, err: fmt.Errorf("interrupted")}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&logFile, "log-file", "", "write the worker's per-attempt JSON log to this file")
	return cmd
}
