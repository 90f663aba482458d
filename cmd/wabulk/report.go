package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

func newReportCmd() *cobra.Command {
	var campaign, out string
	cmd := &cobra.Command{
		Use:   "report --campaign ID [--out FILE]",
		Short: "Write a campaign's per-recipient delivery report as CSV",
		Long: `report writes one CSV row per recipient of the campaign:

  to,state,code,message_id,ref,ref1,ref2,updated_at

state is pending (waiting, being sent or retrying), accepted (Kaleyra accepted it, no verdict from
WhatsApp yet), delivered, read, failed (WhatsApp refused it afterwards; code is Meta's, e.g. 131047
outside the 24-hour window), not_sent, dead (code is the dead letter's), cancelled (taken off the
queue by wabulk campaign cancel, or refused by a worker after it), or suppressed (skipped at
enqueue: on the suppression list). Records past WABULK_RETENTION are no longer held and are not
listed. updated_at is the time of the status WhatsApp reported (of the cancel for cancelled).
The report streams: a campaign of millions is written in flat memory. Numbers are written in
full: the file is for the campaign's owner.`,
		Example: `  wabulk report --campaign spring-sale --out spring-sale.csv
  wabulk report --campaign spring-sale | grep ',failed,131047,'`,
		Args: cobra.NoArgs,
	}
	withOps(cmd, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		if err := job.ValidCampaign(campaign); err != nil {
			return &exitError{code: 2, err: err}
		}
		var w io.Writer = cmd.OutOrStdout()
		var f *os.File
		if out != "" && out != "-" {
			var err error
			if f, err = os.Create(out); err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		n, err := o.WriteReport(cmd.Context(), campaign, bw)
		if err == nil {
			err = bw.Flush()
		}
		if err == nil && f != nil {
			err = f.Close()
		}
		if err != nil {
			return err
		}
		if f != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "campaign %s: %d recipients written to %s\n", printable(campaign), n, out)
		}
		return nil
	})
	cmd.Flags().StringVar(&campaign, "campaign", "", "the campaign to report (required)")
	cmd.Flags().StringVar(&out, "out", "", "write the CSV to FILE instead of standard output")
	return cmd
}

func newSuppressCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "suppress add|rm|ls|import",
		Short: "Manage the suppression list: numbers no campaign sends to",
		Long: `The suppression list holds numbers no campaign of the namespace sends to, whatever the sender:
an enqueue skips them and counts them as suppressed. With WABULK_SUPPRESS_ON=131026,131050, wabulk
serve adds the recipient of a status callback that failed with one of those Meta codes.`,
		Args: cobra.NoArgs,
	}
	add := &cobra.Command{Use: "add NUMBER...", Short: "Add numbers (E.164) to the list", Args: cobra.MinimumNArgs(1)}
	withOps(add, func(cmd *cobra.Command, args []string, o *ops.Ops) error {
		nums, err := suppressNumbers(args)
		if err != nil {
			return err
		}
		n, err := o.Suppress(cmd.Context(), nums, "cli")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d added, %d already listed\n", n, int64(len(nums))-n)
		return err
	})
	rm := &cobra.Command{Use: "rm NUMBER...", Short: "Take numbers off the list", Args: cobra.MinimumNArgs(1)}
	withOps(rm, func(cmd *cobra.Command, args []string, o *ops.Ops) error {
		nums, err := suppressNumbers(args)
		if err != nil {
			return err
		}
		n, err := o.Unsuppress(cmd.Context(), nums)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d removed\n", n)
		return err
	})
	ls := &cobra.Command{Use: "ls", Short: "List the numbers on the list as CSV: number,source,since", Args: cobra.NoArgs}
	withOps(ls, func(cmd *cobra.Command, _ []string, o *ops.Ops) error {
		w := bufio.NewWriter(cmd.OutOrStdout())
		fmt.Fprintln(w, "number,source,since")
		err := o.EachSuppressed(cmd.Context(), func(s store.Suppression) error {
			_, err := fmt.Fprintf(w, "%s,%s,%s\n", s.Number, s.Source, s.Since.Format("2006-01-02T15:04:05Z"))
			return err
		})
		if err != nil {
			return err
		}
		return w.Flush()
	})
	imp := &cobra.Command{Use: "import FILE", Short: "Add every number of FILE (one per line, or the first CSV column; '-' reads stdin)", Args: cobra.ExactArgs(1)}
	withOps(imp, func(cmd *cobra.Command, args []string, o *ops.Ops) error {
		var r io.Reader = cmd.InOrStdin()
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		added, total, err := importSuppressions(cmd, o, r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d numbers read, %d added\n", total, added)
		return err
	})
	cmd.AddCommand(add, rm, ls, imp)
	return cmd
}

// MaxSuppressLine caps one line of an import file.
const maxSuppressLine = 4096

// importSuppressions reads numbers from r, one per line or the first comma-separated column;
// blank lines, a "number"/"to" header and '#' comments are skipped. The whole file is read and
// checked first: a line that is not a valid number (or is over maxSuppressLine bytes) is an error
// naming it, and nothing is added. Then the numbers are added 1,000 per call.
func importSuppressions(cmd *cobra.Command, o *ops.Ops, r io.Reader) (added, total int64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxSuppressLine)
	var numbers []string
	line := 0
	for sc.Scan() {
		line++
		cell, _, _ := strings.Cut(sc.Text(), ",")
		cell = strings.Trim(strings.TrimSpace(cell), `"`)
		if cell == "" || strings.HasPrefix(cell, "#") || (line == 1 && (strings.EqualFold(cell, "number") || strings.EqualFold(cell, "to"))) {
			continue
		}
		n, err := job.NormalizeNumber(cell)
		if err != nil {
			return 0, 0, fmt.Errorf("line %d: %w (nothing imported)", line, err)
		}
		numbers = append(numbers, n)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return 0, 0, fmt.Errorf("line %d is over %d bytes (nothing imported)", line+1, maxSuppressLine)
		}
		return 0, 0, err
	}
	for batch := range slices.Chunk(numbers, 1000) {
		n, err := o.Suppress(cmd.Context(), batch, "import")
		added += n
		if err != nil {
			return added, int64(len(numbers)), err
		}
	}
	return added, int64(len(numbers)), nil
}

func suppressNumbers(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		n, err := job.NormalizeNumber(a)
		if err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("%q: %w", printable(a), err)}
		}
		out = append(out, n)
	}
	return out, nil
}
