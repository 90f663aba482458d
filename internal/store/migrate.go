package store

// Migrate: the one-off move of what the single queue of older wabulk versions holds into the
// lanes (`wabulk migrate`). Older versions served, beside the lanes, one asynq queue named after
// the namespace, and kept its jobs' records in each campaign's scope "<ns>:<campaign>":
//
//	asynqKeys(ns) (asynqlayout.go)     the single queue (pending, active, scheduled, retry, archived,
//	                                   completed, lease, stats, task hashes t:<id>); its paused flag
//	                                   stays: it is the namespace's (`wabulk queue pause`)
//	wabulk:{ns:campaign}:counts        enqueued completed dead retries redriven (the other fields stay)
//	wabulk:{ns:campaign}:sent          HASH TaskID -> Kaleyra's answer (the sent marker)
//	wabulk:{ns:campaign}:dead          HASH TaskID -> dead letter; deadcodes: code -> count
//	wabulk:{ns:campaign}:active, retry SET  TaskIDs
//	wabulk:{ns:campaign}:dlv, suppressing   per-TaskID delivery records
//	wabulk:{ns}:reconcile:since        the reconciler's mark of the single queue
//	wabulk:<ns>:m:{<message id>}       "<ns:campaign> <TaskID>" for a message of the single queue
//
// Migrate runs in three steps, each safe to run again, so a migration cut short is finished by
// running it again:
//
//  1. Copy: each task goes into its lane (from its payload: campaign and sender) in the state it
//     had, under its TaskID with its retry count; a payload that does not decode goes to the
//     archive and the dead letters of the poison campaign's lane. Sent markers become the lane
//     task's result (a completed task when the single queue no longer holds it), dead letters
//     and delivery records go to the lane's. A lane that holds the TaskID keeps what it holds.
//  2. Count: each lane gets the counts of what it received (a job per TaskID, sent per marker,
//     dead per dead letter) and the first lane of each campaign the rest of the campaign's
//     counts (retries, redriven, jobs whose records are gone), each lane once: a marker in the
//     lane's slot (wabulk:{lane}:migrated) stops a second run from counting again until step 3
//     ends. Then the lanes are registered live and the message mappings rewritten.
//  3. Delete the single queue's keys and the scopes' old records, then the markers.
//
// Nothing in the old records changes before step 3, so a second run after a cut reads the same
// jobs and lanes. Old workers must be stopped first: Migrate refuses while a worker serves the
// single queue or one of its tasks is active under a live lease.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/wabulk/wabulk/job"
)

// ErrMigrateBusy is Migrate's answer while old workers still serve the single queue.
var ErrMigrateBusy = errors.New("the single queue is in use")

// MigrateReport says what Migrate did or, in a dry run, would do.
type MigrateReport struct {
	DryRun bool `json:"dry_run"`
	// Tasks are the single queue's tasks moved into lanes, by the state they had.
	Tasks map[string]int `json:"tasks"`
	// Poison are the tasks whose payload did not decode: dead letters of PoisonCampaign.
	Poison int `json:"poison"`
	// Sent and Dead are the sent markers and dead letters moved.
	Sent int `json:"sent_markers"`
	Dead int `json:"dead_letters"`
	// Lanes are the lanes that receive tasks or records; Campaigns their campaigns.
	Lanes     []string `json:"lanes"`
	Campaigns []string `json:"campaigns"`
	// Counts are the counts each lane gets (enqueued, completed, dead, retries, redriven).
	Counts map[string]map[string]int64 `json:"counts"`
	// Mappings are the message-id mappings rewritten to name a lane.
	Mappings int `json:"mappings"`
	// Keys are the keys of the single queue and of the old records deleted (in a dry run: that
	// would be deleted).
	Keys int `json:"keys"`
}

// Empty reports whether there was nothing to migrate.
func (r *MigrateReport) Empty() bool {
	n := r.Poison + r.Sent + r.Dead + r.Mappings + r.Keys
	for _, v := range r.Tasks {
		n += v
	}
	return n == 0
}

// migJob is one job of a campaign's old records: its lane and what it left.
type migJob struct {
	lane       string
	task, sent bool   // a task in the single queue; a sent marker (the scope's, or the task's result)
	dead       string // its dead letter's code, when it has one
}

// migration is the plan of a run, built as the old records are read.
type migration struct {
	l      *Ledger
	dry    bool
	now    time.Time
	jobs   map[string]map[string]*migJob // campaign -> TaskID -> job
	due    map[string]float64            // lane -> its earliest scheduled or retry task
	wake   map[string]bool               // lanes that got pending tasks
	report *MigrateReport
}

// The single queue's task lists, in the order Migrate reads them.
var migStates = []struct {
	state string
	list  bool
}{{"pending", true}, {"active", true}, {"scheduled", false}, {"retry", false}, {"archived", false}, {"completed", false}}

// The count fields of a scope that are its jobs' (the others are the campaign's: suppressed and
// the delivery counts stay in the campaign scope).
var migCountFields = []string{"enqueued", "completed", "dead", "retries", "redriven"}

// Migrate moves the single queue's tasks and records into the lanes and deletes it (see the
// comment at the top of this file). With dryRun it only reads, and reports what it would do.
func (l *Ledger) Migrate(ctx context.Context, dryRun bool) (*MigrateReport, error) {
	m := l.newMigration(dryRun)
	if err := m.checkIdle(ctx); err != nil {
		return nil, err
	}
	if !dryRun {
		for _, s := range []*redis.Script{migTaskScript, migMarkerScript} {
			if err := s.Load(ctx, l.rdb).Err(); err != nil {
				return nil, fmt.Errorf("migrate: %w", err)
			}
		}
	}
	// Step 1.
	for _, s := range migStates {
		if err := m.copyTasks(ctx, s.state, s.list); err != nil {
			return nil, err
		}
	}
	campaigns, err := l.Campaigns(ctx)
	if err != nil {
		return nil, err
	}
	campaigns = append(campaigns, PoisonCampaign)
	campaigns = append(campaigns, slices.Collect(maps.Keys(m.jobs))...)
	slices.Sort(campaigns)
	campaigns = slices.Compact(campaigns)
	for _, c := range campaigns {
		if err := m.copyRecords(ctx, c); err != nil {
			return nil, err
		}
	}
	// Step 2.
	lanes := map[string]string{} // lane -> campaign
	for _, c := range campaigns {
		if err := m.count(ctx, c, lanes); err != nil {
			return nil, err
		}
	}
	m.report.Lanes = slices.Sorted(maps.Keys(lanes))
	for _, c := range lanes {
		if !slices.Contains(m.report.Campaigns, c) {
			m.report.Campaigns = append(m.report.Campaigns, c)
		}
	}
	slices.Sort(m.report.Campaigns)
	if err := m.register(ctx, lanes); err != nil {
		return nil, err
	}
	if err := m.remap(ctx); err != nil {
		return nil, err
	}
	// Step 3.
	if err := m.deleteOld(ctx, campaigns); err != nil {
		return nil, err
	}
	return m.report, nil
}

func (l *Ledger) newMigration(dryRun bool) *migration {
	return &migration{l: l, dry: dryRun, now: time.Now(), jobs: map[string]map[string]*migJob{},
		due: map[string]float64{}, wake: map[string]bool{},
		report: &MigrateReport{DryRun: dryRun, Tasks: map[string]int{}, Counts: map[string]map[string]int64{}}}
}

// checkIdle refuses while a worker serves the single queue or a task of it is active under a
// lease that has not run out (a worker that died left the others: they move as pending).
func (m *migration) checkIdle(ctx context.Context) error {
	servers, err := asynq.NewInspectorFromRedisClient(m.l.rdb).Servers()
	if err != nil {
		return fmt.Errorf("migrate: list asynq servers: %w", err)
	}
	for _, s := range servers {
		if _, ok := s.Queues[m.l.queue]; ok {
			return fmt.Errorf("%w: a worker of an older wabulk serves it (%s, pid %d): stop the old workers, then run migrate again",
				ErrMigrateBusy, s.Host, s.PID)
		}
	}
	p := asynqKeys(m.l.queue)
	ids, err := m.l.rdb.LRange(ctx, p.active, 0, -1).Result()
	if err != nil || len(ids) == 0 {
		return err
	}
	leases, err := m.l.rdb.ZMScore(ctx, p.lease, ids...).Result()
	if err != nil {
		return err
	}
	live := 0
	for _, at := range leases {
		if at > float64(m.now.Unix()) {
			live++
		}
	}
	if live > 0 {
		return fmt.Errorf("%w: %d of its tasks are being sent: stop the old workers (or wait for those tasks), then run migrate again",
			ErrMigrateBusy, live)
	}
	return nil
}

// job returns the job id of campaign, adding it.
func (m *migration) job(campaign, id string) *migJob {
	js := m.jobs[campaign]
	if js == nil {
		js = map[string]*migJob{}
		m.jobs[campaign] = js
	}
	j := js[id]
	if j == nil {
		j = &migJob{}
		js[id] = j
	}
	return j
}

// laneOf is the lane of a job of campaign that the single queue no longer holds: the one its
// TaskID names when that is campaign's, else the campaign's default lane.
func (m *migration) laneOf(campaign, id string) string {
	if campaign == PoisonCampaign {
		return m.l.LaneName(PoisonCampaign, "")
	}
	if lane, ok := m.l.LaneOfTask(id); ok && strings.HasPrefix(lane, m.l.campaignScope(campaign)+":") {
		return lane
	}
	return m.l.LaneName(campaign, "")
}

// migBatch is how many tasks or records one round trip reads or writes.
const migBatch = 500

// KEYS: the lane's task hash, the lane's list or set of the task's state. ARGV: id, "list" or
// "zset", score, then the task hash's fields and values. Writes the task unless the lane holds
// its TaskID; returns 1 when it did.
var migTaskScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[2] == 'list' then
  redis.call('LPUSH', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
`)

// copyTasks copies the single queue's tasks of one state into their lanes, oldest first.
func (m *migration) copyTasks(ctx context.Context, state string, list bool) error {
	src := asynqKeys(m.l.queue).state(state)
	for start := int64(0); ; start += migBatch {
		var ids []string
		var scores []float64
		if list {
			// Oldest at the tail: read from there, and push each at the head of its lane's list.
			v, err := m.l.rdb.LRange(ctx, src, -start-migBatch, -start-1).Result()
			if err != nil {
				return fmt.Errorf("migrate: read %s: %w", src, err)
			}
			slices.Reverse(v)
			ids = v
		} else {
			zs, err := m.l.rdb.ZRangeWithScores(ctx, src, start, start+migBatch-1).Result()
			if err != nil {
				return fmt.Errorf("migrate: read %s: %w", src, err)
			}
			for _, z := range zs {
				ids = append(ids, z.Member.(string))
				scores = append(scores, z.Score)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		pipe := m.l.rdb.Pipeline()
		hashes := make([]*redis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			hashes[i] = pipe.HGetAll(ctx, TaskKey(m.l.queue, id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("migrate: read tasks of %s: %w", src, err)
		}
		pipe = m.l.rdb.Pipeline()
		for i, id := range ids {
			fields := hashes[i].Val()
			if len(fields) == 0 {
				continue // an id without its task: deleted with the queue
			}
			score := 0.0
			if scores != nil {
				score = scores[i]
			}
			m.copyTask(ctx, pipe, state, id, score, fields)
		}
		if err := m.exec(ctx, pipe); err != nil {
			return err
		}
		if len(ids) < migBatch {
			return nil
		}
	}
}

// copyTask adds to pipe the copy of one task into its lane.
func (m *migration) copyTask(ctx context.Context, pipe redis.Pipeliner, state, id string, score float64, fields map[string]string) {
	msg := []byte(fields["msg"])
	t, err := decodeTask(msg)
	var p job.Payload
	if err == nil && t.Type != job.TaskType {
		err = fmt.Errorf("task type %q is not %s", t.Type, job.TaskType)
	}
	if err == nil {
		p, err = job.Decode(t.Payload)
	}
	campaign, lane, to := p.Campaign, "", state
	if err != nil {
		// As a worker does with such a task: archived, and a dead letter of the poison campaign.
		campaign, lane, to, score = PoisonCampaign, m.l.LaneName(PoisonCampaign, ""), "archived", float64(m.now.Unix())
		d := DeadLetter{TaskID: id, Code: codeBadPayload, Message: err.Error(), Time: m.now.UTC(), Attempt: t.Retried + 1,
			Raw: t.Payload[:min(len(t.Payload), 4096)]}
		rec, _ := json.Marshal(d)
		if !m.dry {
			pipe.HSetNX(ctx, deadKey(lane), id, rec)
		}
		m.job(campaign, id).dead = d.Code
		m.report.Poison++
	} else {
		lane = m.l.LaneName(p.Campaign, p.From)
		m.report.Tasks[state]++
	}
	j := m.job(campaign, id)
	j.lane, j.task = lane, true
	if fields["result"] != "" {
		j.sent = true
	}
	switch to {
	case "active":
		// Its worker died (checkIdle): pending again, as asynq's recoverer would have it.
		to = "pending"
		if fields["pending_since"] == "" {
			fields["pending_since"] = strconv.FormatInt(m.now.UnixNano(), 10)
		}
		m.wake[lane] = true
	case "pending":
		m.wake[lane] = true
	case "scheduled", "retry":
		if at, ok := m.due[lane]; !ok || score < at {
			m.due[lane] = score
		}
	}
	if m.dry {
		return
	}
	fields["msg"] = string(withQueue(msg, lane))
	fields["state"] = to
	kind := "zset"
	if to == "pending" {
		kind = "list"
	}
	args := []any{id, kind, score}
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		args = append(args, f, fields[f])
	}
	migTaskScript.Run(ctx, pipe, []string{TaskKey(lane, id), asynqKeys(lane).state(to)}, args...)
}

// codeBadPayload is the code of a dead letter whose payload does not decode (the worker's
// CodeBadPayload).
const codeBadPayload = "INVALID_PAYLOAD"

// exec runs pipe and returns its first error but a script's NOSCRIPT, which it loads and runs
// again (Run falls back from EVALSHA to EVAL only outside a pipeline). Every write is idempotent.
func (m *migration) exec(ctx context.Context, pipe redis.Pipeliner) error {
	cmds := pipe.Cmds()
	if len(cmds) == 0 {
		return nil
	}
	_, err := pipe.Exec(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		for _, s := range []*redis.Script{migTaskScript, migMarkerScript} {
			if err := s.Load(ctx, m.l.rdb).Err(); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		again := m.l.rdb.Pipeline()
		for _, c := range cmds {
			again.Process(ctx, c)
		}
		if _, err := again.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("migrate: %w", err)
		}
		return nil
	}
	return fmt.Errorf("migrate: %w", err)
}

// KEYS: the lane's task hash, its completed set. ARGV: id, answer, a TaskMessage, the completed
// task's expiry (Unix s). Makes the answer the task's result (the lane's sent marker), writing a
// completed task when the lane has none under the TaskID.
var migMarkerScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'result', ARGV[2])
  return 0
end
redis.call('HSET', KEYS[1], 'msg', ARGV[3], 'state', 'completed', 'result', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
`)

// copyRecords copies campaign's sent markers, dead letters and delivery records into the lanes
// of their jobs.
func (m *migration) copyRecords(ctx context.Context, campaign string) error {
	scope := m.l.campaignScope(campaign)
	ttl, err := m.l.rdb.TTL(ctx, sentKey(scope)).Result()
	if err != nil {
		return err
	}
	if ttl <= 0 {
		ttl = m.l.retention
	}
	expiry := m.now.Add(ttl).Unix()
	enq := &Enqueuer{taskType: job.TaskType, retention: m.l.retention}
	err = m.scanHash(ctx, sentKey(scope), func(pipe redis.Pipeliner, id, answer string) {
		j := m.job(campaign, id)
		if j.lane == "" {
			j.lane = m.laneOf(campaign, id)
		}
		j.sent = true
		m.report.Sent++
		if !m.dry {
			msg := enq.message(nil, j.lane, Task{ID: id})
			migMarkerScript.Run(ctx, pipe, []string{TaskKey(j.lane, id), CompletedKey(j.lane)}, id, answer, msg, expiry)
		}
	})
	if err != nil {
		return err
	}
	err = m.scanHash(ctx, deadKey(scope), func(pipe redis.Pipeliner, id, rec string) {
		j := m.job(campaign, id)
		if j.lane == "" {
			var d DeadLetter
			if json.Unmarshal([]byte(rec), &d) == nil && d.Payload.Campaign == campaign && campaign != PoisonCampaign {
				j.lane = m.l.LaneName(campaign, d.Payload.From)
			} else {
				j.lane = m.laneOf(campaign, id)
			}
		}
		var d struct {
			Code string `json:"code"`
		}
		json.Unmarshal([]byte(rec), &d)
		j.dead = d.Code
		m.report.Dead++
		if !m.dry {
			pipe.HSetNX(ctx, deadKey(j.lane), id, rec)
		}
	})
	if err != nil {
		return err
	}
	for _, what := range []func(string) string{dlvKey, suppressingKey} {
		ttl, err := m.l.rdb.TTL(ctx, what(scope)).Result()
		if err != nil {
			return err
		}
		if ttl <= 0 {
			ttl = m.l.retention
		}
		lanes := map[string]bool{}
		err = m.scanHash(ctx, what(scope), func(pipe redis.Pipeliner, id, rec string) {
			j := m.jobs[campaign][id]
			if j == nil || m.dry {
				return // the job's other records are gone: nothing to show it with
			}
			pipe.HSetNX(ctx, what(j.lane), id, rec)
			if !lanes[j.lane] {
				lanes[j.lane] = true
				pipe.ExpireNX(ctx, what(j.lane), ttl)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// scanHash calls fn for each field of the hash k with a pipeline that it runs every migBatch
// fields.
func (m *migration) scanHash(ctx context.Context, k string, fn func(pipe redis.Pipeliner, field, value string)) error {
	var cursor uint64
	for {
		kv, next, err := m.l.rdb.HScan(ctx, k, cursor, "", migBatch).Result()
		if err != nil {
			return fmt.Errorf("migrate: read %s: %w", k, err)
		}
		pipe := m.l.rdb.Pipeline()
		for i := 0; i+1 < len(kv); i += 2 {
			fn(pipe, kv[i], kv[i+1])
		}
		if err := m.exec(ctx, pipe); err != nil {
			return err
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// KEYS: the lane's counts, deadcodes, its migrated marker. ARGV: how many count pairs follow,
// then the count fields and amounts, then the dead-letter codes and amounts. Adds them unless
// the marker is set, and sets it.
var migCountScript = redis.NewScript(`
if not redis.call('SET', KEYS[3], '1', 'NX') then return 0 end
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 2 * n + 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
`)

// count gives each lane of campaign the counts of what it received, and its first lane the rest
// of the counts of the campaign's scope; it adds the lanes to lanes.
func (m *migration) count(ctx context.Context, campaign string, lanes map[string]string) error {
	scope := m.l.campaignScope(campaign)
	pipe := m.l.rdb.Pipeline()
	countsCmd := pipe.HMGet(ctx, countsKey(scope), migCountFields...)
	codesCmd := pipe.HGetAll(ctx, deadCodesKey(scope))
	known := pipe.SMembers(ctx, m.l.campaignKey(campaign))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("migrate: counts of %s: %w", campaign, err)
	}
	rest := map[string]int64{}
	for i, f := range migCountFields {
		s, _ := countsCmd.Val()[i].(string)
		rest[f], _ = strconv.ParseInt(s, 10, 64)
	}
	restCodes := map[string]int64{}
	for c, v := range codesCmd.Val() {
		restCodes[c], _ = strconv.ParseInt(v, 10, 64)
	}
	counts := map[string]map[string]int64{}
	codes := map[string]map[string]int64{}
	for _, j := range m.jobs[campaign] {
		c := counts[j.lane]
		if c == nil {
			c, codes[j.lane] = map[string]int64{}, map[string]int64{}
			counts[j.lane] = c
		}
		add := func(f string, n int64) {
			c[f] += n
			rest[f] -= n
		}
		if campaign != PoisonCampaign {
			// The poison campaign's jobs were counted enqueued in a campaign they cannot name.
			add("enqueued", 1)
		}
		if j.sent {
			add("completed", 1)
		}
		if j.dead != "" {
			add("dead", 1)
			codes[j.lane][j.dead]++
			restCodes[j.dead]--
		}
	}
	left := false
	for _, f := range migCountFields {
		left = left || rest[f] > 0
	}
	for _, v := range restCodes {
		left = left || v > 0
	}
	if left {
		// The rest goes to the campaign's first lane: its scope's counts not tied to a job left.
		candidates := append(slices.Collect(maps.Keys(counts)), known.Val()...)
		first := m.l.LaneName(campaign, "")
		if len(candidates) > 0 {
			first = slices.Min(candidates)
		}
		if counts[first] == nil {
			counts[first], codes[first] = map[string]int64{}, map[string]int64{}
		}
		for _, f := range migCountFields {
			counts[first][f] += max(0, rest[f])
		}
		for code, v := range restCodes {
			codes[first][code] += max(0, v)
		}
	}
	for lane, c := range counts {
		maps.DeleteFunc(c, func(_ string, v int64) bool { return v == 0 })
		lanes[lane] = campaign
		m.report.Counts[lane] = c
		if m.dry {
			continue
		}
		args := []any{0}
		n := 0
		for _, f := range migCountFields {
			if c[f] != 0 {
				args, n = append(args, f, c[f]), n+1
			}
		}
		args[0] = n
		for code, v := range codes[lane] {
			if v != 0 {
				args = append(args, code, v)
			}
		}
		if err := m.l.rdb.SAdd(ctx, m.l.migLanesKey(), lane).Err(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if err := migCountScript.Run(ctx, m.l.rdb, []string{countsKey(lane), deadCodesKey(lane), migratedKey(lane)}, args...).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("migrate: counts of %s: %w", lane, err)
		}
	}
	return nil
}

// register makes the lanes live, their retries and scheduled tasks due and their pending tasks
// known to the workers.
func (m *migration) register(ctx context.Context, lanes map[string]string) error {
	if m.dry {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(lanes)) {
		ln := Lane{Name: name, Campaign: lanes[name], Sender: name[strings.LastIndexByte(name, ':')+1:]}
		if err := m.l.RegisterLane(ctx, ln, true); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if err := m.l.rdb.SAdd(ctx, allQueuesKey, name).Err(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if at, ok := m.due[name]; ok {
			if err := m.l.markDue(ctx, name, int64(at)); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
	}
	return m.l.Wake(ctx, slices.Sorted(maps.Keys(m.wake))...)
}

// remap rewrites the message-id mappings that name a campaign scope to name the job's lane, so
// the status callbacks of messages the single queue sent reach the lane's records.
func (m *migration) remap(ctx context.Context) error {
	return m.l.scanKeys(ctx, m.l.mapKeyPattern(), func(ks []string) error {
		vals, err := m.l.mget(ctx, ks)
		if err != nil {
			return err
		}
		pipe := m.l.rdb.Pipeline()
		for i, v := range vals {
			scope, id, ok := strings.Cut(v, " ")
			if !ok {
				continue
			}
			campaign, found := strings.CutPrefix(scope, m.l.queue+":")
			if !found || strings.Contains(campaign, ":") {
				continue
			}
			j := m.jobs[campaign][id]
			if j == nil {
				continue
			}
			m.report.Mappings++
			if !m.dry {
				pipe.Set(ctx, ks[i], m.l.mapValue(j.lane, id), redis.KeepTTL)
			}
		}
		return m.exec(ctx, pipe)
	})
}

// mget reads the string keys ks; a missing key reads as "".
func (l *Ledger) mget(ctx context.Context, ks []string) ([]string, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ks))
	for i, k := range ks {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]string, len(ks))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// scanKeys calls fn with the keys matching the pattern, a batch at a time, on every master of a
// cluster.
func (l *Ledger) scanKeys(ctx context.Context, match string, fn func([]string) error) error {
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		for {
			ks, next, err := c.Scan(ctx, cursor, match, migBatch).Result()
			if err != nil {
				return fmt.Errorf("migrate: scan %s: %w", match, err)
			}
			if len(ks) > 0 {
				if err := fn(ks); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := l.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, l.rdb)
}

// deleteOld deletes the single queue's keys (but its paused flag, the namespace's), the scopes'
// old records, and then the lanes' migrated markers.
func (m *migration) deleteOld(ctx context.Context, campaigns []string) error {
	del := func(ks ...string) error {
		if m.dry {
			n, err := m.l.rdb.Exists(ctx, ks...).Result()
			m.report.Keys += int(n)
			return err
		}
		n, err := m.l.rdb.Del(ctx, ks...).Result()
		m.report.Keys += int(n)
		return err
	}
	paused := asynqPausedKey(m.l.queue)
	err := m.l.scanKeys(ctx, asynqKeys(m.l.queue).all(), func(ks []string) error {
		ks = slices.DeleteFunc(ks, func(k string) bool { return k == paused })
		if len(ks) == 0 {
			return nil
		}
		// One key at a time: on a cluster they share the namespace's slot, but a plain DEL of
		// many keys must too.
		for _, k := range ks {
			if err := del(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: delete the single queue: %w", err)
	}
	if err := del(m.l.ReconcileMark(m.l.queue)); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !m.dry {
		if err := m.l.rdb.SRem(ctx, allQueuesKey, m.l.queue).Err(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	for _, c := range campaigns {
		scope := m.l.campaignScope(c)
		for _, what := range []func(string) string{sentKey, deadKey, deadCodesKey, oldActiveKey, oldRetryKey, dlvKey, suppressingKey} {
			if err := del(what(scope)); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		if m.dry {
			continue
		}
		if err := m.l.rdb.HDel(ctx, countsKey(scope), migCountFields...).Err(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	if m.dry {
		return nil
	}
	marked, err := m.l.rdb.SMembers(ctx, m.l.migLanesKey()).Result()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, lane := range marked {
		if err := m.l.rdb.Del(ctx, migratedKey(lane)).Err(); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return m.l.rdb.Del(ctx, m.l.migLanesKey()).Err()
}
