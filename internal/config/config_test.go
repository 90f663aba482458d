package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/wabulk/wabulk/internal/ratelimit"
)

// env is a LookupFunc over a map, so tests never touch the process environment.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaults(t *testing.T) {
	got, err := Load(env{}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Burst = 8 // ceil(80/10)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load of nothing:\n got %+v\nwant %+v", got, want)
	}
	if got.RedisURL != "redis://127.0.0.1:6379/0" || got.Queue != "whatsapp" || got.Concurrency != 50 ||
		got.Rate != 80 || got.MaxRetry != 8 || got.RetryBase != 5*time.Second || got.RetryMax != 10*time.Minute ||
		got.HTTPTimeout != 15*time.Second || got.Retention != 24*time.Hour || got.MetricsAddr != ":9090" ||
		got.LogLevel != "info" || got.LogPII != "masked" || got.Addr != ":8080" || got.Region != "in" ||
		got.ShutdownTimeout != 30*time.Second {
		t.Errorf("defaults differ from docs/configuration.md's table: %+v", got)
	}
	if err := got.RequireKaleyra(); err == nil {
		t.Error("RequireKaleyra passed with no SID and no key")
	}
}

func TestLoadReadsEveryVarAndOnlyThose(t *testing.T) {
	asked := map[string]bool{}
	if _, err := Load(func(k string) (string, bool) { asked[k] = true; return "", false }); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range asked {
		got = append(got, k)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(Vars))
	if !slices.Equal(got, want) {
		t.Fatalf("Load reads %v\nVars lists %v", got, want)
	}
	if len(slices.Compact(slices.Clone(want))) != len(Vars) {
		t.Errorf("Vars has duplicates: %v", Vars)
	}
}

func TestLoadValues(t *testing.T) {
	got, err := Load(env{
		EnvRedisURL: " redis://cache:6380/2 ", EnvQueue: "wa", EnvSID: "HX1", EnvAPIKey: " k ", EnvRegion: "eu",
		EnvBaseURL: "http://sandbox:8089", EnvFrom: "+919000000001", EnvConcurrency: "7", EnvRate: "25",
		EnvMaxRetry: "0", EnvRetryBase: "1s", EnvRetryMax: "1m", EnvHTTPTimeout: "3s", EnvRetention: "1h",
		EnvMetricsAddr: "", EnvLogLevel: "debug", EnvLogPII: "full", EnvPauseOn: "E110, RBC001,,",
		EnvAddr: "127.0.0.1:8000", EnvShutdown: "90s",
	}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		RedisURL: "redis://cache:6380/2", Queue: "wa", SID: "HX1", APIKey: "k", Region: "eu",
		BaseURL: "http://sandbox:8089", From: "+919000000001", Concurrency: 7, Rate: 25, Burst: 3,
		MaxRetry: 0, RetryBase: time.Second, RetryMax: time.Minute, HTTPTimeout: 3 * time.Second,
		Retention: time.Hour, MetricsAddr: "", LogLevel: "debug", LogPII: "full", PauseOn: []string{"E110", "RBC001"},
		Addr: "127.0.0.1:8000", ShutdownTimeout: 90 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("\n got %+v\nwant %+v", got, want)
	}
	if err := got.RequireKaleyra(); err != nil {
		t.Errorf("RequireKaleyra: %v", err)
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  env
		want string // the variable the error must name
	}{
		{"concurrency zero", env{EnvConcurrency: "0"}, EnvConcurrency},
		{"concurrency not a number", env{EnvConcurrency: "many"}, EnvConcurrency},
		{"max retry negative", env{EnvMaxRetry: "-1"}, EnvMaxRetry},
		{"burst zero", env{EnvBurst: "0"}, EnvBurst},
		{"rate zero", env{EnvRate: "0"}, EnvRate},
		{"rate negative", env{EnvRate: "-5"}, EnvRate},
		{"rate not a number", env{EnvRate: "fast"}, EnvRate},
		{"rate NaN", env{EnvRate: "NaN"}, EnvRate},
		{"rate infinite", env{EnvRate: "+Inf"}, EnvRate},
		{"retry base without unit", env{EnvRetryBase: "5"}, EnvRetryBase},
		{"retry max negative", env{EnvRetryMax: "-1m"}, EnvRetryMax},
		{"retry max below base", env{EnvRetryBase: "1m", EnvRetryMax: "10s"}, EnvRetryMax},
		{"http timeout zero", env{EnvHTTPTimeout: "0s"}, EnvHTTPTimeout},
		{"retention garbage", env{EnvRetention: "a day"}, EnvRetention},
		{"shutdown timeout zero", env{EnvShutdown: "0"}, EnvShutdown},
		{"redis url scheme", env{EnvRedisURL: "http://cache:6379"}, EnvRedisURL},
		{"redis url db", env{EnvRedisURL: "redis://cache:6379/zero"}, EnvRedisURL},
		{"queue empty", env{EnvQueue: ""}, EnvQueue},
		{"queue with colon", env{EnvQueue: "wa:1"}, EnvQueue},
		{"queue with braces", env{EnvQueue: "{wa}"}, EnvQueue},
		{"queue with space", env{EnvQueue: "wa 1"}, EnvQueue},
		{"region unknown", env{EnvRegion: "us"}, EnvRegion},
		{"log pii unknown", env{EnvLogPII: "partial"}, EnvLogPII},
		{"key file missing", env{EnvAPIKeyFile: "/nonexistent/wabulk/key"}, EnvAPIKeyFile},
		{"token too short", env{EnvAPITokens: "short"}, EnvAPITokens},
		{"tokens only commas", env{EnvAPITokens: ", ,"}, EnvAPITokens},
		{"tokens file missing", env{EnvAPITokens: "@/nonexistent/wabulk/tokens"}, EnvAPITokens},
		{"log level unknown", env{EnvLogLevel: "loud"}, EnvLogLevel},
		{"base url not http", env{EnvBaseURL: "ftp://kaleyra"}, EnvBaseURL},
		{"base url relative", env{EnvBaseURL: "/v2"}, EnvBaseURL},
		{"metrics addr without port", env{EnvMetricsAddr: "localhost"}, EnvMetricsAddr},
		{"serve addr without port", env{EnvAddr: "8080"}, EnvAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.env.lookup)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
	t.Run("every error is reported at once", func(t *testing.T) {
		_, err := Load(env{EnvRate: "x", EnvRegion: "us", EnvConcurrency: "0"}.lookup)
		for _, v := range []string{EnvRate, EnvRegion, EnvConcurrency} {
			if err == nil || !strings.Contains(err.Error(), v) {
				t.Errorf("error %v does not name %s", err, v)
			}
		}
	})
}

func TestAPIKeyFile(t *testing.T) {
	t.Run("read and trimmed", func(t *testing.T) {
		c, err := Load(env{EnvAPIKeyFile: " " + writeFile(t, "  s3cr3t-key\n\n") + " "}.lookup)
		if err != nil {
			t.Fatal(err)
		}
		if c.APIKey.Reveal() != "s3cr3t-key" {
			t.Fatalf("APIKey %q", c.APIKey.Reveal())
		}
	})
	t.Run("key and file together is an error", func(t *testing.T) {
		_, err := Load(env{EnvAPIKey: "k", EnvAPIKeyFile: writeFile(t, "k2")}.lookup)
		if err == nil || !strings.Contains(err.Error(), EnvAPIKey) || !strings.Contains(err.Error(), EnvAPIKeyFile) {
			t.Fatalf("got %v, want an error naming both variables", err)
		}
	})
	t.Run("a blank key beside a file is no conflict", func(t *testing.T) {
		c, err := Load(env{EnvAPIKey: "   ", EnvAPIKeyFile: writeFile(t, "k2")}.lookup)
		if err != nil || c.APIKey.Reveal() != "k2" {
			t.Fatalf("got %q, %v", c.APIKey.Reveal(), err)
		}
	})
	t.Run("an empty key beside a file is no conflict", func(t *testing.T) {
		c, err := Load(env{EnvAPIKey: "", EnvAPIKeyFile: writeFile(t, "k2")}.lookup)
		if err != nil || c.APIKey.Reveal() != "k2" {
			t.Fatalf("got %q, %v", c.APIKey.Reveal(), err)
		}
	})
	t.Run("a missing file's error does not leak another key", func(t *testing.T) {
		_, err := Load(env{EnvAPIKeyFile: "/nonexistent/key"}.lookup)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/key") {
			t.Fatalf("got %v, want the path named", err)
		}
	})
}

func TestAPITokens(t *testing.T) {
	const a, b, c = "token-aaaaaaaaaaaaaaaa", "token-bbbbbbbbbbbbbbbb", "token-cccccccccccccccc"
	reveal := func(ts []Secret) []string {
		var out []string
		for _, s := range ts {
			out = append(out, s.Reveal())
		}
		return out
	}
	for _, tc := range []struct {
		name, value string
		want        []string
	}{
		{"comma list", a + ", " + b + ",", []string{a, b}},
		{"file, one a line", "@" + writeFile(t, a+"\n"+b+"\r\n\n"+c+"\n"), []string{a, b, c}},
		{"file, comma-separated", "@" + writeFile(t, a+","+b), []string{a, b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(env{EnvAPITokens: tc.value}.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if got := reveal(cfg.APITokens); !slices.Equal(got, tc.want) {
				t.Fatalf("tokens %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("an empty file holds no token", func(t *testing.T) {
		if _, err := Load(env{EnvAPITokens: "@" + writeFile(t, "\n")}.lookup); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestBurst(t *testing.T) {
	for _, tc := range []struct {
		rate, burst string
		want        int
	}{
		{"80", "", 8},
		{"81", "", 9},
		{"5", "", 1},
		{"0.5", "", 1},
		{"1000", "", 100},
		{"80", "3", 3},
	} {
		t.Run(tc.rate+"/"+tc.burst, func(t *testing.T) {
			e := env{EnvRate: tc.rate}
			if tc.burst != "" {
				e[EnvBurst] = tc.burst
			}
			c, err := Load(e.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if c.Burst != tc.want {
				t.Fatalf("Burst %d, want %d", c.Burst, tc.want)
			}
		})
	}
	for r, want := range map[float64]int{0.1: 1, 9.99: 1, 10: 1, 10.01: 2, 80: 8, math.SmallestNonzeroFloat64: 1} {
		if got := ratelimit.DefaultBurst(r); got != want {
			t.Errorf("ratelimit.DefaultBurst(%v) = %d, want %d", r, got, want)
		}
	}
}

func TestRedisConnOpt(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  env
		want asynq.RedisConnOpt
	}{
		{"redis", env{EnvRedisURL: "redis://:pw@cache:6380/3"},
			asynq.RedisClientOpt{Addr: "cache:6380", Password: "pw", DB: 3}},
		{"socket", env{EnvRedisURL: "redis-socket:///run/redis.sock?db=2"},
			asynq.RedisClientOpt{Network: "unix", Addr: "/run/redis.sock", DB: 2}},
		{"sentinel", env{EnvRedisURL: "redis-sentinel://:spw@s1:26379,s2:26379,s3:26379/0?master=mymaster"},
			asynq.RedisFailoverClientOpt{MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26379", "s3:26379"}, SentinelPassword: "spw"}},
		{"cluster", env{EnvRedisCluster: "n1:7000, n2:7001,n3:7002", EnvRedisURL: "redis://ignored:1/0"},
			asynq.RedisClusterClientOpt{Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}}},
		{"cluster ignores a URL it would reject", env{EnvRedisCluster: "n1:7000", EnvRedisURL: "not a url"},
			asynq.RedisClusterClientOpt{Addrs: []string{"n1:7000"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.env.lookup)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.RedisConnOpt()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
	t.Run("rediss sets TLS with the host as server name", func(t *testing.T) {
		c, err := Load(env{EnvRedisURL: "rediss://:pw@redis.example.com:6380/1"}.lookup)
		if err != nil {
			t.Fatal(err)
		}
		opt, err := c.RedisConnOpt()
		if err != nil {
			t.Fatal(err)
		}
		ro, ok := opt.(asynq.RedisClientOpt)
		if !ok || ro.TLSConfig == nil || ro.TLSConfig.ServerName != "redis.example.com" || ro.Addr != "redis.example.com:6380" || ro.DB != 1 {
			t.Fatalf("got %#v", opt)
		}
	})
	t.Run("a URL broken after Load is an error naming the variable", func(t *testing.T) {
		c := Defaults()
		c.RedisURL = "ftp://x"
		if _, err := c.RedisConnOpt(); err == nil || !strings.Contains(err.Error(), EnvRedisURL) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestSecretsNeverPrint formats a loaded Config every way a log line or an error might.
func TestSecretsNeverPrint(t *testing.T) {
	const key, tok1, tok2 = "kaleyra-key-DO-NOT-PRINT", "token-DO-NOT-PRINT-000001", "token-DO-NOT-PRINT-000002"
	c, err := Load(env{EnvSID: "HX1", EnvAPIKey: key, EnvAPITokens: tok1 + "," + tok2}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIKey.Reveal() != key || len(c.APITokens) != 2 {
		t.Fatalf("secrets not loaded: %d tokens", len(c.APITokens))
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outs := map[string]string{
		"%v %+v %#v": fmt.Sprintf("%v %+v %#v", c, c, c),
		"pointer":    fmt.Sprintf("%v %+v %#v", &c, &c, &c),
		"one secret": fmt.Sprintf("%s %q %x %X %v %#v", c.APIKey, c.APIKey, c.APIKey, c.APIKey, c.APIKey, c.APIKey) +
			fmt.Sprint(c.APITokens, c.APIKey) + fmt.Sprintf("%#v %x %q", c.APITokens, c.APITokens, c.APITokens),
		"json": string(j),
	}
	for name, out := range outs {
		for _, s := range []string{key, tok1, tok2, "DO-NOT-PRINT", fmt.Sprintf("%x", key)} {
			if strings.Contains(out, s) {
				t.Errorf("%s shows a secret: %s", name, out)
			}
		}
		if !strings.Contains(out, "[redacted]") && !strings.Contains(out, "5b72656461637465645d") && !strings.Contains(out, "5B72656461637465645D") {
			t.Errorf("%s does not show [redacted]: %s", name, out)
		}
	}
}

// TestRequireKaleyra checks the error names both ways to give the key.
func TestRequireKaleyra(t *testing.T) {
	c := Defaults()
	err := c.RequireKaleyra()
	for _, v := range []string{EnvSID, EnvAPIKey, EnvAPIKeyFile} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("error %v does not name %s", err, v)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Real Redis behind TLS and behind Sentinel: the URLs docs/configuration.md documents, end to end through
// Load, RedisConnOpt and asynq.

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedis runs redis-server with args until the test ends and waits for port to accept.
func startRedis(t *testing.T, port int, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not on PATH (Debian/Ubuntu: apt-get install -y redis-server, or run `make deps`)")
	}
	dir := t.TempDir()
	args = append(args, "--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"))
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server %v exited:\n%s", args, log)
		default:
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server %v did not listen on %d", args, port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// roundTrip enqueues a task through the config's connection options and reads it back.
func roundTrip(t *testing.T, c Config) {
	t.Helper()
	opt, err := c.RedisConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.EnqueueContext(ctx, asynq.NewTask("config:test", nil), asynq.Queue(c.Queue)); err != nil {
		t.Fatalf("enqueue through %T: %v", opt, err)
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	info, err := insp.GetQueueInfo(c.Queue)
	if err != nil || info.Pending != 1 {
		t.Fatalf("queue %s: %+v, %v; want 1 pending", c.Queue, info, err)
	}
}

// writeTLSFiles makes a throwaway CA and a server certificate for localhost and 127.0.0.1 signed
// by it, and returns the paths of the CA, the certificate and the key.
func writeTLSFiles(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wabulk test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// TestRedissRealServer runs redis-server with TLS only and reaches it through rediss://. The
// throwaway CA is trusted the way a deployment trusts a private CA: SSL_CERT_FILE (Go reads it
// once, on the first verification in the process, which is this test's).
func TestRedissRealServer(t *testing.T) {
	caFile, certFile, keyFile := writeTLSFiles(t)
	port := freePort(t)
	startRedis(t, port, "--port", "0", "--bind", "127.0.0.1", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no", "--requirepass", "tls-test-pw")
	t.Setenv("SSL_CERT_FILE", caFile)
	c, err := Load(env{EnvRedisURL: "rediss://:tls-test-pw@localhost:" + strconv.Itoa(port) + "/2"}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)

	t.Run("plain redis:// to the TLS port fails", func(t *testing.T) {
		c, err := Load(env{EnvRedisURL: "redis://:tls-test-pw@localhost:" + strconv.Itoa(port) + "/2"}.lookup)
		if err != nil {
			t.Fatal(err)
		}
		opt, _ := c.RedisConnOpt()
		insp := asynq.NewInspector(opt)
		defer insp.Close()
		if _, err := insp.Queues(); err == nil {
			t.Fatal("a plaintext client reached the TLS-only server")
		}
	})
}

// TestSentinelRealServer runs a master and one Sentinel watching it, and reaches the master
// through redis-sentinel://.
func TestSentinelRealServer(t *testing.T) {
	masterPort, sentinelPort := freePort(t), freePort(t)
	startRedis(t, masterPort, "--port", strconv.Itoa(masterPort), "--bind", "127.0.0.1")
	// Sentinel rewrites its configuration file, so it gets one of its own.
	conf := writeFile(t, fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor wabulkmaster 127.0.0.1 %d 1\n", sentinelPort, masterPort))
	startRedis(t, sentinelPort, conf, "--sentinel")
	c, err := Load(env{EnvRedisURL: fmt.Sprintf("redis-sentinel://127.0.0.1:%d/0?master=wabulkmaster", sentinelPort)}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := c.RedisConnOpt()
	if err != nil {
		t.Fatal(err)
	}
	if fo, ok := opt.(asynq.RedisFailoverClientOpt); !ok || fo.MasterName != "wabulkmaster" {
		t.Fatalf("got %#v", opt)
	}
	roundTrip(t, c)
}

// redisSecretURLs are Redis URLs whose password url.Parse cannot read: a bad port, and every
// character that must be percent-encoded. Each password is "Zq9" + that character + "Xk7", so
// a test can look for either half (url.Parse's reasons quote pieces such as `":Zq9"`).
func redisSecretURLs() []string {
	urls := []string{"redis://:Zq9Xk7@127.0.0.1:notaport/0", "redis://admin:Zq9Xk7@127.0.0.1:notaport/0"}
	for _, c := range []string{"%", "?", "/", " ", "#", "%zz", "/1"} {
		for _, shape := range []string{"redis://:%s@127.0.0.1:6379/0", "redis://admin:%s@127.0.0.1:6379/0",
			"rediss://:%s@redis.example.com:6380/1", "redis-socket://:%s@/run/redis.sock?db=2",
			"redis-sentinel://:%s@s1:26379,s2:26379/0?master=m"} {
			urls = append(urls, fmt.Sprintf(shape, "Zq9"+c+"Xk7"))
		}
	}
	return urls
}

// TestRedisURLErrorsNeverShowThePassword: whatever is wrong with WABULK_REDIS_URL, the error
// names the variable and shows neither half of the password, from Load and from RedisConnOpt.
func TestRedisURLErrorsNeverShowThePassword(t *testing.T) {
	for _, u := range redisSecretURLs() {
		_, err := Load(env{EnvRedisURL: u}.lookup)
		if err == nil {
			t.Errorf("%q: Load accepted it", u)
			continue
		}
		c := Defaults()
		c.RedisURL = u
		_, err2 := c.RedisConnOpt()
		for _, e := range []error{err, err2} {
			if e == nil || !strings.Contains(e.Error(), EnvRedisURL) || strings.Contains(e.Error(), "Zq9") || strings.Contains(e.Error(), "Xk7") {
				t.Errorf("%q: error %v: want one naming %s without the password", u, e, EnvRedisURL)
			}
		}
	}
	// A URL with a well-formed password still loads, and a fault elsewhere is still explained.
	if _, err := Load(env{EnvRedisURL: "redis://:Zq9%23Xk7@127.0.0.1:6379/0"}.lookup); err != nil {
		t.Errorf("percent-encoded password refused: %v", err)
	}
	_, err := Load(env{EnvRedisURL: "redis://:Zq9Xk7@127.0.0.1:notaport/0"}.lookup)
	if err == nil || !strings.Contains(err.Error(), "notaport") {
		t.Errorf("bad port: %v, want the reason", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379/0":                "redis://127.0.0.1:6379/0",
		"redis://:pw@h:1/0":                       "redis://xxxxx@h:1/0",
		"redis://admin:pw@h:1/0":                  "redis://admin:xxxxx@h:1/0",
		"redis://admin:p#w/x?y@h:1/0":             "redis://admin:xxxxx@h:1/0",
		"redis://a%20b:pw@h:1/0":                  "redis://xxxxx@h:1/0",
		"redis://p@ss@h:1/0":                      "redis://xxxxx@h:1/0",
		"redis-socket://:pw@/run/r.sock?db=1":     "redis-socket://xxxxx@/run/r.sock?db=1",
		":pw@h:1":                                 "xxxxx@h:1",
		"redis-sentinel://:pw@s1:1,s2:2?master=m": "redis-sentinel://xxxxx@s1:1,s2:2?master=m",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAPIKeyNotAHeaderValueIsRefused: a key with a byte net/http will not send (DEL, NUL, ESC,
// a lone CR) is refused by Load, naming the variable it came from and not showing the key.
func TestAPIKeyNotAHeaderValueIsRefused(t *testing.T) {
	for _, key := range []string{"Zq9\x7fXk7", "Zq9\x00Xk7", "Zq9\x1bXk7", "Zq9\rXk7"} {
		for _, e := range []env{{EnvAPIKey: key}, {EnvAPIKeyFile: writeFile(t, key+"\n")}} {
			name := EnvAPIKey
			if _, ok := e[EnvAPIKeyFile]; ok {
				name = EnvAPIKeyFile
			}
			_, err := Load(e.lookup)
			if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "Zq9") || strings.Contains(err.Error(), "Xk7") {
				t.Errorf("key %q by %s: error %v, want one naming %s without the key", key, name, err, name)
			}
		}
	}
	if c, err := Load(env{EnvAPIKey: "Zq9\tXk7-é"}.lookup); err != nil || c.APIKey.Reveal() != "Zq9\tXk7-é" {
		t.Errorf("a key net/http sends (tab, UTF-8) refused: %v", err)
	}
}

func TestSuppressOnAndCallbackProfile(t *testing.T) {
	c, err := Load(env{EnvSuppressOn: " 131026, 131050 ", EnvCallbackProfile: "prof-1"}.lookup)
	if err != nil || len(c.SuppressOn) != 2 || c.SuppressOn[0] != "131026" || c.SuppressOn[1] != "131050" || c.CallbackProfileID != "prof-1" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if c, err := Load(env{}.lookup); err != nil || len(c.SuppressOn) != 0 || c.CallbackProfileID != "" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	for _, bad := range []env{
		{EnvSuppressOn: "131026,E110"}, {EnvSuppressOn: "1310261310261"}, {EnvSuppressOn: "-1"},
		{EnvCallbackProfile: "a b"}, {EnvCallbackProfile: strings.Repeat("p", 129)}, {EnvCallbackProfile: "x\x00"},
	} {
		if _, err := Load(bad.lookup); err == nil {
			t.Errorf("Load(%v) took it", bad)
		}
	}
}
