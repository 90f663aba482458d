package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// decode reads a 200 answer into v.
func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if r.code != 200 {
		t.Fatalf("status = %d, want 200; body %s", r.code, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// message enqueues one message into campaign.
func (e *env) message(campaign, to string) Accepted {
	e.t.Helper()
	return e.postJSON("/v1/messages", map[string]string{"campaign": campaign, "to": to, "type": "image", "media_link": link}).accepted(e.t)
}

func ids(l CampaignList) string {
	var s []string
	for _, c := range l.Campaigns {
		s = append(s, c.Campaign)
	}
	return strings.Join(s, " ")
}

func TestListCampaignsPagesSortedByID(t *testing.T) {
	e := setup(t)
	for i, c := range []string{"delta", "alpha", "echo", "charlie", "bravo"} {
		e.message(c, fmt.Sprintf("+91981234560%d", i))
	}
	var all CampaignList
	e.do("GET", "/v1/campaigns", "", nil).decode(t, &all)
	if ids(all) != "alpha bravo charlie delta echo" || all.Next != "" || all.Limit != DefaultListLimit {
		t.Fatalf("list = %q next %q limit %d, want all five sorted, no next, the default limit", ids(all), all.Next, all.Limit)
	}
	if c := all.Campaigns[0]; c.State != store.StateRunning || c.Enqueued != 1 || c.Pending != 1 || c.Priority != store.PriorityNormal || c.StartedAt == nil {
		t.Errorf("alpha = %+v, want running, 1 enqueued and pending, normal priority, a start time", c)
	}

	var pages []string
	after := ""
	for range 4 {
		var p CampaignList
		e.do("GET", "/v1/campaigns?limit=2&after="+url.QueryEscape(after), "", nil).decode(t, &p)
		pages = append(pages, ids(p))
		if after = p.Next; after == "" {
			break
		}
	}
	if got := strings.Join(pages, " | "); got != "alpha bravo | charlie delta | echo" {
		t.Errorf("pages of 2 = %q, want alpha bravo | charlie delta | echo", got)
	}
	var tail CampaignList
	e.do("GET", "/v1/campaigns?after=echo", "", nil).decode(t, &tail)
	if len(tail.Campaigns) != 0 || tail.Next != "" || tail.Campaigns == nil {
		t.Errorf("after the last = %s, want an empty list", e.do("GET", "/v1/campaigns?after=echo", "", nil).body)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after=" + strings.Repeat("a", 257)} {
		if r := e.do("GET", "/v1/campaigns?"+q, "", nil); r.code != 400 || r.problem(t).Code != CodeInvalidRequest {
			t.Errorf("GET /v1/campaigns?%.20s = %d %s, want 400 invalid_request", q, r.code, r.body)
		}
	}
}

func (e *env) action(id, action string) resp {
	e.t.Helper()
	return e.do("POST", "/v1/campaigns/"+id+"/"+action, "", nil)
}

func (e *env) acted(id, action string) CampaignAction {
	e.t.Helper()
	var a CampaignAction
	e.action(id, action).decode(e.t, &a)
	if a.Action != action || a.Campaign.Campaign != id {
		e.t.Fatalf("%s %s answered %+v", action, id, a)
	}
	return a
}

func TestPauseResumeCancel(t *testing.T) {
	e := setup(t)
	e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "pc", Defaults: job.Fields{Type: "image", MediaLink: link},
		Recipients: []job.Fields{{To: "+919812345601"}, {To: "+919812345602"}}}).accepted(t)
	lanePaused := func() bool {
		q, err := e.insp.GetQueueInfo(lane("pc"))
		return err == nil && q.Paused
	}

	if a := e.acted("pc", "pause"); !a.Changed || a.Campaign.State != store.StatePaused || !lanePaused() {
		t.Errorf("pause = %+v (lane paused %v), want changed, paused", a, lanePaused())
	}
	if a := e.acted("pc", "pause"); a.Changed || a.Campaign.State != store.StatePaused {
		t.Errorf("pause again = %+v, want unchanged, paused", a)
	}
	if a := e.acted("pc", "resume"); !a.Changed || a.Campaign.State != store.StateRunning || lanePaused() {
		t.Errorf("resume = %+v (lane paused %v), want changed, running", a, lanePaused())
	}
	if a := e.acted("pc", "resume"); a.Changed || a.Campaign.State != store.StateRunning {
		t.Errorf("resume again = %+v, want unchanged, running", a)
	}
	a := e.acted("pc", "cancel")
	if !a.Changed || a.Campaign.State != store.StateCancelled || a.Campaign.CancelledAt == nil || a.Campaign.Pending != 0 || a.Campaign.Cancelled != 2 {
		t.Errorf("cancel = %+v, want changed, cancelled at a time, both jobs cancelled", a)
	}
	if q, err := e.insp.GetQueueInfo(lane("pc")); err != nil || q.Pending != 0 {
		t.Errorf("lane after cancel: %+v %v, want nothing pending", q, err)
	}
	if again := e.acted("pc", "cancel"); again.Changed || again.Campaign.State != store.StateCancelled ||
		!again.Campaign.CancelledAt.Equal(*a.Campaign.CancelledAt) {
		t.Errorf("cancel again = %+v, want unchanged, the first cancel's time", again)
	}
	for _, act := range []string{"pause", "resume"} {
		r := e.action("pc", act)
		if r.code != 409 {
			t.Fatalf("%s a cancelled campaign = %d %s, want 409", act, r.code, r.body)
		}
		if p := r.problem(t); p.Code != CodeCampaignCancelled || p.Campaign != "pc" || !strings.Contains(p.Detail, "cancelled") {
			t.Errorf("%s a cancelled campaign: %+v", act, p)
		}
	}
	var st CampaignStatus
	e.do("GET", "/v1/campaigns/pc", "", nil).decode(t, &st)
	if st.Campaign.State != store.StateCancelled || st.Campaign.Cancelled != 2 || st.Campaign.FinishedAt == nil {
		t.Errorf("status after cancel = %+v, want cancelled and finished", st.Campaign)
	}

	// Nothing more goes into a cancelled campaign, by any route.
	for name, r := range map[string]resp{
		"JSON campaign": e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "pc", Defaults: job.Fields{Type: "image", MediaLink: link},
			Recipients: []job.Fields{{To: "+919812345603"}}}),
		"streamed campaign": e.do("POST", "/v1/campaigns?campaign=pc&type=image&media_link="+link, "text/csv", strings.NewReader("to\n+919812345603\n")),
		"message":           e.postJSON("/v1/messages", map[string]string{"campaign": "pc", "to": "+919812345603", "type": "image", "media_link": link}),
	} {
		if r.code != 409 {
			t.Errorf("%s into a cancelled campaign = %d %s, want 409", name, r.code, r.body)
			continue
		}
		if p := r.problem(t); p.Code != CodeCampaignCancelled || !strings.Contains(p.Detail, "cancelled") || p.Summary == nil || p.Summary.Enqueued != 0 {
			t.Errorf("%s into a cancelled campaign: %+v", name, p)
		}
	}
	if n, _ := e.insp.GetQueueInfo(lane("pc")); n != nil && n.Pending != 0 {
		t.Errorf("%d pending after enqueues into a cancelled campaign", n.Pending)
	}

	for _, act := range []string{"pause", "resume", "cancel"} {
		if r := e.action("nope", act); r.code != 404 || r.problem(t).Code != CodeUnknownCampaign {
			t.Errorf("%s an unknown campaign = %d %s, want 404 unknown_campaign", act, r.code, r.body)
		}
		if r := e.action("-x", act); r.code != 400 || r.problem(t).Code != CodeInvalidRequest {
			t.Errorf("%s a bad id = %d %s, want 400 invalid_request", act, r.code, r.body)
		}
	}
}

func TestSendAtSchedulesTheCampaign(t *testing.T) {
	e := setup(t)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	a := e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "later", SendAt: at.Format(time.RFC3339),
		Defaults: job.Fields{Type: "image", MediaLink: link}, Recipients: []job.Fields{{To: "+919812345601"}}}).accepted(t)
	if a.Enqueued != 1 || a.State != store.StateScheduled || a.SendAt == nil || !a.SendAt.Equal(at) {
		t.Errorf("scheduled campaign answered %+v, want 1 enqueued, scheduled at %s", a, at)
	}
	var st CampaignStatus
	e.do("GET", "/v1/campaigns/later", "", nil).decode(t, &st)
	if st.Campaign.State != store.StateScheduled || st.Campaign.SendAt == nil || !st.Campaign.SendAt.Equal(at) {
		t.Errorf("status = %+v, want scheduled at %s", st.Campaign, at)
	}
	if q, err := e.insp.GetQueueInfo(lane("later")); err != nil || !q.Paused {
		t.Errorf("lane of a scheduled campaign: %+v %v, want held (paused) until its time", q, err)
	}

	ist := time.FixedZone("IST", 5*3600+1800)
	streamAt := at.In(ist).Format(time.RFC3339)
	b := e.do("POST", "/v1/campaigns?campaign=later-csv&type=image&media_link="+link+"&send_at="+url.QueryEscape(streamAt),
		"text/csv", strings.NewReader("to\n+919812345601\n")).accepted(t)
	if b.State != store.StateScheduled || b.SendAt == nil || !b.SendAt.Equal(at) {
		t.Errorf("streamed with send_at answered %+v, want scheduled at %s", b, at)
	}
	// The same time in the body and the query is one time; a past one sends now.
	c := e.do("POST", "/v1/campaigns?send_at="+url.QueryEscape(streamAt), "application/json",
		strings.NewReader(`{"campaign":"later","send_at":"`+at.Format(time.RFC3339)+`","recipients":[{"to":"+919812345602","type":"image","media_link":"`+link+`"}]}`)).accepted(t)
	if c.State != store.StateScheduled || c.Enqueued != 1 {
		t.Errorf("send_at in body and query: %+v", c)
	}
	if d := e.message("now", "+919812345601"); d.State != store.StateRunning || d.SendAt != nil {
		t.Errorf("message without send_at: state %q send_at %v, want running", d.State, d.SendAt)
	}

	for name, r := range map[string]resp{
		"JSON": e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "bad", SendAt: "tomorrow 9am",
			Defaults: job.Fields{Type: "image", MediaLink: link}, Recipients: []job.Fields{{To: "+919812345601"}}}),
		"JSON, no zone": e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "bad", SendAt: "2030-01-02T09:00:00",
			Defaults: job.Fields{Type: "image", MediaLink: link}, Recipients: []job.Fields{{To: "+919812345601"}}}),
		"stream": e.do("POST", "/v1/campaigns?campaign=bad&type=image&media_link="+link+"&send_at=2030-13-01T00:00:00Z", "text/csv",
			strings.NewReader("to\n+919812345601\n")),
		"body and query differ": e.do("POST", "/v1/campaigns?send_at=2030-01-02T09:00:00Z", "application/json",
			strings.NewReader(`{"campaign":"bad","send_at":"2030-01-02T10:00:00Z","recipients":[{"to":"+919812345601"}]}`)),
	} {
		if r.code != 400 {
			t.Errorf("%s: malformed send_at = %d %s, want 400", name, r.code, r.body)
		} else if p := r.problem(t); p.Code != CodeInvalidRequest || !strings.Contains(p.Detail, "send_at") {
			t.Errorf("%s: %+v, want invalid_request naming send_at", name, p)
		}
	}
	if r := e.do("GET", "/v1/campaigns/bad", "", nil); r.code != 404 {
		t.Errorf("a refused send_at left campaign bad behind: %d %s", r.code, r.body)
	}
}

// commandStats reads INFO commandstats: calls and microseconds by command.
func commandStats(t *testing.T, info string) (calls, usec map[string]int64) {
	t.Helper()
	calls, usec = map[string]int64{}, map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				calls[name] = n
			case "usec":
				usec[name] = n
			}
		}
	}
	return calls, usec
}

// TestCampaignStatusCostDoesNotGrowWithTheCampaignCount: GET /v1/campaigns/{id} in a queue that
// knows 100,000 campaigns costs Redis well under 10 ms and never reads the campaign set whole.
func TestCampaignStatusCostDoesNotGrowWithTheCampaignCount(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	rdb := e.rs.Client(t)
	const n, batch = 100_000, 25_000
	for i := 0; i < n; i += batch {
		members := make([]any, batch)
		for j := range members {
			members[j] = fmt.Sprintf("bulk-%06d", i+j)
		}
		if err := rdb.SAdd(ctx, "wabulk:{"+testQueue+"}:campaigns", members...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	e.postJSON("/v1/campaigns", CampaignRequest{Campaign: "big", Defaults: job.Fields{Type: "image", MediaLink: link},
		Recipients: []job.Fields{{To: "+919812345601"}, {To: "+919812345602"}}}).accepted(t)
	if c, _ := rdb.SCard(ctx, "wabulk:{"+testQueue+"}:campaigns").Result(); c != n+1 {
		t.Fatalf("campaign set holds %d, want %d", c, n+1)
	}

	mon := monitor(t, e.rs)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/v1/campaigns/big", "", nil)
	after, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	seenCmds := mon.stop(rdb)
	var st CampaignStatus
	r.decode(t, &st)
	if st.Campaign.Campaign != "big" || st.Campaign.Enqueued != 2 || st.Campaign.State != store.StateRunning {
		t.Errorf("status = %+v", st.Campaign)
	}

	c0, u0 := commandStats(t, before)
	c1, u1 := commandStats(t, after)
	var spent int64
	var used []string
	for cmd, u := range u1 {
		if cmd == "info" || cmd == "config|resetstat" {
			continue // the measurement's own
		}
		spent += u - u0[cmd]
		used = append(used, fmt.Sprintf("%s×%d=%dµs", cmd, c1[cmd]-c0[cmd], u-u0[cmd]))
	}
	t.Logf("Redis time of one GET /v1/campaigns/{id} with %d campaigns: %dµs (%s)", n, spent, strings.Join(used, " "))
	if spent >= 10_000 {
		t.Errorf("one GET /v1/campaigns/{id} cost Redis %dµs, want under 10 ms: %s", spent, strings.Join(used, " "))
	}
	if c1["sscan"] != c0["sscan"] {
		t.Errorf("SSCAN called %d times by one GET /v1/campaigns/{id}, want never", c1["sscan"]-c0["sscan"])
	}
	// The campaign's own lane set and asynq's queue-info scripts (each lane's groups set) are
	// read with SMEMBERS, so SMEMBERS calls are told apart by key: none may read the set of all
	// campaigns, and all of them together take next to no time.
	campaignSet := strings.ToLower(`"wabulk:{` + testQueue + `}:campaigns"`)
	var smembers int64
	for _, line := range seenCmds {
		l := strings.ToLower(line)
		if strings.Contains(l, `"smembers"`) {
			smembers++
		}
		if (strings.Contains(l, `"smembers"`) || strings.Contains(l, `"sscan"`)) && strings.Contains(l, campaignSet) {
			t.Errorf("GET /v1/campaigns/{id} read the whole campaign set: %s", line)
		}
	}
	if smembers != c1["smembers"]-c0["smembers"] {
		t.Errorf("MONITOR saw %d SMEMBERS, INFO counted %d: the check by key missed some", smembers, c1["smembers"]-c0["smembers"])
	}
	if u := u1["smembers"] - u0["smembers"]; u > 500 {
		t.Errorf("SMEMBERS took %dµs in one GET /v1/campaigns/{id}: a large set was read", u)
	}

	// A page of the list is bounded too: it holds limit campaigns, sorted, with the next cursor.
	var page CampaignList
	e.do("GET", "/v1/campaigns?limit=3", "", nil).decode(t, &page)
	if ids(page) != "big bulk-000000 bulk-000001" || page.Next != "bulk-000001" {
		t.Errorf("first page of 3 = %q next %q", ids(page), page.Next)
	}
	var last CampaignList
	e.do("GET", "/v1/campaigns?limit=2&after=bulk-099998", "", nil).decode(t, &last)
	if ids(last) != "bulk-099999" || last.Next != "" {
		t.Errorf("last page = %q next %q", ids(last), last.Next)
	}
}

// redisMonitor records the commands Redis runs (those of Lua scripts too) through MONITOR.
type redisMonitor struct {
	t    *testing.T
	conn net.Conn
	rd   *bufio.Reader
}

// monitor starts MONITOR on a connection of its own.
func monitor(t *testing.T, rs *redistest.Server) *redisMonitor {
	t.Helper()
	network, addr, password := "unix", strings.TrimPrefix(rs.URL, "redis-socket://"), ""
	if !strings.HasPrefix(rs.URL, "redis-socket://") {
		opt, err := redis.ParseURL(rs.URL)
		if err != nil {
			t.Fatal(err)
		}
		network, addr, password = opt.Network, opt.Addr, opt.Password
	}
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &redisMonitor{t: t, conn: conn, rd: bufio.NewReader(conn)}
	if password != "" {
		fmt.Fprintf(conn, "AUTH %s\r\n", password)
		m.line()
	}
	fmt.Fprint(conn, "MONITOR\r\n")
	if l := m.line(); l != "+OK" {
		t.Fatalf("MONITOR answered %q", l)
	}
	return m
}

func (m *redisMonitor) line() string {
	m.t.Helper()
	m.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := m.rd.ReadString('\n')
	if err != nil {
		m.t.Fatalf("MONITOR: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// stop returns the commands seen so far: it sends a marker through rdb and reads up to it.
func (m *redisMonitor) stop(rdb *redis.Client) []string {
	m.t.Helper()
	const marker = "wabulk-monitor-end"
	if err := rdb.Echo(context.Background(), marker).Err(); err != nil {
		m.t.Fatal(err)
	}
	var lines []string
	for {
		l := m.line()
		if strings.Contains(l, marker) {
			m.conn.Close()
			return lines
		}
		lines = append(lines, l)
	}
}
