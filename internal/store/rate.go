package store

// A campaign's send rate. Each ledger scope counts its sends (Kaleyra's accepts, exactly what
// its completed count counts) by the Redis server's clock, in the scope's slot:
//
//	wabulk:{S}:recent  HASH  b<i> -> the 5-second period i holds (Unix seconds / 5),
//	                         n<i> -> sends counted in it; i is the period modulo 13, so the
//	                         hash keeps the last minute in 26 fields; expires 2 minutes after
//	                         its last send
//
// The sent scripts add to it in the same call that counts the sends, so the rate counts what
// was sent, not what workers took. A campaign's rate is its sends over the last minute: one
// HGETALL per lane, whatever the campaign's size or age.

import (
	"strconv"
	"time"
)

const (
	// ratePeriod is the length of one counting period, in seconds.
	ratePeriod = 5
	// ratePeriods is how many periods the rate looks back over, the current one included: 55
	// to 60 seconds.
	ratePeriods = 12
	// rateSlots is how many periods the hash keeps: one more than the window, so the period
	// being written never overwrites one still read.
	rateSlots = ratePeriods + 1
	// rateKeep is how long the hash lives after its last write, in seconds.
	rateKeep = 120
)

// luaReplicate lets a script of Redis 6 read TIME after writing (effects replication, the only
// mode of Redis 7).
const luaReplicate = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
`

// luaRecent counts n sends in the current period of the hash k, by the server's clock. A script
// that calls it must allow effects replication first (luaReplicate), as it reads TIME after
// writing.
var luaRecent = `
local function recent(k, n)
  if n <= 0 then return end
  local p = math.floor(tonumber(redis.call('TIME')[1]) / ` + strconv.Itoa(ratePeriod) + `)
  local i = tostring(p % ` + strconv.Itoa(rateSlots) + `)
  if redis.call('HGET', k, 'b' .. i) == tostring(p) then
    redis.call('HINCRBY', k, 'n' .. i, n)
  else
    redis.call('HSET', k, 'b' .. i, tostring(p), 'n' .. i, n)
  end
  redis.call('EXPIRE', k, ` + strconv.Itoa(rateKeep) + `)
end
`

// recentSends sums, over the scopes' recent hashes h, the sends of the periods in the window
// that ends at now (the server's clock).
func recentSends(now time.Time, hs ...map[string]string) int64 {
	cur := now.Unix() / ratePeriod
	var sum int64
	for _, h := range hs {
		for i := range rateSlots {
			s := strconv.Itoa(i)
			p, err := strconv.ParseInt(h["b"+s], 10, 64)
			if err != nil || p > cur || p <= cur-ratePeriods {
				continue
			}
			n, _ := strconv.ParseInt(h["n"+s], 10, 64)
			sum += n
		}
	}
	return sum
}

// sendRate is sends per second over the window that ends at now: from the start of its first
// period, or from started when the campaign started later; at least one second.
func sendRate(sends int64, now, started time.Time) float64 {
	from := time.Unix((now.Unix()/ratePeriod-ratePeriods+1)*ratePeriod, 0)
	if started.After(from) {
		from = started
	}
	return float64(sends) / max(now.Sub(from).Seconds(), 1)
}
