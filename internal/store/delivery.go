package store

// Delivery status. Kaleyra's 2xx only says it accepted a message; WhatsApp's verdict comes later
// in status callbacks that name the message by the id Kaleyra's answer carried. The records:
//
//	wabulk:<ns>:m:{<message id>}      STRING the message's scope and TaskID ("<TaskID>", or "<lane> <TaskID>" when the TaskID does not name its lane), retention TTL
//	wabulk:<ns>:p:{<message id>}      STRING a status that arrived before the mapping (parked), "<state>|<code>|<time>", with "|s" after it when it suppresses, retention TTL
//	wabulk:{<scope>}:dlv              HASH   TaskID -> "<state>|<code>|<time>", the furthest status, retention TTL
//	wabulk:{<scope>}:failcodes        HASH   Meta error code -> failed messages
//	wabulk:{<scope>}:counts           HASH   gains delivered, read, failed, not_sent
//	wabulk:{<scope>}:suppressing      HASH   TaskID -> "failed <code>": an applied failure whose number is to be suppressed, until it is
//	wabulk:{<ns>}:callbacks           HASH   unmatched: callbacks parked for an id no worker recorded (yet)
//
// The mapping and the park of one message share a hash tag, the message id. "Map, or park when
// there is no map yet" (the receiver) is one script; the worker writes the map and then reads
// the park: whichever comes second sees the other's write, so an early callback is never left
// parked unseen. Message ids spread over the slots of a cluster.
//
// A status only moves forward: sent < delivered < read, and failed and not_sent are final (and
// apply only before delivered). Applying is one script per scope and batch that compares ranks,
// so a duplicated, reordered or late callback, or a parked one applied twice, counts once.
//
// Suppression follows the same step. A failed update whose code suppresses (StatusUpdate.Suppress,
// kept with a park as "|s") puts the message's TaskID in the scope's suppressing hash in the
// script that applies it, and only when it applies it: a duplicate, a later failure of a failed
// message or a failure after delivered never does. The suppression list lives in the namespace's
// slot, apart from the scope, so the script returns the pending suppression and the caller writes
// it to the list (HSETNX) and then takes it out of the suppressing hash. A failure between the two
// leaves it pending (for the retention window), and the next apply for the message (Kaleyra's
// retry of the callback answered 503, the worker's retry of a parked one) returns it again, even
// as a repeat the ledger does not apply; written, nothing is pending, so a later duplicate
// changes nothing.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The delivery states a callback can set, in the ledger's spelling.
const (
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusFailed    = "failed"
	StatusNotSent   = "not_sent"
)

// ParseStatus reads a callback's status ("not-sent" is Kaleyra's spelling); false for any other.
func ParseStatus(s string) (string, bool) {
	switch s {
	case StatusSent, StatusDelivered, StatusRead, StatusFailed:
		return s, true
	case "not-sent", StatusNotSent:
		return StatusNotSent, true
	}
	return "", false
}

// MaxMessageID caps the bytes of a message id the ledger keeps.
const MaxMessageID = 256

// StatusUpdate is one message's status from one callback.
type StatusUpdate struct {
	MessageID string
	Status    string // one of the Status constants
	Code      string // the Meta error code of a failed message, else empty
	Time      int64  // Unix seconds of the status, as the callback says
	// Suppress puts the recipient on the suppression list when this failed update is applied
	// (now, or once its message is recorded if it is parked). Ignored for any other status and
	// for NeverSuppressed.
	Suppress bool
}

// NeverSuppressed is the Meta code of a message sent outside the 24-hour window (the recipient
// has not written to the business lately): no failure with it suppresses, as the number can be
// reached again once it writes.
const NeverSuppressed = "131047"

// suppresses reports whether u puts its recipient on the suppression list when applied.
func (u StatusUpdate) suppresses() bool {
	return u.Suppress && u.Status == StatusFailed && u.Code != NeverSuppressed
}

// ApplyResult says what Apply did with a batch.
type ApplyResult struct {
	Matched int // updates whose message id a worker had recorded
	Parked  int // updates kept for a message id not (yet) recorded
	// Suppressed counts the numbers the applied updates added to the suppression list.
	Suppressed int
}

// luaRank is shared by the scripts: a state's rank, and whether new moves old forward.
const luaRank = `
local function rank(s)
  if s == 'sent' then return 1 elseif s == 'delivered' then return 2 elseif s == 'read' then return 3
  elseif s == 'failed' or s == 'not_sent' then return 4 end
  return 0
end
local function forward(old, new)
  local o, n = rank(old), rank(new)
  if o == 4 then return false end
  if n == 4 then return o < 2 end
  return n > o
end
local function state(rec)
  if not rec then return '' end
  local i = string.find(rec, '|', 1, true)
  if not i then return rec end
  return string.sub(rec, 1, i - 1)
end
`

// KEYS: map park. ARGV: record, ttl. Returns the map's value, or false after parking the record
// (kept only when it moves the parked one forward); the second value is 1 when the park is new.
var lookupScript = redis.NewScript(luaRank + `
local m = redis.call('GET', KEYS[1])
if m then return {m, 0} end
local old = redis.call('GET', KEYS[2])
if forward(state(old), state(ARGV[1])) then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
if old then return {false, 0} end
return {false, 1}
`)

// KEYS: counts dlv failcodes suppressing. ARGV: ttl, then taskID, record, suppress ("1" or "0")
// for each update. Returns two values for each update: 1 when it moved the message forward, 2
// when the message is in that state already (a repeat), else 0; then the message's pending
// suppression ("failed <code>", put there by this update or an earlier one), else an empty string.
var applyScript = redis.NewScript(luaRank + `
local out = {}
local d, r, f, ns = 0, 0, 0, 0
for i = 2, #ARGV, 3 do
  local id, rec, sup = ARGV[i], ARGV[i+1], ARGV[i+2]
  local cur = state(redis.call('HGET', KEYS[2], id))
  local new = state(rec)
  if forward(cur, new) then
    redis.call('HSET', KEYS[2], id, rec)
    local o = rank(cur)
    if (new == 'delivered' or new == 'read') and o < 2 then d = d + 1 end
    if new == 'read' then r = r + 1 end
    if new == 'failed' then
      f = f + 1
      local code = string.match(rec, '^[^|]*|([^|]*)|')
      if not code or code == '' then code = 'unknown' end
      redis.call('HINCRBY', KEYS[3], code, 1)
      if sup == '1' then
        redis.call('HSET', KEYS[4], id, 'failed ' .. code)
        redis.call('EXPIRE', KEYS[4], ARGV[1])
      end
    end
    if new == 'not_sent' then ns = ns + 1 end
    out[#out+1] = 1
    cur = new
  elseif cur == new then
    out[#out+1] = 2
  else
    out[#out+1] = 0
  end
  local due = false
  if cur == 'failed' then due = redis.call('HGET', KEYS[4], id) end
  out[#out+1] = due or ''
end
if d > 0 then redis.call('HINCRBY', KEYS[1], 'delivered', d) end
if r > 0 then redis.call('HINCRBY', KEYS[1], 'read', r) end
if f > 0 then redis.call('HINCRBY', KEYS[1], 'failed', f) end
if ns > 0 then redis.call('HINCRBY', KEYS[1], 'not_sent', ns) end
redis.call('EXPIRE', KEYS[2], ARGV[1])
return out
`)

// statusItem is one update of a scope's batch: the message's TaskID, its record, and whether it
// suppresses.
type statusItem struct {
	taskID, rec string
	suppress    bool
}

// applyScope applies items to scope's records in one script and then writes the suppressions it
// returns (suppressDue); it returns what suppressDue added.
func (l *Ledger) applyScope(ctx context.Context, scope string, items []statusItem) (int, error) {
	args := make([]any, 0, 1+3*len(items))
	args = append(args, int64(l.retention/time.Second))
	for _, it := range items {
		sup := "0"
		if it.suppress {
			sup = "1"
		}
		args = append(args, it.taskID, it.rec, sup)
	}
	keys := []string{countsKey(scope), dlvKey(scope), failCodesKey(scope), suppressingKey(scope)}
	out, err := applyScript.Run(ctx, l.rdb, keys, args...).Slice()
	if err != nil {
		return 0, err
	}
	if len(out) != 2*len(items) {
		return 0, fmt.Errorf("apply answered %d values for %d updates", len(out), len(items))
	}
	var due []pendingSuppression
	for i, it := range items {
		if src, _ := out[2*i+1].(string); src != "" {
			due = append(due, pendingSuppression{taskID: it.taskID, source: src})
		}
	}
	return l.suppressDue(ctx, scope, due)
}

// record is a status as the ledger stores it.
func record(u StatusUpdate) string {
	return u.Status + "|" + u.Code + "|" + strconv.FormatInt(u.Time, 10)
}

// parkSuppress marks a parked record whose update suppresses; the record's time is digits, so
// the mark cannot be mistaken for part of it.
const parkSuppress = "|s"

// parkRecord is u as it is parked.
func parkRecord(u StatusUpdate) string {
	if u.suppresses() {
		return record(u) + parkSuppress
	}
	return record(u)
}

// parseRecord reads a stored status record.
func parseRecord(rec string) (status, code string, at int64) {
	parts := strings.SplitN(rec, "|", 3)
	status = parts[0]
	if len(parts) > 1 {
		code = parts[1]
	}
	if len(parts) > 2 {
		at, _ = strconv.ParseInt(parts[2], 10, 64)
	}
	return status, code, at
}

// mapValue and parseMapValue write and read a message's lane and TaskID: a TaskID names its
// lane, so the lane is stored only for a task whose TaskID does not.
func (l *Ledger) mapValue(scope, taskID string) string {
	if lane, ok := l.LaneOfTask(taskID); ok && lane == scope {
		return taskID
	}
	return scope + " " + taskID
}

func (l *Ledger) parseMapValue(v string) (scope, taskID string, ok bool) {
	if s, t, found := strings.Cut(v, " "); found {
		return s, t, s != "" && t != ""
	}
	lane, ok := l.LaneOfTask(v)
	return lane, v, ok
}

// ValidMessageID checks a message id from a callback: 1 to MaxMessageID bytes of printable ASCII
// without braces or spaces (it becomes part of a Redis key and its hash tag).
func ValidMessageID(id string) bool {
	if id == "" || len(id) > MaxMessageID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// ErrBadUpdate is Apply's answer for an update that is not one the ledger can keep.
var ErrBadUpdate = errors.New("status update is not valid")

// Apply records a batch of status callbacks: each update moves its message forward when it is
// known, or is parked under its message id until a worker records it (MapMessage). Every step is
// idempotent, so a batch that failed midway (an error) can be applied again in whole.
func (l *Ledger) Apply(ctx context.Context, updates []StatusUpdate) (ApplyResult, error) {
	var res ApplyResult
	for _, u := range updates {
		if !ValidMessageID(u.MessageID) || strings.Contains(u.Code, "|") || len(u.Code) > 32 {
			return res, ErrBadUpdate
		}
		if _, ok := ParseStatus(u.Status); !ok {
			return res, ErrBadUpdate
		}
	}
	ttl := int64(l.retention / time.Second)
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(updates))
	for i, u := range updates {
		cmds[i] = lookupScript.Run(ctx, pipe, []string{l.mapKey(u.MessageID), l.parkKey(u.MessageID)}, parkRecord(u), ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		// Run falls back from EVALSHA to EVAL only outside a pipeline.
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return res, fmt.Errorf("ledger: callback: %w", err)
		}
		if err := lookupScript.Load(ctx, l.rdb).Err(); err != nil {
			return res, fmt.Errorf("ledger: callback: %w", err)
		}
		return l.Apply(ctx, updates)
	}
	byScope := map[string][]statusItem{}
	var order []string
	newParks := 0
	for i, c := range cmds {
		vals, _ := c.Val().([]any)
		if len(vals) != 2 {
			return res, fmt.Errorf("ledger: callback: lookup answered %v", c.Val())
		}
		m, _ := vals[0].(string)
		if m == "" {
			res.Parked++
			if n, _ := vals[1].(int64); n == 1 {
				newParks++
			}
			continue
		}
		scope, taskID, ok := l.parseMapValue(m)
		if !ok {
			continue
		}
		res.Matched++
		if _, seen := byScope[scope]; !seen {
			order = append(order, scope)
		}
		u := updates[i]
		byScope[scope] = append(byScope[scope], statusItem{taskID: taskID, rec: record(u), suppress: u.suppresses()})
	}
	if newParks > 0 {
		if err := l.rdb.HIncrBy(ctx, l.callbacksKey(), "unmatched", int64(newParks)).Err(); err != nil {
			return res, fmt.Errorf("ledger: callback: %w", err)
		}
	}
	for _, scope := range order {
		n, err := l.applyScope(ctx, scope, byScope[scope])
		res.Suppressed += n
		if err != nil {
			return res, fmt.Errorf("ledger: callback: %w", err)
		}
	}
	return res, nil
}

// applyParked applies a status parked before the worker recorded the message's id (and its
// suppression, when it suppresses and is applied), then drops the park and takes it out of the
// unmatched count: the park is dropped only after the status is applied, and applying twice is
// harmless, so a failure midway loses nothing.
func (l *Ledger) applyParked(ctx context.Context, scope, taskID, msgID, parked string) error {
	rec, sup := strings.CutSuffix(parked, parkSuppress)
	if _, err := l.applyScope(ctx, scope, []statusItem{{taskID: taskID, rec: rec, suppress: sup}}); err != nil {
		return fmt.Errorf("ledger: parked status: %w", err)
	}
	n, err := l.rdb.Del(ctx, l.parkKey(msgID)).Result()
	if err != nil {
		return fmt.Errorf("ledger: parked status: %w", err)
	}
	if n == 1 {
		return l.rdb.HIncrBy(ctx, l.callbacksKey(), "unmatched", -1).Err()
	}
	return nil
}

// MapMessage records which job Kaleyra's message id belongs to, for the status callbacks, and
// applies a status that arrived first. Sent does this for every message that has an id; it is
// exported for tests and tools that write a campaign's records directly.
func (l *Ledger) MapMessage(ctx context.Context, scope, taskID, msgID string) error {
	if !ValidMessageID(msgID) {
		return ErrBadUpdate
	}
	o := &op{kind: opSent, scope: scope, taskID: taskID, msgID: msgID}
	pipe := l.rdb.Pipeline()
	m := l.queueMaps(ctx, pipe, []*op{o})
	pipe.Exec(ctx)
	m.read([]*op{o})
	if o.err != nil {
		return fmt.Errorf("ledger: map message: %w", o.err)
	}
	if o.parked == "" {
		return nil
	}
	return l.applyParked(ctx, scope, taskID, msgID, o.parked)
}

// Unmatched returns how many callbacks named a message id no worker recorded: unknown ids, and
// early ones until their message is recorded.
func (l *Ledger) Unmatched(ctx context.Context) (int64, error) {
	n, err := l.rdb.HGet(ctx, l.callbacksKey(), "unmatched").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// DeliveryStatus returns a message's furthest status in scope ("" when no callback came), its
// code and time.
func (l *Ledger) DeliveryStatus(ctx context.Context, scope, taskID string) (status, code string, at int64, err error) {
	rec, err := l.rdb.HGet(ctx, dlvKey(scope), taskID).Result()
	if errors.Is(err, redis.Nil) {
		return "", "", 0, nil
	}
	if err != nil {
		return "", "", 0, err
	}
	status, code, at = parseRecord(rec)
	return status, code, at, nil
}
