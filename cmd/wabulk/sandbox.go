package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/sandbox"
)

func newSandboxCmd() *cobra.Command {
	var (
		cfg     sandbox.Config
		addr    string
		senders string
		faults  []string
		dump    bool
	)
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a fake Kaleyra that checks requests like the real API and injects faults",
		Long: `sandbox serves POST /v2/<sid>/whatsapp/<from>/messages as Kaleyra does: a wrong SID or
api-key answers 401 RBC001, a sender not on the account 401 WA401, a malformed payload 400 WA400,
each with the documented body. Every other send is accepted (200 with a wamid message id), unless a
fault rate, a script or an empty balance says otherwise. Point wabulk at it with KALEYRA_BASE_URL.

It also serves the Upload Media Files API, POST /v2/<sid>/whatsapp/<from>/media (multipart: file,
type), with the same account and sender checks, 401 WA-401 for a --prepaid account, and 400 WA400
for a form without both parts, a MIME type WhatsApp does not take, an empty file or one over its
type's limit (image 5 MB, video and audio 16 MB, document 100 MB, sticker 100 KB static or 500 KB
animated). An accepted upload answers {"id":"sbx-…"}. A send by media id is accepted only for an id
the account (same SID and API key, in this or an earlier sandbox) uploaded from that sender in the
last 30 days, or one given with --media-id. Any other id is answered at once with 400 WA400 and
error.media (answer media-unknown): the real API accepts such a send and reports the failure later
in a status callback.

With --callback-url it posts status callbacks for every accepted message, as Kaleyra does, in the
documented body (meta_object.value.statuses[], extra_info, status, message_id), with
"Authorization: Bearer <--callback-token>": "sent", then "delivered" and for --callback-read of
them "read"; --callback-fail of the messages get "sent" then "failed" with a Meta code drawn from
--callback-codes; --callback-not-sent get "not-sent" alone. --callback-dup of the messages have
one callback posted twice, --callback-reorder have their last two swapped, each callback waits a
random delay up to --callback-max-delay, and a callback not answered 200 is posted again with
backoff, up to --callback-retries times. Each share is between 0 and 1, and 0 means none
(--callback-fail 0: every message is delivered). The outcomes are counted under "callbacks" in
the stats. Point it at wabulk serve: --callback-url http://127.0.0.1:8080/v1/kaleyra/status.

Answer names, for --fault and for scripts:
` + answerHelp() + `
Fault choice, jitter and the callbacks' draws are deterministic for a given --seed: the n-th send
to a recipient always gets the same answer and, when accepted, the same callbacks (outcome,
duplicate, swap, delays); only the order in which the posts arrive varies.

Control endpoints (JSON):
  POST /_sandbox/script   {"to":"+91…","answers":["WA500","ok"]}  next answers for that recipient
  POST /_sandbox/script   {"upload":true,"answers":["WA500"]}      next answers to uploads
  POST /_sandbox/balance  {"balance":N}                            set the balance (-1 unlimited)
  POST /_sandbox/reset                                             clear counters, calls, scripts
  GET  /_sandbox/stats                                             received, answered, accepted, callbacks…
  GET  /_sandbox/calls                                             every call: time, from, to, answer, media
  GET  /_sandbox/uploads                                           every upload: time, from, type, size, answer, id`,
		Example: `  wabulk sandbox --fault WA500=0.05 --fault E110=0.01 --latency 50ms --jitter 20ms
  wabulk sandbox --balance 100 --dump
  wabulk sandbox --fault hang=0.1 --hang-for 30s --seed 7
  wabulk sandbox --callback-url http://127.0.0.1:8080/v1/kaleyra/status --callback-token "$TOKEN" --callback-fail 0.3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Senders = strings.Split(senders, ",")
			rates, err := parseFaults(faults)
			if err != nil {
				return err
			}
			cfg.Rates = rates
			srv, err := sandbox.New(cfg)
			if err != nil {
				return err
			}
			if err := srv.Listen(addr); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "sandbox listening on %s\nKALEYRA_BASE_URL=%s\n", srv.URL, srv.URL)
			<-cmd.Context().Done()
			srv.Close()
			if dump {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(srv.Stats())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8089", "listen address")
	f.StringVar(&cfg.SID, "sid", envOr(config.EnvSID, sandbox.DefaultSID), "account SID the path must name; env "+config.EnvSID)
	f.StringVar(&cfg.APIKey, "api-key", "", "API key the api-key header must carry (default from "+config.EnvAPIKey+", else "+sandbox.DefaultAPIKey+")")
	f.StringVar(&senders, "senders", envOr(config.EnvFrom, sandbox.DefaultSender), "comma-separated sender numbers on the account; env "+config.EnvFrom)
	f.Int64Var(&cfg.Seed, "seed", 0, "seed of the fault choice and jitter")
	f.DurationVar(&cfg.Latency, "latency", 0, "delay of every answer")
	f.DurationVar(&cfg.Jitter, "jitter", 0, "spread the delay uniformly over latency ± jitter")
	f.StringArrayVar(&faults, "fault", nil, "ANSWER=RATE: probability of an answer per send, repeatable (e.g. --fault WA500=0.05 --fault E110=0.01); rates add up to at most 1")
	f.Int64Var(&cfg.Balance, "balance", -1, "messages the account can pay for; at 0 every send answers E110 (-1 unlimited)")
	f.DurationVar(&cfg.HangFor, "hang-for", sandbox.DefaultHangFor, "how long a hang stalls (and a slowloris trickles) before answering")
	f.BoolVar(&dump, "dump", false, "print the stats as JSON on exit")
	f.StringArrayVar(&cfg.MediaIDs, "media-id", nil, "a media id the account holds already, accepted from every sender (repeatable)")
	f.BoolVar(&cfg.Prepaid, "prepaid", false, "a prepaid account: every upload answers 401 WA-401 (uploads are for postpaid accounts)")
	f.StringVar(&cfg.CallbackURL, "callback-url", "", "post status callbacks for accepted messages to this URL (wabulk serve's /v1/kaleyra/status)")
	f.StringVar(&cfg.CallbackToken, "callback-token", "", "send callbacks with Authorization: Bearer TOKEN (one of serve's WABULK_API_TOKENS)")
	// Each share is always set from its flag, whose default is the sandbox's: 0 means none.
	cfg.CallbackFail, cfg.CallbackNotSent, cfg.CallbackRead = new(0.0), new(0.0), new(0.0)
	cfg.CallbackDup, cfg.CallbackReorder = new(0.0), new(0.0)
	f.Float64Var(cfg.CallbackFail, "callback-fail", sandbox.DefaultCallbackFail, "share of accepted messages that fail with a Meta code, 0 to 1 (0: none)")
	f.Float64Var(cfg.CallbackNotSent, "callback-not-sent", 0, "share of accepted messages Kaleyra never passes on (not-sent), 0 to 1")
	f.Float64Var(cfg.CallbackRead, "callback-read", sandbox.DefaultCallbackRead, "share of delivered messages that are read, 0 to 1 (0: none)")
	f.Float64Var(cfg.CallbackDup, "callback-dup", sandbox.DefaultCallbackDup, "share of messages with one callback posted twice, 0 to 1 (0: none)")
	f.Float64Var(cfg.CallbackReorder, "callback-reorder", sandbox.DefaultCallbackReorder, "share of messages whose last two callbacks come swapped, 0 to 1 (0: none)")
	f.StringSliceVar(&cfg.CallbackCodes, "callback-codes", sandbox.DefaultCallbackCodes, "Meta codes of failed messages, drawn evenly")
	f.DurationVar(&cfg.CallbackMaxDelay, "callback-max-delay", sandbox.DefaultCallbackMaxDelay, "longest random delay before each callback")
	f.IntVar(&cfg.CallbackConcurrency, "callback-concurrency", sandbox.DefaultCallbackConcurrency, "callbacks posted at once")
	f.IntVar(&cfg.CallbackRetries, "callback-retries", sandbox.DefaultCallbackRetries, "posts of one callback before it is given up (not answered 200)")
	cmd.PreRun = func(*cobra.Command, []string) {
		// The key's default comes from the environment but must not show in --help.
		if cfg.APIKey == "" {
			cfg.APIKey = envOr(config.EnvAPIKey, sandbox.DefaultAPIKey)
		}
	}
	return cmd
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// parseFaults reads repeated ANSWER=RATE flags; the sandbox checks names and sums.
func parseFaults(faults []string) (map[string]float64, error) {
	rates := map[string]float64{}
	for _, fl := range faults {
		name, v, ok := strings.Cut(fl, "=")
		if !ok {
			return nil, fmt.Errorf("--fault %q: want ANSWER=RATE, e.g. WA500=0.05", fl)
		}
		p, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return nil, fmt.Errorf("--fault %q: rate is not a number", fl)
		}
		rates[strings.TrimSpace(name)] += p
	}
	return rates, nil
}

func answerHelp() string {
	var b strings.Builder
	for _, a := range sandbox.Answers {
		fmt.Fprintf(&b, "  %-15s %s\n", a, sandbox.AnswerHelp[a])
	}
	return b.String()
}
