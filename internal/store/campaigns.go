package store

// Campaign control. A campaign's state lives in the namespace's slot beside its lane registry:
//
//	wabulk:{ns}:campaign:<id>:state  HASH paused, cancelled_at, send_at, started_at (Unix ms)
//	wabulk:{ns}:scheduled            ZSET campaigns waiting for their send_at, scored by it
//	wabulk:{ns}:lanes:paused         SET  lanes of paused or scheduled campaigns: workers do not
//	                                      serve them (no poll, no slot), see liveLanesScript
//
// and acts on the campaign's lanes in their own slots: asynq's paused flag (asynqPausedKey,
// the flag asynqmon's "pause" sets, so a lane paused there is paused for asynq too) stops every
// worker taking the lane's jobs at once, and the lane's cancelled flag (wabulk:{lane}:cancelled)
// makes the pre-send check (Begin) refuse every job of the lane that is still in a queue. A lane
// declared after the campaign was paused, scheduled or cancelled gets the same flags before its
// first task is written (DeclareLane), so a campaign's state covers senders added later.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// ErrUnknownCampaign is the answer for a campaign id the namespace has no record of.
var ErrUnknownCampaign = errors.New("unknown campaign")

// ErrCampaignCancelled is the producer's answer to an enqueue into a cancelled campaign.
var ErrCampaignCancelled = errors.New("campaign was cancelled")

// The states of a campaign.
const (
	StateScheduled = "scheduled" // waiting for its send_at
	StateRunning   = "running"   // has work and is being sent
	StatePaused    = "paused"    // paused (wabulk campaign pause, or each busy lane in asynqmon)
	StateCancelled = "cancelled" // cancelled: nothing more of it is sent
	StateDone      = "done"      // every job sent, dead or removed
)

// CampaignExists reports whether the namespace has a record of campaign: one SISMEMBER, never a
// scan of all campaigns.
func (l *Ledger) CampaignExists(ctx context.Context, campaign string) (bool, error) {
	ok, err := l.rdb.SIsMember(ctx, l.campaignsKey(), campaign).Result()
	if err != nil {
		return false, fmt.Errorf("campaign %s: %w", campaign, err)
	}
	return ok, nil
}

// requireCampaign is ErrUnknownCampaign (wrapped, with the id) when campaign has no record.
func (l *Ledger) requireCampaign(ctx context.Context, campaign string) error {
	ok, err := l.CampaignExists(ctx, campaign)
	if err == nil && !ok {
		err = fmt.Errorf("%w %q in queue %s", ErrUnknownCampaign, campaign, l.queue)
	}
	return err
}

// campaignState is a campaign's state hash, read.
type campaignState struct {
	paused                       bool
	cancelledAt, sendAt, started time.Time
}

func parseMillis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (l *Ledger) readState(ctx context.Context, campaign string) (campaignState, error) {
	h, err := l.rdb.HGetAll(ctx, l.stateKey(campaign)).Result()
	if err != nil {
		return campaignState{}, fmt.Errorf("campaign %s: %w", campaign, err)
	}
	return parseState(h), nil
}

// parseState reads a campaign's state hash.
func parseState(h map[string]string) campaignState {
	return campaignState{paused: h["paused"] == "1", cancelledAt: parseMillis(h["cancelled_at"]),
		sendAt: parseMillis(h["send_at"]), started: parseMillis(h["started_at"])}
}

// holdLanes pauses (hold) or releases lanes for asynq and for the workers' lane lists. Released
// lanes are announced, so workers serve them at once rather than at their next read.
func (l *Ledger) holdLanes(ctx context.Context, lanes []string, hold bool) error {
	for _, ln := range lanes {
		var err error
		if hold {
			err = l.rdb.SetNX(ctx, asynqPausedKey(ln), time.Now().Unix(), 0).Err()
		} else {
			err = l.rdb.Del(ctx, asynqPausedKey(ln)).Err()
		}
		if err != nil {
			return fmt.Errorf("lane %s: %w", ln, err)
		}
	}
	if len(lanes) == 0 {
		return nil
	}
	pipe := l.rdb.Pipeline()
	members := make([]any, len(lanes))
	for i, ln := range lanes {
		members[i] = ln
	}
	if hold {
		pipe.SAdd(ctx, l.pausedLanesKey(), members...)
	} else {
		pipe.SRem(ctx, l.pausedLanesKey(), members...)
		for _, ln := range lanes {
			pipe.Publish(ctx, l.lanesChannel(), ln)
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

// notCancelled reads the state of a campaign that must exist and not be cancelled: otherwise
// ErrUnknownCampaign, or ErrCampaignCancelled with why (wrapped).
func (l *Ledger) notCancelled(ctx context.Context, campaign, why string) (campaignState, error) {
	if err := l.requireCampaign(ctx, campaign); err != nil {
		return campaignState{}, err
	}
	st, err := l.readState(ctx, campaign)
	if err == nil && !st.cancelledAt.IsZero() {
		err = fmt.Errorf("%w at %s: %s: %s", ErrCampaignCancelled, st.cancelledAt.Format(time.RFC3339), campaign, why)
	}
	return st, err
}

// PauseCampaign stops the campaign's sends: no worker takes another of its jobs (the calls
// already made finish). It reports false when the campaign was paused already.
func (l *Ledger) PauseCampaign(ctx context.Context, campaign string) (bool, error) {
	if _, err := l.notCancelled(ctx, campaign, "there is nothing to pause"); err != nil {
		return false, err
	}
	n, err := l.rdb.HSet(ctx, l.stateKey(campaign), "paused", "1").Result()
	if err != nil {
		return false, err
	}
	lanes, err := l.CampaignLanes(ctx, campaign)
	if err != nil {
		return false, err
	}
	// The lanes are held again even when the campaign was paused already: a lane resumed in
	// asynqmon is paused again by a repeat.
	return n == 1, l.holdLanes(ctx, lanes, true)
}

// ResumeCampaign lets a paused campaign send again (or, scheduled, at its time). It reports
// false when the campaign was not paused.
func (l *Ledger) ResumeCampaign(ctx context.Context, campaign string) (bool, error) {
	st, err := l.notCancelled(ctx, campaign, "it cannot be resumed")
	if err != nil {
		return false, err
	}
	n, err := l.rdb.HDel(ctx, l.stateKey(campaign), "paused").Result()
	if err != nil {
		return false, err
	}
	lanes, err := l.CampaignLanes(ctx, campaign)
	if err != nil {
		return false, err
	}
	// A lane paused only in asynqmon counts as a paused campaign too: resuming releases it.
	paused := n == 1 || l.anyHeld(ctx, lanes)
	if st.sendAt.After(time.Now()) {
		return paused, nil // starts at its time
	}
	if err := l.holdLanes(ctx, lanes, false); err != nil {
		return false, err
	}
	return paused, l.rdb.HSetNX(ctx, l.stateKey(campaign), "started_at", time.Now().UnixMilli()).Err()
}

// anyHeld reports whether asynq holds any of lanes paused.
func (l *Ledger) anyHeld(ctx context.Context, lanes []string) bool {
	for _, ln := range lanes {
		if n, _ := l.rdb.Exists(ctx, asynqPausedKey(ln)).Result(); n > 0 {
			return true
		}
	}
	return false
}

// CancelCampaign ends the campaign for good: its jobs still in a queue are never sent (they are
// removed, and a worker that already took one refuses it before sending), they count as
// cancelled and the report lists them so (cancelled.go), and a later enqueue into the campaign is
// refused. It reports false when the campaign was cancelled already.
func (l *Ledger) CancelCampaign(ctx context.Context, campaign string) (bool, error) {
	if err := l.requireCampaign(ctx, campaign); err != nil {
		return false, err
	}
	first, err := l.rdb.HSetNX(ctx, l.stateKey(campaign), "cancelled_at", time.Now().UnixMilli()).Result()
	if err != nil {
		return false, err
	}
	if err := l.rdb.ZRem(ctx, l.scheduledKey(), campaign).Err(); err != nil {
		return false, err
	}
	lanes, err := l.CampaignLanes(ctx, campaign)
	if err != nil {
		return false, err
	}
	// Flag every lane before removing anything, so a job a worker holds is refused by its
	// pre-send check; then remove what waits, and let the workers drain the rest (a job in flight
	// whose attempt fails comes back to a queue and is refused on its next try).
	for _, ln := range lanes {
		if err := l.rdb.Set(ctx, cancelledKey(ln), "1", 0).Err(); err != nil {
			return false, err
		}
	}
	// A lane declared but with no task written yet has nothing to remove: its flag refuses any
	// that come.
	for _, ln := range lanes {
		if _, err := l.cancelWaiting(ctx, ln); err != nil {
			return false, fmt.Errorf("cancel %s: %w", campaign, err)
		}
	}
	return first, l.holdLanes(ctx, lanes, false)
}

// ScheduleCampaign holds the campaign until at: its lanes, and lanes declared before at, are not
// served until then (workers start due campaigns with StartDue). A time not in the future does
// nothing.
func (l *Ledger) ScheduleCampaign(ctx context.Context, campaign string, at time.Time) error {
	if !at.After(time.Now()) {
		return nil
	}
	ms := at.UnixMilli()
	pipe := l.rdb.TxPipeline()
	pipe.SAdd(ctx, l.campaignsKey(), campaign)
	pipe.SAdd(ctx, l.activeKey(), campaign)
	pipe.ZRem(ctx, l.finishedKey(), campaign)
	pipe.HSet(ctx, l.stateKey(campaign), "send_at", ms)
	pipe.HDel(ctx, l.stateKey(campaign), "started_at")
	pipe.ZAdd(ctx, l.scheduledKey(), redis.Z{Score: float64(ms), Member: campaign})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("schedule %s: %w", campaign, err)
	}
	lanes, err := l.CampaignLanes(ctx, campaign)
	if err != nil {
		return err
	}
	return l.holdLanes(ctx, lanes, true)
}

// StartDue releases the scheduled campaigns whose time has come (unless paused or cancelled
// meanwhile) and returns their ids. Workers call it every lane interval; the ZREM decides which
// worker starts a campaign, so each starts once.
func (l *Ledger) StartDue(ctx context.Context) ([]string, error) {
	now := time.Now()
	due, err := l.rdb.ZRangeByScore(ctx, l.scheduledKey(), &redis.ZRangeBy{Min: "-inf",
		Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 100}).Result()
	if err != nil || len(due) == 0 {
		return nil, err
	}
	var started []string
	for _, c := range due {
		if n, err := l.rdb.ZRem(ctx, l.scheduledKey(), c).Result(); err != nil || n == 0 {
			if err != nil {
				return started, err
			}
			continue
		}
		st, err := l.readState(ctx, c)
		if err != nil {
			return started, err
		}
		if st.paused || !st.cancelledAt.IsZero() {
			continue
		}
		lanes, err := l.CampaignLanes(ctx, c)
		if err != nil {
			return started, err
		}
		if err := l.holdLanes(ctx, lanes, false); err != nil {
			return started, err
		}
		if err := l.rdb.HSetNX(ctx, l.stateKey(c), "started_at", now.UnixMilli()).Err(); err != nil {
			return started, err
		}
		started = append(started, c)
	}
	return started, nil
}

// CheckEnqueue is the producer's check before it enqueues into campaign: ErrCampaignCancelled
// (wrapped) for a cancelled campaign.
func (l *Ledger) CheckEnqueue(ctx context.Context, campaign string) error {
	at, err := l.rdb.HGet(ctx, l.stateKey(campaign), "cancelled_at").Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("campaign %s: %w", campaign, err)
	}
	return fmt.Errorf("%w at %s: %s", ErrCampaignCancelled, parseMillis(at).Format(time.RFC3339), campaign)
}

// flagDeclaredLane gives a lane just declared its campaign's state (see the package comment):
// held when the campaign is paused or scheduled, cancelled when it is, paused when the namespace
// is. state holds what the registration script read: paused, cancelled_at, send_at, the
// namespace's paused flag. A lane made live in a campaign that
// is neither marks the campaign started.
func (l *Ledger) flagDeclaredLane(ctx context.Context, campaign, lane string, live bool, state []any) error {
	get := func(i int) string {
		if i < len(state) {
			s, _ := state[i].(string)
			return s
		}
		return ""
	}
	if get(1) != "" {
		if err := l.rdb.Set(ctx, cancelledKey(lane), "1", 0).Err(); err != nil {
			return fmt.Errorf("lane %s: %w", lane, err)
		}
		return nil
	}
	if get(3) == "1" {
		// The namespace is paused: so is every lane, this one too, until `wabulk queue resume`.
		if err := l.rdb.SetNX(ctx, asynqPausedKey(lane), time.Now().Unix(), 0).Err(); err != nil {
			return fmt.Errorf("lane %s: %w", lane, err)
		}
	}
	if get(0) == "1" || parseMillis(get(2)).After(time.Now()) {
		return l.holdLanes(ctx, []string{lane}, true)
	}
	if live {
		return l.rdb.HSetNX(ctx, l.stateKey(campaign), "started_at", time.Now().UnixMilli()).Err()
	}
	return nil
}

// StateAfterEnqueue is the state of a campaign that has just been given work, from its state
// hash alone (one read, where Campaign reads every lane): cancelled, scheduled, paused or
// running. The producer's answers use it.
func (l *Ledger) StateAfterEnqueue(ctx context.Context, campaign string) (string, *time.Time, error) {
	st, err := l.readState(ctx, campaign)
	switch {
	case err != nil:
		return "", nil, err
	case !st.cancelledAt.IsZero():
		return StateCancelled, timePtr(st.sendAt), nil
	case st.paused:
		return StatePaused, timePtr(st.sendAt), nil
	case st.sendAt.After(time.Now()), !st.sendAt.IsZero() && st.started.IsZero():
		return StateScheduled, timePtr(st.sendAt), nil
	}
	return StateRunning, timePtr(st.sendAt), nil
}

// CampaignInfo is a campaign's counts with its state and timing.
type CampaignInfo struct {
	Counts
	State       string     `json:"state"`
	Priority    Priority   `json:"priority,omitempty"`
	SendAt      *time.Time `json:"send_at,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
	// Rate is messages sent (accepted by Kaleyra) per second: over the last minute while the
	// campaign is running or cancelled, 0 while it is paused or scheduled, and from its start
	// to its end once it is finished.
	Rate float64 `json:"rate"`
	// ETASeconds is how long the jobs left take at Rate; absent when it cannot be told.
	ETASeconds *float64 `json:"eta_seconds,omitempty"`
	// Lanes are the campaign's lanes (asynq queues), sorted by name.
	Lanes []string `json:"-"`
}

// Finished reports whether nothing of the campaign is left to send.
func (c CampaignInfo) Finished() bool {
	return c.State == StateDone || (c.State == StateCancelled && c.left() == 0)
}

func (c CampaignInfo) left() int64 { return c.Pending + c.Active + c.Retry }

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Campaign returns the campaign's counts, state and timing: three round trips, a few commands
// per lane of the campaign, never a read of all campaigns. An unknown campaign is
// ErrUnknownCampaign.
func (l *Ledger) Campaign(ctx context.Context, campaign string) (CampaignInfo, error) {
	infos, err := l.CampaignInfos(ctx, []string{campaign})
	if err != nil {
		return CampaignInfo{}, err
	}
	if len(infos) == 0 {
		return CampaignInfo{}, fmt.Errorf("%w %q in queue %s", ErrUnknownCampaign, campaign, l.queue)
	}
	return infos[0], nil
}

// campaignRead is one campaign's reads queued in CampaignInfos' second pipeline.
type campaignRead struct {
	id     string
	lanes  []string
	state  campaignState
	counts countsRead
	infos  *redis.SliceCmd
	scores *redis.FloatSliceCmd
	paused []*redis.IntCmd
}

// CampaignInfos returns the counts, state and timing of each of ids that the namespace has a
// record of, in the order of ids: three round trips (per Redis node) however many campaigns, and
// a few commands per lane of each.
func (l *Ledger) CampaignInfos(ctx context.Context, ids []string) ([]CampaignInfo, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	// Which campaigns exist, their lanes and their state.
	pipe := l.rdb.Pipeline()
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	exist := pipe.SMIsMember(ctx, l.campaignsKey(), members...)
	lanes := make([]*redis.StringSliceCmd, len(ids))
	states := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		lanes[i] = pipe.SMembers(ctx, l.campaignKey(id))
		states[i] = pipe.HGetAll(ctx, l.stateKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("campaigns: %w", err)
	}
	// Their counts, recent sends, lanes' priorities, drain times and pauses.
	pipe = l.rdb.Pipeline()
	clock := pipe.Time(ctx)
	var reads []*campaignRead
	for i, id := range ids {
		if !exist.Val()[i] {
			continue
		}
		r := &campaignRead{id: id, lanes: lanes[i].Val(), state: parseState(states[i].Val())}
		slices.Sort(r.lanes)
		r.counts = l.queueCounts(ctx, pipe, id, r.lanes, true)
		if len(r.lanes) > 0 {
			r.infos = pipe.HMGet(ctx, l.lanesInfoKey(), r.lanes...)
			r.scores = pipe.ZMScore(ctx, l.lanesDoneKey(), r.lanes...)
			for _, ln := range r.lanes {
				r.paused = append(r.paused, pipe.Exists(ctx, asynqPausedKey(ln)))
			}
		}
		reads = append(reads, r)
	}
	if len(reads) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("campaigns: %w", err)
	}
	now, serverNow := time.Now(), clock.Val()
	if clock.Err() != nil {
		serverNow = now
	}
	out := make([]CampaignInfo, len(reads))
	for i, r := range reads {
		out[i] = r.info(now, serverNow)
	}
	return out, nil
}

// info builds the campaign's CampaignInfo from its reads, at now (serverNow: the same moment by
// the Redis server's clock, which times the recent sends).
func (r *campaignRead) info(now, serverNow time.Time) CampaignInfo {
	st := r.state
	c := r.counts.sum()
	c.Campaign = r.id
	info := CampaignInfo{Counts: c, Lanes: r.lanes, SendAt: timePtr(st.sendAt), StartedAt: timePtr(st.started), CancelledAt: timePtr(st.cancelledAt)}
	var held int
	var doneAt time.Time
	allDone := len(r.lanes) > 0
	for i, ln := range r.lanes {
		raw, _ := r.infos.Val()[i].(string)
		if p, ok := parseLane(ln, raw); ok && info.Priority == "" {
			info.Priority = p.Priority
		}
		if r.paused[i].Val() > 0 {
			held++
		}
	}
	if r.scores != nil {
		for _, s := range r.scores.Val() {
			if s == 0 {
				allDone = false
				continue
			}
			doneAt = later(doneAt, time.Unix(int64(s), 0).UTC())
		}
	}
	switch {
	case !st.cancelledAt.IsZero():
		info.State = StateCancelled
		if info.left() == 0 {
			info.FinishedAt = info.CancelledAt
		}
	case st.sendAt.After(now), !st.sendAt.IsZero() && st.started.IsZero() && !st.paused && held > 0:
		// Scheduled until a worker starts it: its time may have come a moment before that.
		info.State = StateScheduled
	case info.left() == 0:
		info.State = StateDone
		if allDone {
			info.FinishedAt = &doneAt
		}
	case st.paused || (held > 0 && held == len(r.lanes)):
		info.State = StatePaused
	default:
		info.State = StateRunning
	}
	switch {
	case info.State == StatePaused || info.State == StateScheduled:
		// Nothing is sent: the sends of the last minute are from before the pause.
	case info.FinishedAt != nil && info.StartedAt != nil:
		if el := info.FinishedAt.Sub(*info.StartedAt).Seconds(); el > 0 {
			info.Rate = float64(info.Completed) / el
		}
	default:
		info.Rate = sendRate(recentSends(serverNow, r.counts.recent()...), serverNow, st.started)
	}
	if info.State == StateRunning && info.Rate > 0 {
		eta := float64(info.left()) / info.Rate
		info.ETASeconds = &eta
	}
	return info
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// EachCampaign calls fn with each campaign id of the namespace once, in no particular order,
// reading the list in batches, until fn returns false or an error.
func (l *Ledger) EachCampaign(ctx context.Context, fn func(id string) (bool, error)) error {
	var cursor uint64
	seen := map[string]bool{} // SSCAN may return an id twice
	for {
		ids, next, err := l.rdb.SScan(ctx, l.campaignsKey(), cursor, "", 500).Result()
		if err != nil {
			return fmt.Errorf("campaigns: %w", err)
		}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			if more, err := fn(id); err != nil || !more {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// PurgeDead deletes the campaign's dead-letter records and the archived tasks asynq keeps of
// them, for good, and returns how many records it deleted. The campaign's dead count stays (the
// jobs did die); with the records gone its lanes are removed after the retention like any
// finished lane, and the campaign's record with them.
func (l *Ledger) PurgeDead(ctx context.Context, campaign string) (int64, error) {
	if err := l.requireCampaign(ctx, campaign); err != nil {
		return 0, err
	}
	scopes, err := l.scopes(ctx, campaign)
	if err != nil {
		return 0, err
	}
	insp := asynq.NewInspectorFromRedisClient(l.rdb)
	queues, err := insp.Queues()
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", campaign, err)
	}
	var n int64
	for _, sc := range scopes {
		k, err := l.rdb.HLen(ctx, deadKey(sc)).Result()
		if err != nil {
			return n, err
		}
		if err := l.rdb.Del(ctx, deadKey(sc)).Err(); err != nil {
			return n, err
		}
		n += k
		if slices.Contains(queues, sc) {
			if _, err := insp.DeleteAllArchivedTasks(sc); err != nil {
				return n, fmt.Errorf("purge %s: lane %s: %w", campaign, sc, err)
			}
		}
	}
	return n, nil
}
