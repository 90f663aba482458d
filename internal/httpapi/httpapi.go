// Package httpapi is wabulk's HTTP API (`wabulk serve`): the producer for systems that are not
// written in Go (POST /v1/messages, POST /v1/campaigns, with an optional send_at), the campaign
// list, each campaign's status and dead letters, pausing, resuming and cancelling a campaign, the
// asynqmon UI under /monitor/, and the probes. Every enqueue goes through package producer, the
// same code path as `wabulk enqueue`, so validation and idempotency cannot drift apart.
//
// Errors are RFC 9457 problem documents (application/problem+json) with a stable `code`, and
// nothing is ever reported as a success unless every recipient has its outcome: when Redis fails
// mid-request the answer is 503 with what was enqueued and what was not attempted.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/defaults"
	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/media"
	"github.com/wabulk/wabulk/internal/metrics"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/producer"
)

// Config is how the API serves. Build it with ConfigFrom, or fill it by hand; New fills defaults.
type Config struct {
	// Redis is where the queue lives. Required.
	Redis asynq.RedisConnOpt
	// Producer says how jobs are enqueued (queue, retry budget, retention, default sender),
	// exactly as for `wabulk enqueue`; its Queue is also the queue /monitor/ and the status
	// routes read. Its defaults are producer's.
	Producer producer.Config
	// PII says how recipients appear in dead-letter listings and logs. Defaults to masked.
	PII logging.Masker
	// Tokens are the accepted bearer tokens (and /monitor/ Basic-auth passwords). Required
	// unless InsecureNoAuth.
	Tokens []config.Secret
	// InsecureNoAuth serves without tokens; Serve then refuses any listener but a loopback one.
	InsecureNoAuth bool
	// MonitorWrite lets /monitor/ change the queue (delete, run, archive, pause). Defaults to
	// read-only: a write there answers 403.
	MonitorWrite bool
	// MaxBodyBytes caps a request body (a multipart body's campaign part). Defaults to 16 MiB.
	MaxBodyBytes int64
	// Kaleyra, when it names an account (SID and API key), lets POST /v1/campaigns take a
	// media_file part: the file is uploaded there once per sender and sent by media id.
	// Default unset: such a request is answered 501 media_unavailable.
	Kaleyra kaleyra.Config
	// MaxMediaBytes caps a media_file part, besides WhatsApp's limit for its type. Defaults to
	// 100 MB, the largest file WhatsApp takes (a document).
	MaxMediaBytes int64
	// TempDir is where a media_file part is spooled while it is checked and uploaded. Defaults
	// to os.TempDir().
	TempDir string
	// MaxLargeRequests caps the large requests (body over LargeBodyBytes, or streamed) in
	// flight; the others are answered 429 with Retry-After. Defaults to 2.
	MaxLargeRequests int
	// LargeBodyBytes is the body size from which a request counts as large. Defaults to 1 MiB.
	LargeBodyBytes int64
	// MaxRecipients caps the recipients of one request (JSON or streamed). Defaults to 100,000.
	MaxRecipients int
	// MaxHeaderBytes caps the request header. Defaults to 16 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading a request's header. Defaults to 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; a streamed campaign is read
	// as fast as it is enqueued, so it must cover the largest one. Defaults to 5m.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its header to the end of the answer.
	// Defaults to ReadTimeout + 1m.
	WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Defaults to 2m.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long in-flight requests may finish after a stop. Defaults to 30s.
	ShutdownTimeout time.Duration
	// SuppressOn lists Meta error codes whose failed status callback puts the recipient on the
	// suppression list (WABULK_SUPPRESS_ON) when the ledger applies it; 131047 never does.
	// Default empty.
	SuppressOn []string
}

// Defaults of the limits, exported for the flags of `wabulk serve`.
const (
	DefaultMaxBodyBytes  = 16 << 20
	DefaultMaxRecipients = 100_000
	// DefaultMaxLargeRequests keeps serve's peak near 0.5 GB: a 16 MiB JSON campaign peaks at
	// about 200 MB while it is decoded, enqueued and answered.
	DefaultMaxLargeRequests = 2
	DefaultLargeBodyBytes   = 1 << 20
	DefaultMaxHeaderBytes   = 16 << 10
	DefaultReadTimeout      = 5 * time.Minute
	DefaultIdleTimeout      = 2 * time.Minute
	// DefaultMaxMediaBytes is WhatsApp's largest limit, a document's.
	DefaultMaxMediaBytes = kaleyradocs.MaxMediaBytes
)

func (c *Config) withDefaults() {
	defaults.Set(&c.Producer.Queue, defaults.Queue)
	defaults.Set(&c.MaxBodyBytes, DefaultMaxBodyBytes)
	defaults.Set(&c.MaxMediaBytes, DefaultMaxMediaBytes)
	defaults.Set(&c.MaxLargeRequests, DefaultMaxLargeRequests)
	defaults.Set(&c.LargeBodyBytes, DefaultLargeBodyBytes)
	defaults.Set(&c.MaxRecipients, DefaultMaxRecipients)
	defaults.Set(&c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	defaults.Set(&c.ReadHeaderTimeout, 10*time.Second)
	defaults.Set(&c.ReadTimeout, DefaultReadTimeout)
	defaults.Set(&c.WriteTimeout, c.ReadTimeout+time.Minute)
	defaults.Set(&c.IdleTimeout, DefaultIdleTimeout)
	defaults.Set(&c.ShutdownTimeout, defaults.ShutdownTimeout)
}

// ErrNoTokens is New's answer when there is no token and InsecureNoAuth is not set.
var ErrNoTokens = errors.New(config.EnvAPITokens + " is required: the API enqueues messages that cost money " +
	"(use --insecure-no-auth only on a loopback address, for local testing)")

// Server is the HTTP API. Handler serves it; Serve runs it on a listener. Close releases its
// Redis connections.
type Server struct {
	cfg     Config
	log     *zap.Logger
	rdb     redis.UniversalClient
	prod    *producer.Producer
	ops     *ops.Ops
	ledger  *store.Ledger   // campaign list and control (pause, resume, cancel), on rdb
	media   *media.Uploader // nil without Config.Kaleyra
	monitor *asynqmon.HTTPHandler
	reg     *prometheus.Registry
	metrics *httpMetrics
	// exporter exports the namespace's lanes while this process holds the lease (Serve runs it),
	// so the backlog stays visible while no worker runs.
	exporter *metrics.Exporter
	tokens   [][32]byte // SHA-256 of each token, so comparisons take the same time whatever the length
	handler  http.Handler
	large    chan struct{} // a slot per large request in flight (limitLarge)

	// observe, when set (tests), sees each answered request's method, route pattern and status.
	observe func(method, pattern string, status int)
}

// New builds the API on cfg. It connects lazily: a Redis that is down makes requests answer 503,
// not New fail, so the process starts and /readyz says why it is not ready.
func New(cfg Config, log *zap.Logger) (*Server, error) {
	cfg.withDefaults()
	if cfg.Redis == nil {
		return nil, errors.New("httpapi: Redis connection is required (" + config.EnvRedisURL + ")")
	}
	if len(cfg.Tokens) == 0 && !cfg.InsecureNoAuth {
		return nil, ErrNoTokens
	}
	if log == nil {
		log = zap.NewNop()
	}
	rdb, err := config.RedisClient(cfg.Redis)
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	prod, err := producer.NewFromClient(rdb, cfg.Producer)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	o, err := ops.New(ops.Config{Redis: cfg.Redis, Queue: cfg.Producer.Queue, Retention: cfg.Producer.Retention, PII: cfg.PII})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, rdb: rdb, prod: prod, ops: o, reg: prometheus.NewRegistry(),
		ledger: store.New(rdb, cfg.Producer.Queue, cfg.Producer.Retention),
		large:  make(chan struct{}, cfg.MaxLargeRequests)}
	if cfg.Kaleyra.SID != "" || cfg.Kaleyra.APIKey != "" {
		client, err := kaleyra.New(cfg.Kaleyra)
		if err == nil {
			s.media, err = media.NewUploader(media.Config{Kaleyra: client, Log: log, PII: cfg.PII, Cache: s.ledger})
		}
		if err != nil {
			o.Close()
			rdb.Close()
			return nil, fmt.Errorf("httpapi: media uploads: %w", err)
		}
	}
	for _, t := range cfg.Tokens {
		s.tokens = append(s.tokens, hashToken(t.Reveal()))
	}
	metrics.RegisterProcess(s.reg, metrics.RoleServe, rdb)
	s.exporter = metrics.NewExporter(store.New(rdb, cfg.Producer.Queue, cfg.Producer.Retention))
	s.reg.MustRegister(s.exporter)
	s.metrics = newHTTPMetrics(s.reg)
	s.monitor = newMonitor(cfg)
	s.handler = s.routes()
	return s, nil
}

// Handler is the whole API as one http.Handler (for httptest or another server).
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases the Redis connections of the producer, the status reader and asynqmon.
func (s *Server) Close() error {
	return errors.Join(s.monitor.Close(), s.ops.Close(), s.prod.Close(), s.rdb.Close())
}

// ListenAndServe listens on addr and serves until ctx ends; see Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if err := s.checkAddr(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", config.EnvAddr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve answers requests on ln until ctx ends, then stops accepting, lets in-flight requests
// finish for up to ShutdownTimeout and returns nil. Without tokens it refuses a listener that is
// not on a loopback address: an open API would let anyone on the network send paid messages.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.checkAddr(ln.Addr().String()); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log.With(zap.String("component", "http"))),
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	expCtx, stopExp := context.WithCancel(context.Background())
	exported := make(chan struct{})
	go func() { s.exporter.Run(expCtx); close(exported) }()
	defer func() { stopExp(); <-exported }()
	s.log.Info("serve started", zap.String("addr", ln.Addr().String()), zap.String("queue", s.cfg.Producer.Queue),
		zap.Int("tokens", len(s.tokens)), zap.Bool("monitor_write", s.cfg.MonitorWrite),
		zap.Int64("max_body_bytes", s.cfg.MaxBodyBytes), zap.Int("max_recipients", s.cfg.MaxRecipients),
		zap.Int("max_large_requests", s.cfg.MaxLargeRequests))
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("serve stopping: finishing in-flight requests", zap.Duration("timeout", s.cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-done
	if err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	s.log.Info("serve stopped")
	return nil
}

// checkAddr refuses a non-loopback address when the API has no tokens.
func (s *Server) checkAddr(addr string) error {
	if len(s.tokens) > 0 {
		return nil
	}
	if !IsLoopback(addr) {
		return fmt.Errorf("refusing to serve without %s on %q: --insecure-no-auth needs a loopback address such as 127.0.0.1:8080", config.EnvAPITokens, addr)
	}
	return nil
}

// IsLoopback reports whether a listen address (host:port) can only be reached from this machine.
// An empty host (":8080") listens on every interface, so it is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
