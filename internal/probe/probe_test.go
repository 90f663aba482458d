package probe_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wabulk/wabulk/internal/probe"
	"github.com/wabulk/wabulk/internal/redistest"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestReadyFollowsRedisAndHealthDoesNot(t *testing.T) {
	rs := redistest.Start(t)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_test_total", Help: "a series to find"})
	reg.MustRegister(c)
	c.Inc()
	h := probe.Handler(reg, rs.Client(t))

	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{probe.HealthPath, 200, "ok"},
		{probe.ReadyPath, 200, "ok"},
		{probe.MetricsPath, 200, "probe_test_total 1"},
	} {
		if code, body := get(t, h, tc.path); code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.body)
		}
	}

	rs.Stop()
	if code, body := get(t, h, probe.ReadyPath); code != http.StatusServiceUnavailable || !strings.Contains(body, "redis unreachable") {
		t.Errorf("GET /readyz with Redis down = %d %q, want 503 redis unreachable", code, body)
	}
	if code, _ := get(t, h, probe.HealthPath); code != 200 {
		t.Errorf("GET /healthz with Redis down = %d, want 200: liveness must not restart a pod for Redis", code)
	}
	rs.Restart(t)
	if code, _ := get(t, h, probe.ReadyPath); code != 200 {
		t.Errorf("GET /readyz after Redis came back = %d, want 200", code)
	}
}

func TestRegisterWrapsOnlyMetrics(t *testing.T) {
	rs := redistest.Start(t)
	mux := http.NewServeMux()
	deny := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	}
	probe.Register(mux, prometheus.NewRegistry(), rs.Client(t), deny)
	for path, want := range map[string]int{probe.HealthPath: 200, probe.ReadyPath: 200, probe.MetricsPath: 401} {
		if code, _ := get(t, mux, path); code != want {
			t.Errorf("GET %s = %d, want %d", path, code, want)
		}
	}
}
