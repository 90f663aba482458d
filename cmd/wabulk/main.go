// Command wabulk sends WhatsApp media messages in bulk through Kaleyra: enqueue campaigns, run
// rate-limited workers, watch and repair what failed. Subcommands only parse flags and the
// environment, then call one function of a package.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

// exitError carries a specific exit status out of a subcommand (enqueue's 1 and 2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wabulk",
		Short: "Send WhatsApp media messages in bulk through Kaleyra, rate-limited, retried, dead-lettered",
		Long: `wabulk turns each recipient of a campaign into a job in Redis (asynq); worker processes send
them at the rate WhatsApp allows, retry what is transient, dead-letter what is not, and log every
outcome with the campaign's ref fields. Configuration comes from WABULK_* and KALEYRA_* environment
variables (docs/configuration.md); flags of the same meaning override them.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// go-redis logs every failed dial on stderr in its own format (~8 "pool.go" lines before
		// a command's one message when Redis is down); each command's error already names the
		// cause. The worker keeps them: a long-running process's only trace of a flapping Redis.
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			for cmd.HasParent() && cmd.Parent().HasParent() {
				cmd = cmd.Parent()
			}
			if cmd.Name() != "worker" {
				redis.SetLogger(quietLogger{})
			}
		},
	}
	root.AddCommand(
		newWorkerCmd(),
		newEnqueueCmd(),
		newMediaCmd(),
		newStatusCmd(),
		newDeadCmd(),
		newReportCmd(),
		newSuppressCmd(),
		newQueueCmd(),
		newCampaignCmd(),
		newSenderCmd(),
		newServeCmd(),
		newSandboxCmd(),
		newSendCmd(),
		newDemoCmd(),
		newMigrateCmd(),
		newVersionCmd(),
	)
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wabulk:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(2)
	}
}
