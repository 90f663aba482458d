// Package config reads wabulk's settings from the environment (docs/configuration.md).
//
// It is the one place that knows the variable names, their defaults and how each is checked.
// Commands build a Config with Load, let flags override fields, then call the Require… method
// for what the command needs; every error names the variable at fault.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zapcore"

	"github.com/wabulk/wabulk/internal/defaults"
	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/ratelimit"
)

// The environment variables wabulk reads. Vars lists them all.
const (
	EnvRedisURL        = "WABULK_REDIS_URL"
	EnvQueue           = "WABULK_QUEUE"
	EnvSID             = "KALEYRA_SID"
	EnvAPIKey          = "KALEYRA_API_KEY"
	EnvAPIKeyFile      = "KALEYRA_API_KEY_FILE"
	EnvRegion          = "KALEYRA_REGION"
	EnvBaseURL         = "KALEYRA_BASE_URL"
	EnvFrom            = "KALEYRA_FROM"
	EnvConcurrency     = "WABULK_CONCURRENCY"
	EnvRate            = "WABULK_RATE"
	EnvBurst           = "WABULK_BURST"
	EnvMaxRetry        = "WABULK_MAX_RETRY"
	EnvRetryBase       = "WABULK_RETRY_BASE"
	EnvRetryMax        = "WABULK_RETRY_MAX"
	EnvHTTPTimeout     = "WABULK_HTTP_TIMEOUT"
	EnvRetention       = "WABULK_RETENTION"
	EnvMetricsAddr     = "WABULK_METRICS_ADDR"
	EnvLogLevel        = "WABULK_LOG_LEVEL"
	EnvLogPII          = "WABULK_LOG_PII"
	EnvPauseOn         = "WABULK_PAUSE_ON"
	EnvAddr            = "WABULK_ADDR"
	EnvAPITokens       = "WABULK_API_TOKENS"
	EnvRedisCluster    = "WABULK_REDIS_CLUSTER"
	EnvShutdown        = "WABULK_SHUTDOWN_TIMEOUT"
	EnvSuppressOn      = "WABULK_SUPPRESS_ON"
	EnvCallbackProfile = "KALEYRA_CALLBACK_PROFILE_ID"
)

// Vars is every variable Load reads, for tests that check manifests against it.
var Vars = []string{EnvRedisURL, EnvQueue, EnvSID, EnvAPIKey, EnvAPIKeyFile, EnvRegion, EnvBaseURL,
	EnvFrom, EnvConcurrency, EnvRate, EnvBurst, EnvMaxRetry, EnvRetryBase, EnvRetryMax, EnvHTTPTimeout,
	EnvRetention, EnvMetricsAddr, EnvLogLevel, EnvLogPII, EnvPauseOn, EnvAddr, EnvAPITokens,
	EnvRedisCluster, EnvShutdown, EnvSuppressOn, EnvCallbackProfile}

// Secret is a string that never prints: %v, %s, %q, %#v and JSON all show "[redacted]".
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return `"[redacted]"` }

// MarshalText keeps the secret out of JSON and zap's reflection.
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Reveal returns the secret itself, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

// Config is wabulk's whole configuration.
type Config struct {
	// RedisURL is a redis://, rediss://, redis-socket:// or redis-sentinel:// URI.
	// Default redis://127.0.0.1:6379/0.
	RedisURL string
	// RedisCluster, when set, is a comma-separated list of Redis Cluster node addresses and
	// RedisURL is ignored. Default unset.
	RedisCluster string
	// Queue is the asynq queue the jobs go to and the worker serves. Default "whatsapp".
	Queue string
	// SID is the Kaleyra account SID. Required for worker and send.
	SID string
	// APIKey is the Kaleyra API key (from KALEYRA_API_KEY or KALEYRA_API_KEY_FILE).
	APIKey Secret
	// Region is in, sg, eu or na. Default "in".
	Region string
	// BaseURL overrides the region's https://<domain>. Default unset.
	BaseURL string
	// From is the default sender number when a job names none. Default unset.
	From string
	// Concurrency is how many jobs a worker process runs at once. Default 50.
	Concurrency int
	// Rate is messages per second per sender, for all workers together. Default 80.
	Rate float64
	// Burst is how many tokens the shared limiter may hand out at once. Default ceil(Rate/10), ≥ 1.
	Burst int
	// MaxRetry is how many times a transient failure is retried before dead-lettering. Default 8.
	MaxRetry int
	// RetryBase and RetryMax bound the exponential backoff (full jitter). Default 5s and 10m.
	RetryBase, RetryMax time.Duration
	// HTTPTimeout bounds one Kaleyra call. Default 15s.
	HTTPTimeout time.Duration
	// Retention is how long completed jobs stay in Redis, also the dedupe window. Default 24h.
	Retention time.Duration
	// MetricsAddr is where the worker serves /metrics, /healthz, /readyz; empty disables. Default ":9090".
	MetricsAddr string
	// LogLevel is a zap level. Default "info".
	LogLevel string
	// LogPII is "masked" or "full". Default "masked".
	LogPII string
	// PauseOn lists Kaleyra codes that pause the queue. Default empty.
	PauseOn []string
	// SuppressOn lists Meta error codes (digits) whose failed status callback puts the recipient
	// on the suppression list, e.g. 131026,131050. Default empty: no number is added by itself.
	SuppressOn []string
	// CallbackProfileID, when set, is sent with every message as callback_profile_id, naming the
	// Kaleyra callback profile that reports its status. Default unset: the business number's
	// profile applies.
	CallbackProfileID string
	// Addr is where `wabulk serve` listens. Default ":8080".
	Addr string
	// APITokens are the bearer tokens `wabulk serve` accepts. Required for serve.
	APITokens []Secret
	// ShutdownTimeout is how long a stopping worker lets in-flight jobs finish. Default 30s.
	ShutdownTimeout time.Duration
}

// Defaults returns the configuration with every default filled in and nothing required set.
func Defaults() Config {
	return Config{
		RedisURL:        defaults.RedisURL,
		Queue:           defaults.Queue,
		Region:          defaults.Region,
		Concurrency:     defaults.Concurrency,
		Rate:            defaults.Rate,
		MaxRetry:        defaults.MaxRetry,
		RetryBase:       defaults.RetryBase,
		RetryMax:        defaults.RetryMax,
		HTTPTimeout:     defaults.HTTPTimeout,
		Retention:       defaults.Retention,
		MetricsAddr:     defaults.MetricsAddr,
		LogLevel:        defaults.LogLevel,
		LogPII:          defaults.LogPII,
		Addr:            defaults.Addr,
		ShutdownTimeout: defaults.ShutdownTimeout,
	}
}

// LookupFunc is os.LookupEnv's shape, so tests pass a map instead of the process environment.
type LookupFunc func(string) (string, bool)

// FromEnv is Load on the process environment.
func FromEnv() (Config, error) { return Load(os.LookupEnv) }

// Load reads every variable that is set over the defaults and checks what does not depend on
// the command (numbers parse, durations are positive, enumerations hold a known value).
func Load(lookup LookupFunc) (Config, error) {
	c := Defaults()
	var errs []error
	str := func(name string, dst *string) {
		if v, ok := lookup(name); ok {
			*dst = strings.TrimSpace(v)
		}
	}
	num := func(name string, dst *int, min int) {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < min {
				errs = append(errs, fmt.Errorf("%s must be an integer ≥ %d, got %q", name, min, v))
				return
			}
			*dst = n
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s must be a positive Go duration such as 5s or 10m, got %q", name, v))
				return
			}
			*dst = d
		}
	}
	str(EnvRedisURL, &c.RedisURL)
	str(EnvRedisCluster, &c.RedisCluster)
	str(EnvQueue, &c.Queue)
	str(EnvSID, &c.SID)
	str(EnvRegion, &c.Region)
	str(EnvBaseURL, &c.BaseURL)
	str(EnvFrom, &c.From)
	str(EnvMetricsAddr, &c.MetricsAddr)
	str(EnvLogLevel, &c.LogLevel)
	str(EnvLogPII, &c.LogPII)
	str(EnvAddr, &c.Addr)
	num(EnvConcurrency, &c.Concurrency, 1)
	num(EnvMaxRetry, &c.MaxRetry, 0)
	dur(EnvRetryBase, &c.RetryBase)
	dur(EnvRetryMax, &c.RetryMax)
	dur(EnvHTTPTimeout, &c.HTTPTimeout)
	dur(EnvRetention, &c.Retention)
	dur(EnvShutdown, &c.ShutdownTimeout)
	if v, ok := lookup(EnvRate); ok && strings.TrimSpace(v) != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			errs = append(errs, fmt.Errorf("%s must be a number > 0 (messages per second), got %q", EnvRate, v))
		} else {
			c.Rate = r
		}
	}
	num(EnvBurst, &c.Burst, 1)
	if c.Burst == 0 {
		c.Burst = ratelimit.DefaultBurst(c.Rate)
	}
	if v, ok := lookup(EnvPauseOn); ok {
		c.PauseOn = splitList(v)
	}
	if v, ok := lookup(EnvSuppressOn); ok {
		c.SuppressOn = splitList(v)
	}
	if v, ok := lookup(EnvCallbackProfile); ok {
		c.CallbackProfileID = strings.TrimSpace(v)
	}
	key, keySet := lookup(EnvAPIKey)
	keyVar := EnvAPIKey
	if file, ok := lookup(EnvAPIKeyFile); ok && strings.TrimSpace(file) != "" {
		keyVar = EnvAPIKeyFile
		if keySet && strings.TrimSpace(key) != "" {
			errs = append(errs, fmt.Errorf("set %s or %s, not both", EnvAPIKey, EnvAPIKeyFile))
		}
		b, err := os.ReadFile(strings.TrimSpace(file))
		if err != nil {
			// The path is not secret; the error from os names it without contents.
			errs = append(errs, fmt.Errorf("%s: %w", EnvAPIKeyFile, err))
		}
		key = strings.TrimSpace(string(b))
	}
	c.APIKey = Secret(strings.TrimSpace(key))
	if c.APIKey != "" {
		// The client's rule (a key that is not a valid header value fails every send), checked
		// here so the error names the variable it came from.
		if err := kaleyra.CheckKey(c.APIKey.Reveal()); err != nil {
			errs = append(errs, fmt.Errorf("%s %w", keyVar, err))
		}
	}
	if v, ok := lookup(EnvAPITokens); ok && strings.TrimSpace(v) != "" {
		toks, err := parseTokens(v)
		if err != nil {
			errs = append(errs, err)
		}
		c.APITokens = toks
	}
	if err := c.Check(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// Check validates the fields every command relies on; it runs again after flags override values.
func (c *Config) Check() error {
	var errs []error
	if c.Burst < 1 {
		errs = append(errs, fmt.Errorf("%s must be an integer ≥ 1, got %d", EnvBurst, c.Burst))
	}
	if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("%s must be debug, info, warn or error, got %q", EnvLogLevel, c.LogLevel))
	}
	if c.BaseURL != "" {
		if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s must be an absolute http(s) URL, got %q", EnvBaseURL, c.BaseURL))
		}
	}
	for name, addr := range map[string]string{EnvMetricsAddr: c.MetricsAddr, EnvAddr: c.Addr} {
		if addr == "" && name == EnvMetricsAddr {
			continue // set but empty disables the metrics listener
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s must be host:port or :port, got %q", name, addr))
		}
	}
	if c.RedisCluster == "" {
		if _, err := parseRedisURL(c.RedisURL); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Queue == "" || strings.ContainsAny(c.Queue, " \t\r\n:{}") {
		errs = append(errs, fmt.Errorf("%s must be a non-empty name without spaces, ':' or braces, got %q", EnvQueue, c.Queue))
	}
	if _, ok := kaleyra.Domains[c.Region]; !ok { // the client owns the region table
		errs = append(errs, fmt.Errorf("%s must be one of in, sg, eu, na, got %q", EnvRegion, c.Region))
	}
	if c.RetryMax < c.RetryBase {
		errs = append(errs, fmt.Errorf("%s (%v) must not be below %s (%v)", EnvRetryMax, c.RetryMax, EnvRetryBase, c.RetryBase))
	}
	for _, code := range c.SuppressOn {
		if code == "" || len(code) > 12 || strings.ContainsFunc(code, func(r rune) bool { return r < '0' || r > '9' }) {
			errs = append(errs, fmt.Errorf("%s must list Meta error codes (digits), e.g. 131026,131050, got %q", EnvSuppressOn, code))
			break
		}
	}
	if len(c.CallbackProfileID) > 128 || strings.ContainsFunc(c.CallbackProfileID, func(r rune) bool { return r <= ' ' || r > '~' }) {
		errs = append(errs, fmt.Errorf("%s must be at most 128 printable characters without spaces", EnvCallbackProfile))
	}
	switch c.LogPII {
	case "masked", "full":
	default:
		errs = append(errs, fmt.Errorf("%s must be masked or full, got %q", EnvLogPII, c.LogPII))
	}
	return errors.Join(errs...)
}

// RequireKaleyra checks what a process that calls Kaleyra needs: SID and API key.
func (c *Config) RequireKaleyra() error {
	var errs []error
	if c.SID == "" {
		errs = append(errs, fmt.Errorf("%s is required (the Kaleyra account SID)", EnvSID))
	}
	if c.APIKey == "" {
		errs = append(errs, fmt.Errorf("%s or %s is required (the Kaleyra API key)", EnvAPIKey, EnvAPIKeyFile))
	}
	return errors.Join(errs...)
}

// RedisConnOpt turns RedisURL (or RedisCluster) into asynq's connection options.
func (c *Config) RedisConnOpt() (asynq.RedisConnOpt, error) {
	if c.RedisCluster != "" {
		return asynq.RedisClusterClientOpt{Addrs: splitList(c.RedisCluster)}, nil
	}
	return parseRedisURL(c.RedisURL)
}

// parseRedisURL is asynq.ParseRedisURI with errors that never show the URL's user information.
// url.Parse quotes the whole URL in its errors and, when a password holds a character that is
// not percent-encoded (% ? / # space), its reason quotes a piece of it (`invalid port ":S3"`),
// so the error is built from the redacted URL instead of the original's.
func parseRedisURL(s string) (asynq.RedisConnOpt, error) {
	const want = "want redis://, rediss://, redis-socket:// or redis-sentinel://"
	red := RedactURL(s)
	opt, err := asynq.ParseRedisURI(s)
	if err == nil && red != s {
		// A password holding '/', '?' or '#' can parse, with part of it read as the host or
		// the path, and '@' left in the rest: refuse rather than dial a piece of the password.
		if u, perr := url.Parse(s); perr != nil || u.User == nil || strings.Contains(u.EscapedPath()+u.RawQuery+u.Fragment, "@") {
			err = errors.New("the user name or password is not percent-encoded")
		}
	}
	switch {
	case err == nil:
		return opt, nil
	case red == s: // nothing secret in it: asynq's own words
		return nil, fmt.Errorf("%s: %v (%s)", EnvRedisURL, err, want)
	}
	if _, rerr := asynq.ParseRedisURI(red); rerr != nil {
		// The fault is outside the user information: say what it is on the redacted URL.
		return nil, fmt.Errorf("%s: %v (%s)", EnvRedisURL, rerr, want)
	}
	return nil, fmt.Errorf("%s: %s does not parse: percent-encode the user name and password "+
		"(%% as %%25, ? as %%3F, / as %%2F, # as %%23, @ as %%40, space as %%20)", EnvRedisURL, red)
}

// RedactURL returns a Redis URL with its user information hidden, for messages: everything
// between "://" and the last '@' becomes "xxxxx" (the user name is kept when it is plainly one,
// as url.URL.Redacted does). It works on strings url.Parse refuses too, where Redacted cannot:
// a password with an unencoded '/', '?', '#' or '@' moves where the parser thinks the user
// information ends, so the last '@' is the only safe bound.
func RedactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	masked := "xxxxx"
	if user, _, hasPw := strings.Cut(rest[:at], ":"); hasPw && user != "" && plainUser(user) {
		masked = user + ":xxxxx"
	}
	if ok {
		scheme += "://"
	}
	return scheme + masked + rest[at:]
}

// plainUser says whether a URL's user name holds only characters that need no encoding, so
// that showing it cannot show part of a password.
func plainUser(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)) {
			return false
		}
	}
	return true
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseTokens reads "a,b,c" or "@/path/to/file" (one token per line or comma-separated).
func parseTokens(v string) ([]Secret, error) {
	v = strings.TrimSpace(v)
	if path, ok := strings.CutPrefix(v, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvAPITokens, err)
		}
		v = strings.ReplaceAll(string(b), "\n", ",")
	}
	var out []Secret
	for _, t := range splitList(v) {
		if len(t) < 16 {
			return nil, fmt.Errorf("%s: every token must be at least 16 characters", EnvAPITokens)
		}
		out = append(out, Secret(t))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no token", EnvAPITokens)
	}
	return out, nil
}
