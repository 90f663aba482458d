package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/inprocess"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/sandbox"
	"github.com/wabulk/wabulk/internal/termline"
)

// sendFlags are `wabulk send`'s own flags, beyond the campaign and environment ones.
type sendFlags struct {
	embedded, useSandbox, asJSON bool
	logFile                      string
	faults                       []string
	sandbox                      sandbox.Config
}

func newSendCmd() *cobra.Command {
	var (
		cf campaignFlags
		sf sendFlags
	)
	cmd := &cobra.Command{
		Use:   "send [flags] FILE|-",
		Short: "Enqueue a campaign and send it in this process until every job is sent or dead",
		Long: `send enqueues a campaign file as "wabulk enqueue" does (same columns and flags), runs a worker
in this process until every job of the campaign is sent or dead-lettered, and prints a summary:
sent, retried attempts, dead letters by code with example recipients and refs, elapsed time and
the rate achieved. On a terminal a progress line is redrawn in place; otherwise a plain line is
written every few seconds. Ctrl-C stops cleanly and says what is left in Redis.

--embedded-redis runs an in-process Redis instead of WABULK_REDIS_URL. NOTHING SURVIVES THE
PROCESS: jobs, counters and dead letters live in its memory only, and Ctrl-C loses what is left.
--sandbox sends to an in-process fake Kaleyra (no message leaves the machine), with --fault,
--latency, --jitter, --seed and --balance shaping its answers as for "wabulk sandbox".

Logs (one JSON line per attempt) go to stderr, or --log-file; on a terminal with the live
progress line they are cut to warnings unless WABULK_LOG_LEVEL or --log-level says otherwise.
Exit status: 0 the campaign finished (dead letters included), 1 some rows were rejected,
2 nothing could be done, 130 interrupted.`,
		Example: `  wabulk send --campaign spring-sale --type image --media-link https://cdn.example.com/a.jpg list.csv
  wabulk send --campaign catalogue --media-file catalogue.pdf --caption "Our spring catalogue" list.csv
  wabulk send --embedded-redis --sandbox --fault WA500=0.1 --fault E110=0.02 --seed 7 list.csv`,
		Args: cobra.ExactArgs(1),
	}
	load := withEnvFlags(cmd, append([]envFlag{flagMaxRetry}, workerFlags...)...)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := sendConfig(cmd, load, cf, sf, args[0])
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		defer cfg.close()
		res, err := inprocess.Send(cmd.Context(), cfg.SendConfig)
		cfg.progress.done()
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		out := cmd.OutOrStdout()
		if sf.asJSON {
			err = writeJSON(out, res)
		} else {
			fmt.Fprintln(out)
			err = writeSendResult(out, res)
		}
		switch {
		case err != nil:
			return err
		case res.Interrupted:
			return &exitError{code: 130, err: errors.New("interrupted")}
		case res.Enqueue.Rejected > 0:
			return &exitError{code: 1, err: fmt.Errorf("%d rows rejected (see the line N: messages above)", res.Enqueue.Rejected)}
		}
		return nil
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	f := cmd.Flags()
	cf.register(f)
	f.BoolVar(&sf.embedded, "embedded-redis", false, "use an in-process Redis: nothing survives the process")
	f.BoolVar(&sf.useSandbox, "sandbox", false, "send to an in-process fake Kaleyra instead of the real API")
	f.StringArrayVar(&sf.faults, "fault", nil, "with --sandbox: ANSWER=RATE, the probability of an answer per send, repeatable (e.g. WA500=0.05)")
	f.DurationVar(&sf.sandbox.Latency, "latency", 0, "with --sandbox: delay of every answer")
	f.DurationVar(&sf.sandbox.Jitter, "jitter", 0, "with --sandbox: spread the delay over latency ± jitter")
	f.Int64Var(&sf.sandbox.Seed, "seed", 0, "with --sandbox: seed of the fault choice and jitter")
	f.Int64Var(&sf.sandbox.Balance, "balance", -1, "with --sandbox: messages the account can pay for, then E110 (-1 unlimited)")
	f.StringVar(&sf.logFile, "log-file", "", "write the per-attempt JSON log here instead of stderr")
	f.BoolVar(&sf.asJSON, "json", false, "print the summary as JSON")
	return cmd
}

// sendRun is a send's configuration and what to release after it.
type sendRun struct {
	inprocess.SendConfig
	progress *sendProgress
	closers  []func()
}

func (r *sendRun) close() {
	for _, c := range r.closers {
		c()
	}
}

// sendConfig turns flags and environment into inprocess.SendConfig.
func sendConfig(cmd *cobra.Command, load func() (config.Config, error), cf campaignFlags, sf sendFlags, path string) (*sendRun, error) {
	c, err := load()
	if err != nil {
		return nil, err
	}
	run := &sendRun{}
	var sb *sandbox.Config
	if sf.useSandbox {
		// The in-process fake Kaleyra has its own credentials: real ones are neither needed nor sent.
		c.SID, c.APIKey, c.BaseURL = sandbox.DefaultSID, config.Secret(sandbox.DefaultAPIKey), ""
		rates, err := parseFaults(sf.faults)
		if err != nil {
			return nil, err
		}
		sf.sandbox.Rates = rates
		sb = &sf.sandbox
	} else if len(sf.faults) > 0 || cmd.Flags().Changed("latency") || cmd.Flags().Changed("seed") {
		return nil, errors.New("--fault, --latency and --seed shape the fake Kaleyra: add --sandbox")
	}
	// An in-process worker serves metrics only when asked to: the default :9090 would clash with
	// a worker already running on the machine.
	if _, set := os.LookupEnv(config.EnvMetricsAddr); !set && !cmd.Flags().Changed(flagMetricsAddr.name) {
		c.MetricsAddr = ""
	}
	wc, err := workerConfig(c)
	if err != nil {
		return nil, err
	}
	out := cmd.OutOrStdout()
	if sf.asJSON {
		out = cmd.ErrOrStderr() // stdout holds only the JSON summary
	}
	live := termline.IsTerminal(out)
	var logW io.Writer = cmd.ErrOrStderr()
	level := c.LogLevel
	if sf.logFile != "" {
		f, err := os.OpenFile(sf.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--log-file: %w", err)
		}
		run.closers = append(run.closers, func() { f.Close() })
		logW = f
	} else if _, set := os.LookupEnv(config.EnvLogLevel); live && termline.IsTerminal(logW) && !set && !cmd.Flags().Changed(flagLogLevel.name) {
		level = "warn"
	}
	log, err := logging.New(level, logW)
	if err != nil {
		return nil, err
	}
	var file *media.File
	if cf.mediaFile != "" {
		// Checked before anything starts: a file WhatsApp refuses stops here.
		if file, err = media.Open(cf.mediaFile, ""); err != nil {
			run.close()
			return nil, err
		}
	}
	campaign, in, _, closeFile, err := cf.open(path)
	if err != nil {
		run.close()
		return nil, err
	}
	run.closers = append(run.closers, closeFile, func() { log.Sync() })
	run.progress = newSendProgress(out, live, 2*time.Second)
	run.SendConfig = inprocess.SendConfig{
		Campaign:      campaign,
		Rows:          cf.rows(in),
		Options:       cf.options(),
		MediaFile:     file,
		Producer:      producerConfig(c),
		Worker:        wc,
		EmbeddedRedis: sf.embedded,
		Sandbox:       sb,
		RedisName:     redisName(c),
		Out:           out,
		Err:           cmd.ErrOrStderr(),
		Progress:      run.progress.update,
		Log:           log,
	}
	return run, nil
}
