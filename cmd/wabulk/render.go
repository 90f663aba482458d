package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/wabulk/wabulk/internal/inprocess"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/termline"
)

// clearScreen moves a terminal's cursor home and clears it, for redrawing displays.
const clearScreen = "\x1b[H\x1b[2J"

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeStatus writes st as two tables: the queue's counts, then one row per campaign.
func writeStatus(w io.Writer, st ops.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	writeQueues(tw, []ops.QueueCounts{st.Queue})
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CAMPAIGN\tSTATE\tENQUEUED\tPENDING\tACTIVE\tRETRY\tCOMPLETED\tDELIVERED\tREAD\tFAILED\tDEAD\tCANCELLED\tRETRIES\tREDRIVEN\tRATE/S\tETA\tDEAD BY CODE\tFAILED BY CODE")
	for _, c := range st.Campaigns {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\n", printable(c.Campaign),
			printable(c.State), c.Enqueued, c.Pending, c.Active, c.Retry, c.Completed, c.Delivered, c.Read, c.Failed+c.NotSent, c.Dead,
			c.Cancelled, c.Retries, c.Redriven, c.Rate, etaText(c.ETASeconds), codesText(c.DeadCodes), codesText(c.FailedCodes))
	}
	if len(st.Campaigns) == 0 && st.UnlistedFinished == 0 {
		fmt.Fprintln(tw, "(no campaigns)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeUnlisted(w, st.UnlistedFinished); err != nil {
		return err
	}
	if st.Unmatched > 0 {
		_, err := fmt.Fprintf(w, "\n%d delivery statuses for message ids this namespace does not know (unmatched)\n", st.Unmatched)
		return err
	}
	return nil
}

// writeQueueTable writes one row per queue.
func writeQueueTable(w io.Writer, qs []ops.QueueCounts) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	writeQueues(tw, qs)
	return tw.Flush()
}

func writeQueues(tw *tabwriter.Writer, qs []ops.QueueCounts) {
	fmt.Fprintln(tw, "QUEUE\tSTATE\tPENDING\tSCHEDULED\tRETRY\tACTIVE\tCOMPLETED\tDEAD (ARCHIVED)\tPROCESSED TODAY\tFAILED TODAY\tLATENCY")
	for _, q := range qs {
		state := "running"
		switch {
		case !q.Exists:
			state = "empty"
		case q.Paused:
			state = "PAUSED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", printable(q.Queue), state, q.Pending, q.Scheduled,
			q.Retry, q.Active, q.Completed, q.Archived, q.ProcessedToday, q.FailedToday, q.Latency.Round(time.Millisecond))
	}
}

// codesText formats counts by code as "E110=3 WA400=1", codes sorted.
func codesText(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", printable(k), m[k])
	}
	return b.String()
}

// writeDead writes dead letters as a table, newest first as given.
func writeDead(w io.Writer, ds []ops.DeadEntry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tCAMPAIGN\tTO\tCODE\tMESSAGE\tREF\tREF1\tREF2\tATTEMPT")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", d.Time.UTC().Format(time.RFC3339), printable(d.Campaign), printable(d.To),
			printable(d.Code), oneLine(d.Message, 60), oneLine(d.Ref, 24), oneLine(d.Ref1, 24), oneLine(d.Ref2, 24), d.Attempt)
	}
	if len(ds) == 0 {
		fmt.Fprintln(tw, "(no dead letters)")
	}
	return tw.Flush()
}

// writeRedrive writes a redrive's report as one line per outcome.
func writeRedrive(w io.Writer, r ops.RedriveReport) error {
	verb := "redriven"
	if r.DryRun {
		verb = "would redrive"
	}
	byCode := make(map[string]int64, len(r.ByCode))
	for k, v := range r.ByCode {
		byCode[k] = int64(v)
	}
	_, err := fmt.Fprintf(w, "matched %d, %s %d (%s), already sent %d, already queued %d, unreadable %d, failed %d\n",
		r.Matched, verb, r.Redriven, codesText(byCode), r.AlreadySent, r.AlreadyQueued, r.Unreadable, r.Failed)
	return err
}

// oneLine keeps a cell on one line and at most n characters (before escaping), with control
// characters escaped (printable).
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return printable(s)
}

// printable escapes what a terminal would act on rather than show: C0 and C1 control
// characters and DEL become \xNN (\u00NN for C1), invalid UTF-8 bytes \xNN. Every table the CLI
// prints passes text that came from outside (refs, Kaleyra's error text, names read from Redis)
// through it: raw, a ref holding "\x1b]0;…\x07" would retitle the operator's terminal, and
// "\x1b[2J" clear it. Tabs and line breaks are escaped too (\t, \n, \r), as they would break the
// table. JSON output needs none of this: encoding/json escapes control characters itself.
func printable(s string) string {
	i := strings.IndexFunc(s, needsEscape)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// needsEscape is true for a rune printable escapes (an invalid byte decodes as RuneError).
func needsEscape(r rune) bool {
	return r < 0x20 || r >= 0x7f && r <= 0x9f || r == utf8.RuneError
}

// writeSendResult writes a send's summary: what was sent, retried and dead-lettered (with a few
// example recipients and refs per code), how long it took and how fast it went, and what is
// left if it was interrupted.
func writeSendResult(w io.Writer, r inprocess.SendResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	e := r.Enqueue
	fmt.Fprintf(tw, "campaign %s\n", printable(r.Campaign))
	if e.Suppressed > 0 {
		fmt.Fprintf(tw, "  enqueued\t%d\t(duplicates %d, rejected %d, suppressed %d)\n", e.Enqueued, e.Duplicates, e.Rejected, e.Suppressed)
	} else {
		fmt.Fprintf(tw, "  enqueued\t%d\t(duplicates %d, rejected %d)\n", e.Enqueued, e.Duplicates, e.Rejected)
	}
	fmt.Fprintf(tw, "  sent\t%d\t\n", r.Sent)
	if c := r.Counts; c.Delivered+c.Failed+c.NotSent > 0 {
		fmt.Fprintf(tw, "  delivered\t%d\tof them, %d read (WhatsApp's status callbacks)\n", c.Delivered, c.Read)
		fmt.Fprintf(tw, "  failed\t%d\t%s\n", c.Failed+c.NotSent, codesText(c.FailedCodes))
	}
	fmt.Fprintf(tw, "  retried\t%d\tattempts that failed transiently and were tried again\n", r.Retried)
	fmt.Fprintf(tw, "  dead\t%d\t%s\n", r.Dead, codesText(r.DeadByCode))
	for _, code := range slices.Sorted(maps.Keys(r.Examples)) {
		var ex []string
		for _, d := range r.Examples[code] {
			s := printable(d.To)
			if refs := strings.Join(slices.DeleteFunc([]string{d.Ref, d.Ref1, d.Ref2}, func(s string) bool { return s == "" }), "/"); refs != "" {
				s += " (" + oneLine(refs, 40) + ")"
			}
			ex = append(ex, s)
		}
		fmt.Fprintf(tw, "    %s\t%d\te.g. %s\n", printable(code), r.DeadByCode[code], strings.Join(ex, ", "))
	}
	fmt.Fprintf(tw, "  elapsed\t%s\t\n", r.Elapsed.Round(10*time.Millisecond))
	fmt.Fprintf(tw, "  rate\t%.1f\tmessages sent per second\n", r.Rate)
	if st := r.Sandbox; st != nil {
		fmt.Fprintf(tw, "  sandbox\t%d\tcalls received: %s\n", st.Received, codesText(st.Answered))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if left := r.Left(); r.Interrupted || left > 0 {
		c := r.Counts
		where := "left in Redis: `wabulk worker` on the same WABULK_REDIS_URL and WABULK_QUEUE finishes them; `wabulk status --campaign " + r.Campaign + "` follows them"
		if r.Embedded {
			where = "they were in the embedded Redis and are gone with this process"
		}
		_, err := fmt.Fprintf(w, "stopped before the end: %d jobs not finished (waiting %d, retry %d, active %d); %s\n",
			left, c.Pending, c.Retry, c.Active, where)
		return err
	}
	return nil
}

// ratesText formats fault rates as "WA500 12%, E110 1.5%", names sorted.
func ratesText(rates map[string]float64) string {
	if len(rates) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(rates)) {
		parts = append(parts, fmt.Sprintf("%s %g%%", k, rates[k]*100))
	}
	return strings.Join(parts, ", ")
}

// writeSenders writes one row per sender.
func writeSenders(w io.Writer, ss []ops.SenderInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SENDER\tRATE/S\tBURST\tSETTING\tBACKLOG\tSENT LAST MIN")
	for _, s := range ss {
		setting := "default"
		if s.Override {
			setting = "override"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\n", printable(s.Number), strconv.FormatFloat(s.Rate, 'g', -1, 64), s.Burst,
			setting, s.Backlog, s.SentLastMinute)
	}
	if len(ss) == 0 {
		fmt.Fprintln(tw, "(no senders: none has an override, a backlog or a send in the last minute)")
	}
	return tw.Flush()
}

// statusView says how `wabulk status` shows a Status.
type statusView struct {
	// Campaign limits the campaigns shown to one. Default: the namespace's.
	Campaign string
	// Finished is how many finished campaigns to list, as ops.View.Finished takes it.
	Finished int
	// JSON prints JSON (one compact object per line when watching) instead of tables.
	JSON bool
	// Watch redraws every Interval until ctx ends.
	Watch bool
	// Interval between redraws. Default 2s.
	Interval time.Duration
}

// showStatus prints the status once, or keeps redrawing it with v.Watch: on a terminal the
// screen is cleared each time, elsewhere the snapshots follow one another.
func showStatus(ctx context.Context, o *ops.Ops, w io.Writer, v statusView) error {
	if v.Interval <= 0 {
		v.Interval = 2 * time.Second
	}
	if !v.Watch {
		st, err := o.StatusOf(ctx, ops.View{Campaign: v.Campaign, Finished: v.Finished})
		if err != nil {
			return err
		}
		if v.JSON {
			return writeJSON(w, st)
		}
		return writeStatus(w, st)
	}
	tty := termline.IsTerminal(w)
	err := o.Watch(ctx, ops.View{Campaign: v.Campaign, Finished: v.Finished}, v.Interval, func(st ops.Status, err error) error {
		if werr := drawStatus(w, st, err, v, tty); werr != nil {
			return werr
		}
		if err == nil && len(st.Campaigns) > 0 && st.Finished() {
			return errWatchDone
		}
		return nil
	})
	if errors.Is(err, errWatchDone) {
		return nil
	}
	return err
}

// errWatchDone ends a watch whose campaigns are all finished.
var errWatchDone = errors.New("every campaign watched is finished")

// drawStatus writes one snapshot of a watch (or the error reading it).
func drawStatus(w io.Writer, st ops.Status, err error, v statusView, tty bool) error {
	if v.JSON {
		if err != nil {
			return json.NewEncoder(w).Encode(map[string]string{"time": time.Now().UTC().Format(time.RFC3339), "error": err.Error()})
		}
		return json.NewEncoder(w).Encode(st)
	}
	if tty {
		fmt.Fprint(w, clearScreen)
	}
	fmt.Fprintf(w, "%s  (every %v; ends when the campaigns are finished, or Ctrl-C)\n", time.Now().Format("15:04:05"), v.Interval)
	if err != nil {
		_, werr := fmt.Fprintf(w, "error: %v\n\n", err)
		return werr
	}
	if err := writeStatus(w, st); err != nil {
		return err
	}
	_, werr := fmt.Fprintln(w)
	return werr
}
