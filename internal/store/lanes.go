package store

// Lanes. Every (campaign, sender) pair has its own asynq queue, its lane, named
// "<namespace>:<campaign>:<sender>" (sender: the number's digits, or "default" when the job
// leaves it to the worker's KALEYRA_FROM). asynq keys a queue's Redis keys by the hash tag
// {<queue>} and the ledger keys a lane's records by the same tag, so one Lua script can enqueue
// and count, and on Redis Cluster the lanes spread over the masters.
//
// The namespace's lane registry lives in the slot {<namespace>}:
//
//	wabulk:{ns}:campaigns          SET  every campaign that has a lane or a campaign-scope record
//	wabulk:{ns}:lanes:info         HASH lane -> JSON Lane, from its first enqueue until it is cleaned up
//	wabulk:{ns}:lanes:live         SET  lanes workers serve: registered and not yet found drained
//	wabulk:{ns}:lanes:done         ZSET lanes found drained, scored by that time (Unix seconds)
//	wabulk:{ns}:campaign:<id>      SET  the campaign's lanes, until each is cleaned up
//
// and the index of campaigns active and finished beside it (index.go).
//
// Why no lane is ever lost between a producer and a retiring worker: a producer registers the
// lane live ahead of its tasks (info and campaign index, so the campaign's counts see its tasks
// at once; RegisterLaneAhead), writes its tasks, and registers it again unless the enqueue
// script saw the lane's live flag (see RetireDrained for why skipping is safe then); a worker
// retires a lane by clearing the flag, checking that the lane is empty, taking it out of live,
// and checking again, putting it back if it is not empty. Any enqueue either lands before the
// second check (seen there) or finds the flag cleared and registers after the removal.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Priority weights a campaign's share of its sender's rate.
type Priority string

// The priorities. High is for transactional messages that must overtake marketing.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// ParsePriority reads a priority; empty is normal.
func ParsePriority(s string) (Priority, error) {
	switch p := Priority(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return PriorityNormal, nil
	case PriorityHigh, PriorityNormal, PriorityLow:
		return p, nil
	}
	return "", fmt.Errorf("priority %q: want high, normal or low", s)
}

// Lane is one (campaign, sender) queue.
type Lane struct {
	Name     string   `json:"-"`
	Campaign string   `json:"campaign"`
	Sender   string   `json:"sender"` // digits of the E.164 number, or DefaultSender
	Priority Priority `json:"priority"`
}

// DefaultSender is the sender part of a lane whose jobs name no sender: the worker's
// KALEYRA_FROM sends them.
const DefaultSender = "default"

// Namespace is the ledger's namespace (WABULK_QUEUE): the prefix of every lane.
func (l *Ledger) Namespace() string { return l.queue }

// SenderPart is how sender (E.164, "+" optional; empty: the worker's default) appears in lane
// names and TaskIDs.
func SenderPart(sender string) string {
	if s := strings.TrimPrefix(sender, "+"); s != "" {
		return s
	}
	return DefaultSender
}

// LaneName is the lane of campaign's jobs from sender.
func (l *Ledger) LaneName(campaign, sender string) string {
	return l.queue + ":" + campaign + ":" + SenderPart(sender)
}

// LaneOfTask is the lane of a TaskID (campaign:sender:recipient), false when it has no such form.
func (l *Ledger) LaneOfTask(taskID string) (string, bool) {
	i := strings.LastIndexByte(taskID, ':')
	if i <= 0 || !strings.Contains(taskID[:i], ":") {
		return "", false
	}
	return l.queue + ":" + taskID[:i], true
}

// campaignScope is the ledger scope of campaign's records that belong to none of its lanes
// (see the package comment).
func (l *Ledger) campaignScope(campaign string) string { return l.queue + ":" + campaign }

// cluster reports whether the ledger talks to a Redis Cluster, where one command cannot span
// slots.
func (l *Ledger) cluster() bool {
	_, ok := l.rdb.(*redis.ClusterClient)
	return ok
}

// KEYS: info campaigns campaign live done state active finished, the namespace's paused flag.
// ARGV: lane, JSON Lane, campaign id, 1 to keep a registered lane's priority (a redrive) or 0 to
// set it, 1 to make the lane live or 0 only to declare it in its campaign, the channel to
// announce a newly live lane on or empty not to (the message: the lane's name, a space, its priority), the
// lane's priority. Indexes the campaign as active (index.go). Returns the
// campaign's paused, cancelled_at and send_at, for the lane to take its campaign's state, and
// "1" when the namespace is paused (`wabulk queue pause`), for the lane to be paused too.
var registerScript = redis.NewScript(`
if ARGV[4] == "1" then
  redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[7], ARGV[3])
redis.call('ZREM', KEYS[8], ARGV[3])
if ARGV[5] == "1" then
  redis.call('ZREM', KEYS[5], ARGV[1])
  if redis.call('SADD', KEYS[4], ARGV[1]) == 1 then
    if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[1] .. ' ' .. ARGV[7]) end
  end
end
local s = redis.call('HMGET', KEYS[6], 'paused', 'cancelled_at', 'send_at')
s[4] = tostring(redis.call('EXISTS', KEYS[9]))
return s
`)

// RegisterLane makes the lane live, so workers serve it within their discovery interval. Call
// it after writing the lane's tasks (see the package comment). keepPriority leaves the priority
// of a lane already registered as it is.
func (l *Ledger) RegisterLane(ctx context.Context, ln Lane, keepPriority bool) error {
	return l.registerLive(ctx, ln, keepPriority, true)
}

// RegisterLaneAhead registers the lane live before its first tasks are written, without
// announcing it (workers would find it empty): the producer announces it once they are in
// (Wake). One registration where DeclareLane and RegisterLane are two. It is as safe: an enqueue
// whose script finds the lane's live flag cleared by a retirement registers it again, as after
// DeclareLane.
func (l *Ledger) RegisterLaneAhead(ctx context.Context, ln Lane, keepPriority bool) error {
	return l.registerLive(ctx, ln, keepPriority, false)
}

func (l *Ledger) registerLive(ctx context.Context, ln Lane, keepPriority, announce bool) error {
	name, err := l.register(ctx, ln, keepPriority, true, announce)
	if err != nil {
		return err
	}
	// The lane's own live flag, in its slot, tells the next enqueues that the lane is live, so
	// they need not register it again. Set after the registry: a flag without a registration
	// could hide a lane from the workers.
	if err := l.rdb.Set(ctx, liveKey(name), "1", 0).Err(); err != nil {
		return fmt.Errorf("register lane %s: %w", name, err)
	}
	return nil
}

// register runs registerScript for ln, live or only declared in its campaign, and returns the
// lane's name.
func (l *Ledger) register(ctx context.Context, ln Lane, keepPriority, live, announce bool) (string, error) {
	if ln.Name == "" {
		ln.Name = l.LaneName(ln.Campaign, ln.Sender)
	}
	ln.Sender = SenderPart(ln.Sender)
	if ln.Priority == "" {
		ln.Priority = PriorityNormal
	}
	info, err := json.Marshal(ln)
	if err != nil {
		return "", err
	}
	keep, makeLive := 0, 0
	if keepPriority {
		keep = 1
	}
	if live {
		makeLive = 1
	}
	channel := ""
	if announce {
		channel = l.lanesChannel()
	}
	state, err := registerScript.Run(ctx, l.rdb, []string{l.lanesInfoKey(), l.campaignsKey(), l.campaignKey(ln.Campaign),
		l.lanesLiveKey(), l.lanesDoneKey(), l.stateKey(ln.Campaign), l.activeKey(), l.finishedKey(), asynqPausedKey(l.queue)}, ln.Name, info, ln.Campaign, keep, makeLive,
		channel, string(ln.Priority)).Slice()
	if err != nil {
		return "", fmt.Errorf("register lane %s: %w", ln.Name, err)
	}
	return ln.Name, l.flagDeclaredLane(ctx, ln.Campaign, ln.Name, live, state)
}

// DeclareLane records the lane in its campaign before its first tasks are written, so the
// campaign's counts include them even if the producer dies before RegisterLane; workers serve
// a declared lane only once it is registered, or when their upkeep finds it holding work
// (ReviveOrphans).
func (l *Ledger) DeclareLane(ctx context.Context, ln Lane, keepPriority bool) error {
	_, err := l.register(ctx, ln, keepPriority, false, false)
	return err
}

// revive registers a lane found holding work after it left the live set, from its registry
// entry raw, keeping its priority.
func (l *Ledger) revive(ctx context.Context, name, raw string) error {
	ln, ok := parseLane(name, raw)
	if !ok {
		return nil
	}
	return l.RegisterLane(ctx, ln, true)
}

// ReviveOrphans registers the declared lanes that are neither live nor drained but hold work: a
// producer died between writing a lane's first tasks and registering it. It returns their names.
func (l *Ledger) ReviveOrphans(ctx context.Context) ([]string, error) {
	pipe := l.rdb.Pipeline()
	info := pipe.HGetAll(ctx, l.lanesInfoKey())
	live := pipe.SMembers(ctx, l.lanesLiveKey())
	done := pipe.ZRange(ctx, l.lanesDoneKey(), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, n := range live.Val() {
		known[n] = true
	}
	for _, n := range done.Val() {
		known[n] = true
	}
	var revived []string
	for name, raw := range info.Val() {
		if known[name] {
			continue
		}
		n, err := l.Backlog(ctx, name)
		if err != nil {
			return revived, err
		}
		if n == 0 {
			continue
		}
		if err := l.revive(ctx, name, raw); err != nil {
			return revived, err
		}
		revived = append(revived, name)
	}
	return revived, nil
}

// ParseAnnouncement reads a message of the lanes channel: a lane's name, and its priority when
// the lane was just registered live (empty otherwise).
func ParseAnnouncement(msg string) (lane string, priority Priority) {
	name, prio, _ := strings.Cut(msg, " ")
	return name, Priority(prio)
}

// SubscribeLanes subscribes to the announcements of lanes that have work (Wake) or became live,
// so a worker serves them at once instead of at its next read of the live lanes. Close the
// PubSub when done; ParseAnnouncement reads a message.

func (l *Ledger) SubscribeLanes(ctx context.Context) *redis.PubSub {
	return l.rdb.Subscribe(ctx, l.lanesChannel())
}

// KEYS: live info paused. Returns each live lane's name and registry entry (false when it has
// none), leaving out the lanes of paused and scheduled campaigns. Only the live lanes' entries:
// the registry also holds every drained lane until its cleanup after the retention, and workers
// read the live ones every second.
var liveLanesScript = redis.NewScript(`
local names = redis.call('SDIFF', KEYS[1], KEYS[3])
local out = {}
if #names == 0 then return out end
local infos = redis.call('HMGET', KEYS[2], unpack(names))
for i, n in ipairs(names) do
  out[2 * i - 1] = n
  out[2 * i] = infos[i]
end
return out
`)

// LiveLanes returns the lanes workers serve (live, and not held by a paused or scheduled
// campaign), sorted by name, in one Redis call.
func (l *Ledger) LiveLanes(ctx context.Context) ([]Lane, error) {
	vals, err := liveLanesScript.Run(ctx, l.rdb, []string{l.lanesLiveKey(), l.lanesInfoKey(), l.pausedLanesKey()}).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("live lanes: %w", err)
	}
	lanes := make([]Lane, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		name, _ := vals[i].(string)
		info, _ := vals[i+1].(string) // nil (no entry) reads as ""
		if ln, ok := parseLane(name, info); ok {
			lanes = append(lanes, ln)
		}
	}
	slices.SortFunc(lanes, func(a, b Lane) int { return strings.Compare(a.Name, b.Name) })
	return lanes, nil
}

// parseLane reads a lane's registry entry; a missing or unreadable one is taken from the name.
func parseLane(name, info string) (Lane, bool) {
	var ln Lane
	if json.Unmarshal([]byte(info), &ln) != nil || ln.Campaign == "" || ln.Sender == "" {
		parts := strings.Split(name, ":")
		if len(parts) < 3 {
			return Lane{}, false
		}
		ln = Lane{Campaign: parts[len(parts)-2], Sender: parts[len(parts)-1]}
	}
	if _, err := ParsePriority(string(ln.Priority)); err != nil || ln.Priority == "" {
		ln.Priority = PriorityNormal
	}
	ln.Name = name
	return ln, true
}

// Campaigns lists the namespace's campaigns.
func (l *Ledger) Campaigns(ctx context.Context) ([]string, error) {
	return l.rdb.SMembers(ctx, l.campaignsKey()).Result()
}

// CampaignLanes lists campaign's lanes that are not cleaned up yet, sorted by name.
func (l *Ledger) CampaignLanes(ctx context.Context, campaign string) ([]string, error) {
	lanes, err := l.rdb.SMembers(ctx, l.campaignKey(campaign)).Result()
	slices.Sort(lanes)
	return lanes, err
}

// LanesOf lists the lanes of each of campaigns, sorted by name, in one round trip.
func (l *Ledger) LanesOf(ctx context.Context, campaigns []string) ([][]string, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(campaigns))
	for i, c := range campaigns {
		cmds[i] = pipe.SMembers(ctx, l.campaignKey(c))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("lanes of campaigns: %w", err)
	}
	out := make([][]string, len(campaigns))
	for i, c := range cmds {
		out[i] = c.Val()
		slices.Sort(out[i])
	}
	return out, nil
}

// scopes are the ledger scopes of campaign's jobs: its lanes.
func (l *Ledger) scopes(ctx context.Context, campaign string) ([]string, error) {
	lanes, err := l.CampaignLanes(ctx, campaign)
	if err != nil {
		return nil, fmt.Errorf("ledger: lanes of %s: %w", campaign, err)
	}
	return lanes, nil
}

// KEYS: a queue's asynq pending, active, scheduled and retry keys. Returns how many tasks they
// hold: a lane with none has nothing left to do (completed and archived tasks do not count).
var backlogScript = redis.NewScript(`
return redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4])
`)

// Backlog is how many of queue's tasks are pending, active, scheduled or retrying.
func (l *Ledger) Backlog(ctx context.Context, queue string) (int64, error) {
	p := asynqKeys(queue)
	return backlogScript.Run(ctx, l.rdb, []string{PendingKey(queue), p.active, p.scheduled, p.retry}).Int64()
}

// RetireDrained takes the lanes whose backlog is empty out of the live set (workers stop serving
// them) and returns their names. Their completed tasks stay for the retention (the dedupe
// window); CleanUp removes them after it. A campaign whose last lane it retires is finished
// (index.go). Each step is one pipeline for all the lanes, so it costs a few round trips however
// many lanes it is given.
func (l *Ledger) RetireDrained(ctx context.Context, lanes []Lane) (retired []string, err error) {
	if len(lanes) == 0 {
		return nil, nil
	}
	var campaigns []string
	defer func() {
		if _, ferr := l.FinishCampaigns(ctx, campaigns); err == nil {
			err = ferr
		}
	}()
	// Clear each lane's live flag first: an enqueue that still sees it (so will not register the
	// lane) ran before this, and its tasks make the check below find work; one that runs after
	// finds no flag and registers the lane itself. A lane that is not retired after all is
	// registered again by its next enqueue: one call, harmless.
	pipe := l.rdb.Pipeline()
	for _, ln := range lanes {
		pipe.Del(ctx, liveKey(ln.Name))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	n, err := l.backlogs(ctx, lanes)
	if err != nil {
		return nil, err
	}
	var empty []Lane
	for i, ln := range lanes {
		if n[i] == 0 {
			empty = append(empty, ln)
		}
	}
	if len(empty) == 0 {
		return nil, nil
	}
	now := float64(time.Now().Unix())
	tx := l.rdb.TxPipeline()
	for _, ln := range empty {
		tx.SRem(ctx, l.lanesLiveKey(), ln.Name)
		tx.ZAdd(ctx, l.lanesDoneKey(), redis.Z{Score: now, Member: ln.Name})
	}
	if _, err := tx.Exec(ctx); err != nil {
		return nil, err
	}
	// A producer that enqueued between the first check and the removal registered before it
	// (and its registration was undone): look again and put the lane back if so.
	if n, err = l.backlogs(ctx, empty); err != nil {
		return nil, err
	}
	for i, ln := range empty {
		if n[i] > 0 {
			if err := l.RegisterLane(ctx, ln, true); err != nil {
				return retired, err
			}
			continue
		}
		retired = append(retired, ln.Name)
		if c := ln.Campaign; c != "" && !slices.Contains(campaigns, c) {
			campaigns = append(campaigns, c)
		}
	}
	return retired, nil
}

// backlogs is the Backlog of each lane, in one round trip (per Redis node).
func (l *Ledger) backlogs(ctx context.Context, lanes []Lane) ([]int64, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(lanes))
	for i, ln := range lanes {
		p := asynqKeys(ln.Name)
		cmds[i] = backlogScript.Eval(ctx, pipe, []string{PendingKey(ln.Name), p.active, p.scheduled, p.retry})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("backlog: %w", err)
	}
	out := make([]int64, len(lanes))
	for i, c := range cmds {
		v, err := c.Int64()
		if err != nil {
			return nil, fmt.Errorf("backlog of %s: %w", lanes[i].Name, err)
		}
		out[i] = v
	}
	return out, nil
}

// RetireIdle retires, of lanes, those still live that are empty and have sent nothing for two
// minutes (no recent sends: rate.go) (RetireDrained), and returns their names. Workers retire a drained lane within
// seconds; this is for lanes no worker looked at since (a namespace whose workers stopped, or
// data of an older wabulk), so that the views and the lane exporter need not read them again.
func (l *Ledger) RetireIdle(ctx context.Context, lanes []Lane) ([]string, error) {
	if len(lanes) == 0 {
		return nil, nil
	}
	pipe := l.rdb.Pipeline()
	members := make([]any, len(lanes))
	for i, ln := range lanes {
		members[i] = ln.Name
	}
	live := pipe.SMIsMember(ctx, l.lanesLiveKey(), members...)
	recent := make([]*redis.IntCmd, len(lanes))
	for i, ln := range lanes {
		recent[i] = pipe.Exists(ctx, recentKey(ln.Name))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("idle lanes: %w", err)
	}
	var idle []Lane
	for i, ln := range lanes {
		if live.Val()[i] && recent[i].Val() == 0 {
			idle = append(idle, ln)
		}
	}
	return l.RetireDrained(ctx, idle)
}

// RetireCampaign retires the campaign's live lanes that are drained (RetireDrained), so a
// campaign that one process sent to its end (wabulk send) is finished at once, not at a worker's
// next upkeep, or never when no worker serves the namespace.
func (l *Ledger) RetireCampaign(ctx context.Context, campaign string) error {
	names, err := l.CampaignLanes(ctx, campaign)
	if err != nil || len(names) == 0 {
		return err
	}
	members := make([]any, len(names))
	for i, n := range names {
		members[i] = n
	}
	live, err := l.rdb.SMIsMember(ctx, l.lanesLiveKey(), members...).Result()
	if err != nil {
		return err
	}
	var lanes []Lane
	for i, n := range names {
		if live[i] {
			lanes = append(lanes, Lane{Name: n, Campaign: campaign})
		}
	}
	_, err = l.RetireDrained(ctx, lanes)
	return err
}

// CleanUp removes the lanes drained for longer than the retention: it revives a lane that has
// work again (a task run from asynqmon's archive), deletes the completed tasks (all past their
// retention by then), removes the queue from asynq, and drops the lane's ledger records unless
// they hold dead letters. A lane whose queue still holds archived tasks (asynq keeps them up to
// 90 days) is looked at again one retention later. It returns how many lanes it removed.
func (l *Ledger) CleanUp(ctx context.Context, insp *asynq.Inspector, limit int) (int, error) {
	cutoff := time.Now().Add(-l.retention).Unix()
	names, err := l.rdb.ZRangeByScore(ctx, l.lanesDoneKey(), &redis.ZRangeBy{Min: "-inf",
		Max: strconv.FormatInt(cutoff, 10), Count: int64(limit)}).Result()
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, name := range names {
		if n, err := l.Backlog(ctx, name); err != nil {
			return removed, err
		} else if n > 0 {
			info, _ := l.rdb.HGet(ctx, l.lanesInfoKey(), name).Result()
			if err := l.revive(ctx, name, info); err != nil {
				return removed, err
			}
			continue
		}
		if _, err := insp.DeleteAllCompletedTasks(name); err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			return removed, err
		}
		if err := insp.DeleteQueue(name, false); err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			// Archived tasks left: look again later.
			l.rdb.ZAdd(ctx, l.lanesDoneKey(), redis.Z{Score: float64(time.Now().Unix()), Member: name})
			continue
		}
		if err := l.dropLane(ctx, name); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// asynqStatsDays is how long asynq keeps a queue's daily counters (base.StatsTTL: 90 days).
const asynqStatsDays = 90

// dropLane removes a lane whose queue is gone from the registry, and its ledger unless it holds
// dead letters.
func (l *Ledger) dropLane(ctx context.Context, name string) error {
	dead, err := l.rdb.HLen(ctx, deadKey(name)).Result()
	if err != nil {
		return err
	}
	campaign := ""
	if info, err := l.rdb.HGet(ctx, l.lanesInfoKey(), name).Result(); err == nil {
		if ln, ok := parseLane(name, info); ok {
			campaign = ln.Campaign
		}
	}
	// asynq's DeleteQueue leaves the queue's statistics and flags behind: its processed and
	// failed totals, the daily counters (kept 90 days), the lease set and the paused flag.
	p := asynqKeys(name)
	ks := []string{p.processed, p.failed, p.lease, p.paused, p.completed}
	for d := 0; d <= asynqStatsDays; d++ {
		day := time.Now().UTC().AddDate(0, 0, -d).Format("2006-01-02")
		ks = append(ks, p.processedOn(day), p.failedOn(day))
	}
	if dead == 0 {
		ks = append(ks, keys(name)...)
		ks = append(ks, l.ReconcileMark(name), liveKey(name), cancelledJobsKey(name), recentKey(name))
	}
	// One slot: asynq's keys of the lane and the ledger's share the tag {lane}.
	if err := l.rdb.Del(ctx, ks...).Err(); err != nil {
		return err
	}
	pipe := l.rdb.TxPipeline()
	pipe.HDel(ctx, l.lanesInfoKey(), name)
	pipe.SRem(ctx, l.lanesLiveKey(), name)
	pipe.ZRem(ctx, l.lanesDoneKey(), name)
	if campaign != "" && dead == 0 {
		pipe.SRem(ctx, l.campaignKey(campaign), name)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if campaign == "" || dead > 0 {
		return nil
	}
	// The campaign goes from the list once nothing of it is left.
	left, err := l.rdb.SCard(ctx, l.campaignKey(campaign)).Result()
	if err != nil || left > 0 {
		return err
	}
	kept, err := l.rdb.Exists(ctx, keys(l.campaignScope(campaign))...).Result()
	if err != nil || kept > 0 {
		return err
	}
	pipe = l.rdb.TxPipeline()
	pipe.SRem(ctx, l.campaignsKey(), campaign)
	pipe.SRem(ctx, l.activeKey(), campaign)
	pipe.ZRem(ctx, l.finishedKey(), campaign)
	pipe.Del(ctx, l.stateKey(campaign))
	_, err = pipe.Exec(ctx)
	return err
}

// Lock takes the namespace's lock name for ttl and reports whether it got it: for work one
// worker at a time does (lane upkeep, reconciling archives).
func (l *Ledger) Lock(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	return l.rdb.SetNX(ctx, l.lockKey(name), "1", ttl).Result()
}
