package httpapi

import (
	_ "embed"
	"net/http"

	"github.com/wabulk/wabulk/internal/probe"
	"github.com/wabulk/wabulk/internal/store"
)

// openAPI is the API's OpenAPI 3 document; a test keeps it and the route table in step.
//
//go:embed openapi.json
var openAPI []byte

// route is one operation the API serves. The table is the one list of routes: the mux is built
// from it and the OpenAPI test compares the document with it.
type route struct {
	method, path string
	// pattern is the ServeMux pattern; empty means method + " " + path.
	pattern string
	handler http.Handler
}

// MonitorPath is where asynqmon is mounted.
const MonitorPath = "/monitor/"

func (s *Server) routeTable() []route {
	monitor := s.basic(s.crossOrigin(s.monitorGuard(s.monitor)))
	return []route{
		{method: "POST", path: "/v1/messages", handler: s.bearer(s.limitLarge(http.HandlerFunc(s.postMessage)))},
		{method: "POST", path: "/v1/campaigns", handler: s.bearer(s.limitLarge(http.HandlerFunc(s.postCampaign)))},
		{method: "GET", path: "/v1/campaigns", handler: s.bearer(http.HandlerFunc(s.listCampaigns))},
		{method: "GET", path: "/v1/campaigns/{id}", handler: s.bearer(http.HandlerFunc(s.getCampaign))},
		{method: "POST", path: "/v1/campaigns/{id}/pause", handler: s.bearer(s.campaignAction("pause", (*store.Ledger).PauseCampaign))},
		{method: "POST", path: "/v1/campaigns/{id}/resume", handler: s.bearer(s.campaignAction("resume", (*store.Ledger).ResumeCampaign))},
		{method: "POST", path: "/v1/campaigns/{id}/cancel", handler: s.bearer(s.campaignAction("cancel", (*store.Ledger).CancelCampaign))},
		{method: "GET", path: "/v1/campaigns/{id}/dead", handler: s.bearer(http.HandlerFunc(s.getDead))},
		{method: "GET", path: "/v1/campaigns/{id}/report", handler: s.bearer(http.HandlerFunc(s.getReport))},
		{method: "GET", path: "/v1/suppressions", handler: s.bearer(http.HandlerFunc(s.getSuppressions))},
		{method: "POST", path: "/v1/suppressions", handler: s.bearer(http.HandlerFunc(s.postSuppressions))},
		{method: "DELETE", path: "/v1/suppressions/{number}", handler: s.bearer(http.HandlerFunc(s.deleteSuppression))},
		{method: "GET", path: "/v1/senders", handler: s.bearer(http.HandlerFunc(s.getSenders))},
		{method: "PUT", path: "/v1/senders/{number}", handler: s.bearer(http.HandlerFunc(s.putSender))},
		{method: "DELETE", path: "/v1/senders/{number}", handler: s.bearer(http.HandlerFunc(s.deleteSender))},
		{method: "POST", path: "/v1/kaleyra/status", handler: s.callbackAuth(http.HandlerFunc(s.postStatus))},
		{method: "GET", path: "/v1/openapi.json", handler: s.bearer(http.HandlerFunc(serveOpenAPI))},
		// asynqmon routes every method itself (its UI and its JSON API under /monitor/api/).
		{method: "GET", path: MonitorPath, pattern: MonitorPath, handler: monitor},
		{method: "POST", path: MonitorPath, pattern: MonitorPath, handler: monitor},
		{method: "DELETE", path: MonitorPath, pattern: MonitorPath, handler: monitor},
	}
}

// routes builds the mux: the route table, the probes (metrics behind the bearer token like every
// route but /healthz and /readyz), and a catch-all so an unknown path is a problem document too.
// Without tokens, a Host that is not a loopback name is refused before any route (hostGuard).
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	seen := map[string]bool{}
	for _, rt := range s.routeTable() {
		p := rt.pattern
		if p == "" {
			p = rt.method + " " + rt.path
		}
		if !seen[p] {
			seen[p] = true
			mux.Handle(p, rt.handler)
		}
	}
	probe.Register(mux, s.reg, s.rdb, s.bearer)
	mux.Handle("/", s.bearer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, newProblem(http.StatusNotFound, CodeNotFound, "no route for "+r.Method+" "+r.URL.Path+"; GET /v1/openapi.json lists them"))
	})))
	return s.instrument(s.hostGuard(mux))
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}
