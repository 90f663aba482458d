package main

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/internal/store"
)

// negativeArg finds a negative number that cobra took for a shorthand flag.
var negativeArg = regexp.MustCompile(`in (-[0-9][0-9.eE+-]*)$`)

func newSenderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sender rate|ls",
		Short: "Per-sender send rates, changed while workers run, and what each sender is doing",
		Long: `Every sender sends at WABULK_RATE (burst WABULK_BURST) unless it has a rate of its own.
"wabulk sender rate" sets or removes one in Redis; every worker follows within 5 seconds, without
a restart, and the limit stays shared by all workers.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSenderRateCmd(), newSenderLsCmd())
	return cmd
}

// usageError is an exit-2 error: the command line is wrong, nothing was changed.
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// parseSenderRate reads the rate argument: "default" (any case) clears the override.
func parseSenderRate(arg string) (rate float64, clear bool, err error) {
	if strings.EqualFold(strings.TrimSpace(arg), "default") {
		return 0, true, nil
	}
	r, perr := strconv.ParseFloat(strings.TrimSpace(arg), 64)
	if perr != nil || math.IsNaN(r) || math.IsInf(r, 0) || r <= 0 || r > ratelimit.MaxRate {
		return 0, false, fmt.Errorf("rate %q: want messages per second, a number > 0 and at most %g, or \"default\"",
			arg, float64(ratelimit.MaxRate))
	}
	return r, false, nil
}

func newSenderRateCmd() *cobra.Command {
	var (
		burst int
		reset bool
	)
	cmd := &cobra.Command{
		Use:   "rate NUMBER MSGS_PER_S|default [--burst N] | rate NUMBER --reset",
		Short: "Set one sender's rate for every worker, or put it back on the default",
		Long: `rate stores NUMBER's own rate in Redis; running workers follow within 5 seconds. Its burst is
ceil(rate/10), at least 1, unless --burst is given. "default" or --reset removes the override, so
the sender goes back to WABULK_RATE and WABULK_BURST. Exit status 2: bad arguments, nothing changed.`,
		Example: `  wabulk sender rate +919876543210 20
  wabulk sender rate +919876543210 200 --burst 5
  wabulk sender rate +919876543210 default`,
		Args: cobra.RangeArgs(1, 2),
	}
	load := withEnvFlags(cmd, flagRedisURL, flagQueue)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		// Every argument is checked before Redis is touched: a bad one changes nothing.
		number, err := store.SenderDigits(args[0])
		if err != nil {
			return usageError("%v", err)
		}
		var rate float64
		clear := reset
		switch {
		case reset && len(args) == 2:
			return usageError("give a rate or --reset, not both")
		case !reset && len(args) == 1:
			return usageError("give the rate in messages per second, or \"default\" (or --reset) to remove the override")
		case !reset:
			if rate, clear, err = parseSenderRate(args[1]); err != nil {
				return usageError("%v", err)
			}
		}
		if cmd.Flags().Changed("burst") {
			if clear {
				return usageError("--burst goes with a rate, not with default or --reset")
			}
			if burst < 1 || burst > ratelimit.MaxBurst {
				return usageError("--burst must be 1 to %d, got %d", ratelimit.MaxBurst, burst)
			}
		} else {
			burst = 0 // ceil(rate/10): the limiter derives it
		}

		o, _, err := openOps(load)
		if err != nil {
			return err
		}
		defer o.Close()
		out := cmd.OutOrStdout()
		if clear {
			n, err := o.ClearSenderRate(cmd.Context(), number)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			_, err = fmt.Fprintf(out, "sender %s: back to the default rate (workers follow within 5 s)\n", n)
			return err
		}
		n, err := o.SetSenderRate(cmd.Context(), number, rate, burst)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		shown := burst
		if shown == 0 {
			shown = ratelimit.DefaultBurst(rate)
		}
		_, err = fmt.Fprintf(out, "sender %s: %s messages/s, burst %d (workers follow within 5 s)\n",
			n, strconv.FormatFloat(rate, 'g', -1, 64), shown)
		return err
	}
	// A negative rate reaches cobra as an unknown shorthand flag ("-5"): say what is wrong with
	// it rather than "unknown shorthand flag: '5'".
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		if m := negativeArg.FindStringSubmatch(err.Error()); m != nil {
			_, _, perr := parseSenderRate(m[1])
			return usageError("%v", perr)
		}
		return &exitError{code: 2, err: err}
	})
	cmd.Flags().IntVar(&burst, "burst", 0, "sends the limiter may let through at once (default ceil(rate/10), at least 1)")
	cmd.Flags().BoolVar(&reset, "reset", false, "remove the override: the sender goes back to the default rate")
	return cmd
}

func newSenderLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List senders: rate (default or override), burst, backlog, sends in the last minute",
		Long: `ls lists every sender that has an override, jobs not finished yet, or sends in the last
minute. A sender without an override shows the default the workers published while sending (in
the last hour), or else WABULK_RATE and WABULK_BURST of this environment.`,
		Args: cobra.NoArgs,
	}
	load := withEnvFlags(cmd, flagRedisURL, flagQueue, flagRate, flagBurst)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o, c, err := openOps(load)
		if err != nil {
			return err
		}
		defer o.Close()
		ss, err := o.Senders(cmd.Context(), ops.SenderDefaults{Rate: c.Rate, Burst: c.Burst, From: c.From})
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), ss)
		}
		return writeSenders(cmd.OutOrStdout(), ss)
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// openOps is withOps's setup, for commands that also need the configuration: the environment
// with the flags over it, and an Ops on its queue. Configuration errors exit 2.
func openOps(load func() (config.Config, error)) (*ops.Ops, config.Config, error) {
	c, err := load()
	if err != nil {
		return nil, c, &exitError{code: 2, err: err}
	}
	oc, err := opsConfig(c)
	if err != nil {
		return nil, c, &exitError{code: 2, err: err}
	}
	o, err := ops.New(oc)
	if err != nil {
		return nil, c, &exitError{code: 2, err: err}
	}
	return o, c, nil
}
