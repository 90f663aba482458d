package main

import (
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/wabulk/wabulk/internal/httpapi"
	"github.com/wabulk/wabulk/internal/logging"
)

func newServeCmd() *cobra.Command {
	var (
		insecure, monitorWrite bool
		maxBody, maxMedia      int64
		maxRecipients, maxHdr  int
		maxLarge               int
		cfg                    httpapi.Config
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "HTTP producer API (/v1/...), asynqmon at /monitor/, /metrics, /healthz, /readyz; stops gracefully on SIGTERM",
		Long: `serve answers POST /v1/messages and POST /v1/campaigns (JSON, or a streamed text/csv or
application/x-ndjson body with ?campaign=ID), GET /v1/campaigns/{id} and /v1/campaigns/{id}/dead,
with the validation and idempotency of wabulk enqueue. POST /v1/campaigns also takes
multipart/form-data with a campaign part and a media_file part: the file is uploaded once per sender
(KALEYRA_SID and KALEYRA_API_KEY must be set) and sent by media id, as --media-file does. Every route but /healthz and /readyz needs
Authorization: Bearer <token> with one of WABULK_API_TOKENS; /monitor/ (asynqmon) takes any user
name and a token as the password. GET /v1/openapi.json describes the API.`,
		Example: `  WABULK_API_TOKENS=$(openssl rand -hex 24) wabulk serve --addr :8080
  wabulk serve --insecure-no-auth --addr 127.0.0.1:8080   # local testing only`,
		Args: cobra.NoArgs,
	}
	load := withEnvFlags(cmd, flagAddr, flagRedisURL, flagQueue, flagMaxRetry, flagRetention, flagShutdown, flagLogLevel, flagLogPII)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load()
		if err != nil {
			return err
		}
		base, err := apiConfig(c)
		if err != nil {
			return err
		}
		base.InsecureNoAuth, base.MonitorWrite = insecure, monitorWrite
		base.MaxBodyBytes, base.MaxRecipients, base.MaxHeaderBytes = maxBody, maxRecipients, maxHdr
		base.MaxMediaBytes = maxMedia
		base.MaxLargeRequests = maxLarge
		base.ReadTimeout, base.WriteTimeout, base.IdleTimeout = cfg.ReadTimeout, cfg.WriteTimeout, cfg.IdleTimeout
		log, err := logging.New(c.LogLevel, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		defer log.Sync()
		// go-redis logs every failed dial; requests already answer 503 and /readyz says why.
		redis.SetLogger(quietLogger{})
		srv, err := httpapi.New(base, log)
		if err != nil {
			return err
		}
		defer srv.Close()
		return srv.ListenAndServe(cmd.Context(), c.Addr)
	}
	f := cmd.Flags()
	f.BoolVar(&insecure, "insecure-no-auth", false, "serve without WABULK_API_TOKENS (refused unless --addr is a loopback address; then only loopback Host names are served)")
	f.BoolVar(&monitorWrite, "monitor-write", false, "let /monitor/ change the queue (delete, run, archive, pause); read-only otherwise")
	f.Int64Var(&maxBody, "max-body", httpapi.DefaultMaxBodyBytes, "largest request body in bytes (a multipart body's campaign part)")
	f.Int64Var(&maxMedia, "max-media", httpapi.DefaultMaxMediaBytes, "largest media_file part in bytes (WhatsApp's limit for the file's type applies too)")
	f.IntVar(&maxLarge, "max-large-requests", httpapi.DefaultMaxLargeRequests, "most requests with a large body (over 1 MiB, or streamed) in flight; more are answered 429 with Retry-After (each may take ~13× its body in memory)")
	f.IntVar(&maxRecipients, "max-recipients", httpapi.DefaultMaxRecipients, "most recipients in one request")
	f.IntVar(&maxHdr, "max-header", httpapi.DefaultMaxHeaderBytes, "largest request header in bytes")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", httpapi.DefaultReadTimeout, "longest time to read a request, body included (a streamed campaign is read as it is enqueued)")
	f.DurationVar(&cfg.WriteTimeout, "write-timeout", 0, "longest time from a request's header to the end of its answer (default read-timeout + 1m)")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", httpapi.DefaultIdleTimeout, "how long an idle keep-alive connection stays open")
	return cmd
}
