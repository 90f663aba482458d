package store

// Every key of wabulk's own the store builds, one builder each; docs/design.md's "Redis keys"
// table lists them (keys_test.go checks that the two agree). asynq's keys are in asynqlayout.go.
// Placeholders as in the table: N the namespace (WABULK_QUEUE, l.queue), S a lane (its asynq
// queue name) or a campaign scope, C a campaign scope (<N>:<campaign>).

import "strconv"

// key is one of a scope's ledger keys. A scope is a lane (its asynq queue name, so the ledger
// keys share the lane's hash slot with asynq's keys of that queue) or a campaign scope.
func key(scope, what string) string { return "wabulk:{" + scope + "}:" + what }

// nsKey is one of the namespace's keys.
func (l *Ledger) nsKey(what string) string { return "wabulk:{" + l.queue + "}:" + what }

// Keys of a scope (a lane, some of a campaign scope too).

func countsKey(scope string) string       { return key(scope, "counts") }
func deadKey(scope string) string         { return key(scope, "dead") }
func deadCodesKey(scope string) string    { return key(scope, "deadcodes") }
func dlvKey(scope string) string          { return key(scope, "dlv") }
func failCodesKey(scope string) string    { return key(scope, "failcodes") }
func suppressingKey(scope string) string  { return key(scope, "suppressing") }
func cancelledKey(lane string) string     { return key(lane, "cancelled") }
func liveKey(lane string) string          { return key(lane, "live") }
func cancelledJobsKey(lane string) string { return key(lane, "cancelledjobs") }

// keys returns the scope's keys in the order the scripts read them.
func keys(scope string) []string {
	return []string{countsKey(scope), deadKey(scope), deadCodesKey(scope)}
}

// recentKey is the scope's sends by period.
func recentKey(scope string) string { return key(scope, "recent") }

// ReconcileMark is the key where the reconciler keeps the archive time it has read lane up to.
func (l *Ledger) ReconcileMark(lane string) string { return key(lane, "reconcile:since") }

// migratedKey marks a lane wabulk migrate has moved counts into, until it ends.
func migratedKey(lane string) string { return key(lane, "migrated") }

// sentKey is an old version's sent markers of a campaign scope, which wabulk migrate moves; no
// current code writes it.
func sentKey(scope string) string { return key(scope, "sent") }

// oldActiveKey and oldRetryKey are an old version's keys of a campaign scope that wabulk migrate
// deletes; no current code writes them.
func oldActiveKey(scope string) string { return key(scope, "active") }
func oldRetryKey(scope string) string  { return key(scope, "retry") }

func (l *Ledger) campaignSuppressedKey(campaign string) string {
	return key(l.campaignScope(campaign), "suppressed")
}

// Keys of the namespace.

func (l *Ledger) campaignsKey() string         { return l.nsKey("campaigns") }
func (l *Ledger) campaignKey(id string) string { return l.nsKey("campaign:" + id) }
func (l *Ledger) stateKey(campaign string) string {
	return l.campaignKey(campaign) + ":state"
}
func (l *Ledger) activeKey() string      { return l.nsKey("campaigns:active") }
func (l *Ledger) finishedKey() string    { return l.nsKey("campaigns:finished") }
func (l *Ledger) scheduledKey() string   { return l.nsKey("scheduled") }
func (l *Ledger) lanesInfoKey() string   { return l.nsKey("lanes:info") }
func (l *Ledger) lanesLiveKey() string   { return l.nsKey("lanes:live") }
func (l *Ledger) lanesDoneKey() string   { return l.nsKey("lanes:done") }
func (l *Ledger) pausedLanesKey() string { return l.nsKey("lanes:paused") }

// lanesChannel is the PubSub channel a lane's name is published on when it becomes live.
func (l *Ledger) lanesChannel() string { return l.nsKey("lanes:new") }

func (l *Ledger) dueKey() string        { return l.nsKey("due") }
func (l *Ledger) leasedKey() string     { return l.nsKey("leased") }
func (l *Ledger) callbacksKey() string  { return l.nsKey("callbacks") }
func (l *Ledger) suppressedKey() string { return l.nsKey("suppressed") }

// lockKey is the key of a lock Lock takes or a lease HoldLease holds (name is the caller's:
// "lanes:lock" of worker's lane supervisor, "exporter" of internal/metrics).
func (l *Ledger) lockKey(name string) string { return l.nsKey(name) }

func (l *Ledger) ratesKey() string       { return l.nsKey("senders:rates") }
func (l *Ledger) defaultRateKey() string { return l.nsKey("senders:default") }
func (l *Ledger) sendsKey(minute int64) string {
	return l.nsKey("sends:" + strconv.FormatInt(minute, 10))
}

// mediaCacheKey is the media id cache entry of a file (hex SHA-256, lower case) uploaded for a
// sender (digits) in an account and MIME type (scope: the first 8 bytes of their hash, in hex).
func (l *Ledger) mediaCacheKey(sender, sha256, scope string) string {
	return l.nsKey("media:" + sender + ":" + sha256 + ":" + scope)
}

// migLanesKey lists the lanes whose migrated marker is set, until step 3 deletes them.
func (l *Ledger) migLanesKey() string { return l.nsKey("migrate:lanes") }

// Keys of a message id: in no namespace's slot, but in the message id's own.

func (l *Ledger) mapKey(msgID string) string  { return "wabulk:" + l.queue + ":m:{" + msgID + "}" }
func (l *Ledger) parkKey(msgID string) string { return "wabulk:" + l.queue + ":p:{" + msgID + "}" }

// mapKeyPattern matches every mapKey of the namespace (for SCAN).
func (l *Ledger) mapKeyPattern() string { return "wabulk:" + l.queue + ":m:{*" }
