package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/inprocess"
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
			out := cmd.OutOrStdout()
			o := inprocess.DemoOptions{Out: out}
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
			sb := inprocess.DemoSandbox()
			fmt.Fprintf(out, "wabulk demo: %s, %d recipients, through an in-process Redis and a fake Kaleyra\n"+
				"(faults: %s; seed %d)\n\n", inprocess.DemoCampaign, inprocess.DemoRecipients, ratesText(sb.Rates), sb.Seed)
			prog := newSendProgress(out, termline.IsTerminal(out), 0)
			o.Progress = prog.update
			res, err := inprocess.Demo(cmd.Context(), o)
			prog.done()
			if err != nil {
				return err
			}
			fmt.Fprintln(out)
			if err := writeSendResult(out, res); err != nil {
				return err
			}
			if _, err := io.WriteString(out, inprocess.DemoNextSteps); err != nil {
				return err
			}
			if res.Interrupted {
				return &exitError{code: 130, err: fmt.Errorf("interrupted")}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&logFile, "log-file", "", "write the worker's per-attempt JSON log to this file")
	return cmd
}
