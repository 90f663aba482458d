package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// reserveSrc is the whole shared state change: one script, so the read of the sender's
// theoretical arrival time (TAT), the grant and the write cannot interleave with another
// process's. Times are microseconds of the Redis server's clock (TIME), never the caller's,
// so pods whose clocks disagree still share one schedule. Lua numbers are doubles: µs since
// 1970 (~1.8e15) is exact below 2^53, and %.17g round-trips a double through the string.
//
// Slot j (0-based) of a grant is conformant from tat + (j+1)·T − τ, where τ = Burst·T, so
// the schedule is GCRA with room for Burst at once. The script grants the slots that become
// conformant before now + horizon: none when fewer than `want` would, so processes that
// lose a race for freshly opened slots come back once a batch worth has opened instead of
// once per slot. The key expires ten minutes after its TAT has passed (long enough that a
// later setting with more burst room still sees when the last slot was charged, see below),
// and an expired key behaves exactly like a TAT long past, so expiry loses nothing.
//
// Then, only if every wanted slot was granted, it grants up to `extra` more for the caller's
// pool, but only slots that are conformant now even when charged as if used `life` from now:
// their run starts at max(TAT, now + life). The caller drops them once `life` has passed
// since it sent the call (before the server read TIME), so none is used later than it was
// charged. When the rate binds no slot is conformant now and no extra is granted.
//
// A second key (same hash tag) holds the setting "T τ" the TAT was last advanced under. A
// caller with another setting (the sender's rate was changed, and this process has the new
// one, or still the old one) first moves the TAT from the old schedule onto its own, then
// proceeds as above and records its setting. With T₀, τ₀ the stored setting and T, τ the
// caller's, the new TAT is the larger of
//
//	tat − T₀ + T          the last slot granted was charged at tat − T₀: the next charge comes
//	                      T after it, so charges keep increasing across the change;
//	tat + (T₀−τ₀) − (T−τ) the next slot under the new setting conforms no earlier than the
//	                      next one under the old (tat + T₀ − τ₀), so the change adds no burst;
//
// but at most now + settle − T + τ, so that the next slot conforms no later than now + settle.
// The package comment says why the window bound holds across the change.
//
// KEYS[1] sender key, KEYS[2] its setting key; ARGV interval T (µs), tolerance τ (µs), n
// wanted at most, want at least, horizon (µs), extra at most, life (µs), settle (µs). Returns
// {granted, ceil(tat − now) µs, µs until `want` slots open, extra granted, ceil(new tat − now)
// µs}, each at most 1e15 µs (~31 years) so a tiny rate cannot overflow the integer reply.
const reserveSrc = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local horizon = tonumber(ARGV[5])
local extra = tonumber(ARGV[6])
local life = tonumber(ARGV[7])
local settle = tonumber(ARGV[8])
local mine = ARGV[1] .. ' ' .. ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
local setting = redis.call('GET', KEYS[2])
local changed = setting ~= mine
if changed and setting and tat > 0 then
  local a, b = string.match(setting, '^(%S+) (%S+)$')
  local oT, otau = tonumber(a), tonumber(b)
  if oT and otau and oT > 0 and otau > 0 and oT < math.huge and otau < math.huge then
    local moved = math.max(tat - oT + T, tat + (oT - otau) - (T - tau))
    tat = math.min(moved, now + settle - T + tau)
  end
end
if tat < now then tat = now end
local avail = math.floor((now + horizon + tau - tat) / T)
local k = 0
if avail >= want then k = math.min(n, avail) end
local newtat = tat + k * T
local x = 0
if k == n and extra > 0 then
  local base = math.max(newtat, now + life)
  x = math.min(extra, math.floor((now + tau - base) / T))
  if x > 0 then newtat = base + x * T else x = 0 end
end
if k + x > 0 or changed then
  local px = math.min(math.ceil((newtat - now) / 1000) + 600000, 1e12)
  redis.call('SET', KEYS[1], string.format('%.17g', newtat), 'PX', px)
  redis.call('SET', KEYS[2], mine, 'PX', px)
end
local function cap(v)
  if v > 1e15 then return 1e15 end
  if v < 0 then return 0 end
  return math.ceil(v)
end
return {k, cap(tat - now), cap(newtat + want * T - tau - horizon - now), x, cap(newtat - now)}
`

var reserveScript = redis.NewScript(reserveSrc)

// grant is one answer of the script, in the caller's terms.
type grant struct {
	n     int           // slots granted for waiting callers
	first time.Duration // server "tat − now": where the granted run starts
	retry time.Duration // until `want` more slots open within the horizon
	extra int           // slots granted for the pool, conformant now
	after time.Duration // server "new tat − now": where the next grant would start
}

// reserve runs the script once under setting p: EVALSHA, and EVAL only when Redis lost the
// script (a restart). It returns how many round trips it made so Stats counts what Redis saw.
// Extra slots are charged as if used a grace after the call: the caller must drop them by then.
func (l *Limiter) reserve(ctx context.Context, p *params, key string, n, want, extra int) (grant, int, error) {
	args := []any{
		strconv.FormatFloat(p.intervalUS, 'g', -1, 64),
		strconv.FormatFloat(p.tauUS, 'g', -1, 64),
		n, want, p.horizon.Microseconds(), extra, p.grace.Microseconds(), settle.Microseconds(),
	}
	keys := []string{key, key + ":p"}
	trips := 1
	res, err := reserveScript.EvalSha(ctx, l.rdb, keys, args...).Result()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		trips++
		res, err = reserveScript.Eval(ctx, l.rdb, keys, args...).Result()
	}
	if err != nil {
		return grant{}, trips, err
	}
	vals, ok := res.([]any)
	if !ok || len(vals) != 5 {
		return grant{}, trips, fmt.Errorf("ratelimit: unexpected script answer %v", res)
	}
	var ints [5]int64
	for i, v := range vals {
		if ints[i], ok = v.(int64); !ok {
			return grant{}, trips, fmt.Errorf("ratelimit: unexpected script answer %v", res)
		}
	}
	return grant{
		n:     int(ints[0]),
		first: time.Duration(ints[1]) * time.Microsecond,
		retry: time.Duration(ints[2]) * time.Microsecond,
		extra: int(ints[3]),
		after: time.Duration(ints[4]) * time.Microsecond,
	}, trips, nil
}

// slotOffset is when slot j of a grant becomes conformant, after the server's "now":
// max(0, first + (j+1)·T − τ), rounded up so a slot is never early.
func (p *params) slotOffset(g grant, j int) time.Duration {
	return p.conformAt(float64(g.first.Microseconds()) + float64(j+1)*p.intervalUS)
}

// conformAt is when a slot whose run ends at tat (µs after the server's "now", the slot
// included) becomes conformant: max(0, tat − τ), rounded up, at most ~31 years.
func (p *params) conformAt(tatUS float64) time.Duration {
	us := min(tatUS-p.tauUS, maxIntervalUS)
	if !(us > 0) {
		return 0
	}
	return time.Duration(math.Ceil(us)) * time.Microsecond
}

// key is the sender's Redis key. The {…} hash tag pins it to one Cluster slot; braces in
// the sender would break the tag, so they are replaced.
func (l *Limiter) key(sender string) string {
	s := strings.TrimPrefix(sender, "+")
	s = strings.NewReplacer("{", "_", "}", "_").Replace(s)
	return l.prefix + ":rl:{" + s + "}"
}
