package main

import (
	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/worker"
)

func newWorkerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Send the queue's jobs through Kaleyra until SIGTERM/SIGINT, then finish in-flight jobs and exit 0",
		Long: `worker serves WABULK_QUEUE: each job waits for its sender's turn under the rate limit that all
workers on the same Redis share (WABULK_RATE, WABULK_BURST), is sent through Kaleyra, and is
completed, retried with backoff (WA500, 5xx, 429, network errors) or dead-lettered (E110, WA400,
RBC001, WA401, WA-401, WAV2101, other 4xx). Needs KALEYRA_SID and KALEYRA_API_KEY (or
KALEYRA_API_KEY_FILE); KALEYRA_FROM is the sender of jobs that name none.`,
		Args: cobra.NoArgs,
	}
	// No --max-retry: a job's retry budget is fixed when it is enqueued (enqueue, send, serve).
	load := withEnvFlags(cmd, workerFlags...)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load()
		if err != nil {
			return err
		}
		cfg, err := workerConfig(c)
		if err != nil {
			return err
		}
		log, err := logging.New(c.LogLevel, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		defer log.Sync()
		return worker.Run(cmd.Context(), cfg, log)
	}
	return cmd
}
