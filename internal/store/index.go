package store

// The campaign index. The namespace keeps every campaign for WABULK_RETENTION after it
// finished, thousands of them on a busy account; a view of the namespace (status, campaign ls,
// queue ls) reads the campaigns that are not finished and counts the finished ones, so its cost
// follows the active campaigns, not the retention. Both keys are in the namespace's slot:
//
//	wabulk:{ns}:campaigns:active    SET   campaigns not finished: a lane not yet found drained,
//	                                      or a send time to come
//	wabulk:{ns}:campaigns:finished  ZSET  campaigns whose lanes were all found drained, scored
//	                                      by when the last one was (Unix ms)
//
// A campaign joins active when a lane of it is declared or registered (registerScript, which
// also takes it out of finished) and when it is scheduled. It moves to finished when its last lane is retired (RetireDrained): retiring is
// what makes the next enqueue into a lane register it again, and so bring its campaign back.
// Both entries go with the campaign's record (dropLane).
//
// Campaigns written before the index existed, or by an older wabulk, are indexed by SyncIndex,
// which a view runs when the index does not add up to the campaign list; and a view that finds
// an active campaign finished moves it (FinishCampaigns), retiring first the lanes that no
// worker retired and that have sent nothing for two minutes (RetireIdle).

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// luaLanesDone is shared by the scripts that decide a campaign is finished: every lane of the
// campaign's lane set (key) has a score in the drained lanes (done) or has left the registry
// (info: cleaned up, kept in its campaign for its dead letters). It returns that and the latest
// score in ms (0 when there is none).
const luaLanesDone = `
local function lanesdone(done, info, key)
  local at = 0
  for _, ln in ipairs(redis.call('SMEMBERS', key)) do
    local s = redis.call('ZSCORE', done, ln)
    if s then
      at = math.max(at, tonumber(s) * 1000)
    elseif redis.call('HEXISTS', info, ln) == 1 then
      return false, 0
    end
  end
  return true, at
end
`

// KEYS: active finished done scheduled info, then the lane set of each campaign. ARGV: now (Unix
// ms), then the campaigns. Moves each active campaign whose lanes are all drained and that waits for
// no send time from active to finished; returns how many it moved.
var finishScript = redis.NewScript(luaLanesDone + `
local moved = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], id) == 1 and not redis.call('ZSCORE', KEYS[4], id) then
    local all, at = lanesdone(KEYS[3], KEYS[5], KEYS[4 + i])
    if all then
      if at == 0 then at = tonumber(ARGV[1]) end
      redis.call('SREM', KEYS[1], id)
      redis.call('ZADD', KEYS[2], at, id)
      moved = moved + 1
    end
  end
end
return moved
`)

// KEYS: active finished done scheduled info, then the lane set of each campaign. ARGV: the
// campaigns.
// Indexes each campaign that is neither active nor finished: finished when it has lanes, all
// drained, and waits for no send time; else active (a view moves one without lanes once its
// counts say it is finished). Returns how many it indexed.
var indexScript = redis.NewScript(luaLanesDone + `
local n = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], id) == 0 and not redis.call('ZSCORE', KEYS[2], id) then
    local all, at = lanesdone(KEYS[3], KEYS[5], KEYS[5 + i])
    if all and at > 0 and not redis.call('ZSCORE', KEYS[4], id) then
      redis.call('ZADD', KEYS[2], at, id)
    else
      redis.call('SADD', KEYS[1], id)
    end
    n = n + 1
  end
end
return n
`)

// KEYS: campaigns active finished. Takes out of the index the campaigns that are no longer in
// the campaign list (removed by a wabulk that kept no index).
var pruneIndexScript = redis.NewScript(`
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('SISMEMBER', KEYS[1], id) == 0 then redis.call('SREM', KEYS[2], id) end
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if redis.call('SISMEMBER', KEYS[1], id) == 0 then redis.call('ZREM', KEYS[3], id) end
end
return 1
`)

// indexKeys are the fixed keys of finishScript and indexScript, then each campaign's lane set.
func (l *Ledger) indexKeys(ids []string) []string {
	ks := []string{l.activeKey(), l.finishedKey(), l.lanesDoneKey(), l.scheduledKey(), l.lanesInfoKey()}
	for _, id := range ids {
		ks = append(ks, l.campaignKey(id))
	}
	return ks
}

// FinishCampaigns moves each of campaigns that is active, has all its lanes found drained and
// waits for no send time to the finished campaigns, in one call, and returns how many it moved.
// A campaign without lanes moves as well: call it for those only when their counts say they are
// finished.
func (l *Ledger) FinishCampaigns(ctx context.Context, campaigns []string) (int, error) {
	if len(campaigns) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 1+len(campaigns))
	args = append(args, time.Now().UnixMilli())
	for _, c := range campaigns {
		args = append(args, c)
	}
	n, err := finishScript.Run(ctx, l.rdb, l.indexKeys(campaigns), args...).Int()
	if err != nil {
		return 0, fmt.Errorf("finish campaigns: %w", err)
	}
	return n, nil
}

// Index is what the campaign index holds at one moment.
type Index struct {
	// Active are the campaigns not finished, sorted.
	Active []string
	// Finished are the most recently finished campaigns asked for, the latest first.
	Finished []string
	// FinishedTotal is how many finished campaigns the namespace keeps.
	FinishedTotal int64
}

// CampaignIndex reads the active campaigns and the finished ones: the `finished` most recently
// finished (none for 0, every one when negative) and how many there are. It first indexes the
// campaigns the index misses (SyncIndex) when the index does not add up to the campaign list.
// Without that, it is one round trip.
func (l *Ledger) CampaignIndex(ctx context.Context, finished int) (Index, error) {
	for pass := 0; ; pass++ {
		pipe := l.rdb.Pipeline()
		all := pipe.SCard(ctx, l.campaignsKey())
		active := pipe.SMembers(ctx, l.activeKey())
		total := pipe.ZCard(ctx, l.finishedKey())
		var recent *redis.StringSliceCmd
		if finished != 0 {
			stop := int64(finished) - 1
			if finished < 0 {
				stop = -1
			}
			recent = pipe.ZRevRange(ctx, l.finishedKey(), 0, stop)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return Index{}, fmt.Errorf("campaign index: %w", err)
		}
		if all.Val() != int64(len(active.Val()))+total.Val() && pass == 0 {
			if err := l.SyncIndex(ctx); err != nil {
				return Index{}, err
			}
			continue
		}
		ix := Index{Active: active.Val(), FinishedTotal: total.Val()}
		slices.Sort(ix.Active)
		if recent != nil {
			ix.Finished = recent.Val()
		}
		return ix, nil
	}
}

// IndexCounts returns how many campaigns are active and how many finished, in one round trip.
func (l *Ledger) IndexCounts(ctx context.Context) (active, finished int64, err error) {
	pipe := l.rdb.Pipeline()
	a := pipe.SCard(ctx, l.activeKey())
	f := pipe.ZCard(ctx, l.finishedKey())
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, 0, fmt.Errorf("campaign index: %w", err)
	}
	return a.Val(), f.Val(), nil
}

// syncBatch is how many campaigns one call of indexScript looks at.
const syncBatch = 500

// SyncIndex indexes the campaigns of the namespace that the campaign index misses and drops the
// entries of campaigns that are gone. It reads the whole campaign list, so it is for when the
// index does not add up (data from before the index, or written by an older wabulk), not for
// every view.
func (l *Ledger) SyncIndex(ctx context.Context) error {
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		args := make([]any, len(batch))
		for i, id := range batch {
			args[i] = id
		}
		err := indexScript.Run(ctx, l.rdb, l.indexKeys(batch), args...).Err()
		batch = batch[:0]
		return err
	}
	err := l.EachCampaign(ctx, func(id string) (bool, error) {
		batch = append(batch, id)
		if len(batch) < syncBatch {
			return true, nil
		}
		return true, flush()
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = pruneIndexScript.Run(ctx, l.rdb, []string{l.campaignsKey(), l.activeKey(), l.finishedKey()}).Err()
	}
	if err != nil {
		return fmt.Errorf("index campaigns: %w", err)
	}
	return nil
}
