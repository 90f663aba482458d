package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/kaleyra"
	"github.com/wabulk/wabulk/internal/logging"
	"github.com/wabulk/wabulk/internal/metrics"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// messageSender sends one message; *kaleyra.Client is the real one.
type messageSender interface {
	Send(ctx context.Context, from string, m kaleyra.Message) (kaleyra.Result, error)
}

// rateLimiter hands out the shared per-sender rate; *ratelimit.Limiter is the real one.
type rateLimiter interface {
	Wait(ctx context.Context, sender string) (time.Duration, error)
}

// Outcomes of one attempt, as logged and counted.
const (
	outcomeSent  = "sent"
	outcomeRetry = "retry"
	outcomeDead  = "dead"
	// outcomeRequeued: the job went back to the queue without an attempt (stop during a wait,
	// paused queue, ledger unreachable).
	outcomeRequeued = "requeued"
	// outcomeSuppressed: the job's recipient was put on the suppression list after the enqueue;
	// it leaves its lane unsent.
	outcomeSuppressed = "suppressed"
)

// Codes wabulk gives dead letters that Kaleyra never saw.
const (
	CodeBadPayload = "INVALID_PAYLOAD"
	CodeNoSender   = "NO_SENDER"
)

// handler runs one attempt of a job the dispatcher took.
type handler struct {
	lanes   func() []store.Lane // the live lanes, for pausing them all
	from    string
	pauseOn []string
	sender  messageSender
	ledger  *store.Ledger
	pauser  store.Pauser // pauses the lanes when an account-level code comes back (WABULK_PAUSE_ON)
	log     *zap.Logger
	pii     logging.Masker
	metrics *workerMetrics
	// sendCount counts accepted sends per sender (`wabulk sender ls`); nil counts nothing.
	sendCount *store.SendCounter
}

// suppressed is the handler's answer for a taken job whose recipient is on the suppression
// list: the dispatcher drops it unsent, counted as suppressed in its campaign.
type suppressed struct{ campaign, to string }

func (*suppressed) Error() string { return "the recipient is on the suppression list" }

// process decodes the job (the dispatcher took it in its sender's turn), calls Kaleyra and acts on the answer per the table of Kaleyra's answers
// (docs/guarantees.md). Its error decides what happens to the task, as in asynq: nil completes,
// an error wrapping asynq.SkipRetry archives (dead letter), errNotFailure requeues without
// using a retry, any other error retries with backoff.
func (h *handler) process(ctx context.Context, t *store.Taken) error {
	start := time.Now()
	id, queue, retried, maxRetry := t.ID, t.Lane, t.Retried, t.Retry
	attempt := retried + 1
	log := h.log.With(zap.String("task_id", h.pii.TaskID(id)), zap.Int("attempt", attempt))

	p, err := job.Decode(t.Payload)
	if t.Type != job.TaskType {
		err = fmt.Errorf("task type %q is not %s", t.Type, job.TaskType)
	}
	if t.Bad != nil {
		err = t.Bad
	}
	if err != nil {
		// A payload that cannot be decoded will not decode next time either: dead-letter it once.
		d := store.DeadLetter{TaskID: id, Code: CodeBadPayload, Message: err.Error(), Attempt: attempt, Raw: clipBytes(t.Payload, 4096)}
		return h.dead(ctx, log, queue, h.laneSender(queue), d, 0, start)
	}
	scope := queue // the lane's ledger
	sender := h.metrics.sender(p.From)
	from := p.From
	if from == "" {
		from = h.from
	}
	log = log.With(zap.String("campaign", p.Campaign), zap.String("from", from), zap.String("to", h.pii.Phone(p.To)),
		zap.String("type", p.Type), zap.String("ref", p.Ref), zap.String("ref1", p.Ref1), zap.String("ref2", p.Ref2),
		zap.String("wa_source", p.WASource))
	if from == "" {
		d := store.DeadLetter{TaskID: id, Code: CodeNoSender, Message: "the job names no sender and KALEYRA_FROM is not set", Attempt: attempt, Payload: p}
		return h.dead(ctx, log, scope, sender, d, 0, start)
	}

	if t.Prior != "" {
		// Kaleyra accepted this job before and only the ack was lost: complete it, do not send
		// again. Its result is that first answer already (the sent marker).
		h.metrics.send(sender, outcomeSent, "resent_avoided")
		log.Info("send", zap.String("outcome", outcomeSent), zap.String("code", "already_sent"),
			zap.Int("status", 0), zap.Duration("duration", time.Since(start)))
		return nil
	}
	// The suppression list as it is now: a number added after the enqueue is not sent to.
	listed, err := h.ledger.IsSuppressed(ctx, p.To)
	if err != nil {
		return h.requeue(log, sender, fmt.Errorf("ledger unreachable: %w", err), start)
	}
	if listed {
		h.metrics.send(sender, outcomeSuppressed, "suppressed")
		log.Info("send", zap.String("outcome", outcomeSuppressed), zap.Duration("duration", time.Since(start)))
		return &suppressed{campaign: p.Campaign, to: p.To}
	}

	callStart := time.Now()
	res, err := h.sender.Send(ctx, from, message(p))
	took := time.Since(callStart).Seconds()
	if err == nil {
		h.metrics.request(took, res.Status, nil)
		if h.sendCount != nil {
			h.sendCount.Add(from)
		}
		return h.sent(ctx, log, scope, sender, id, res, start)
	}
	var ke *kaleyra.Error
	if !errors.As(err, &ke) {
		ke = &kaleyra.Error{Message: err.Error()}
	}
	h.metrics.request(took, 0, ke)
	if slices.Contains(h.pauseOn, ke.Code) {
		if perr := h.pauseAll(queue); perr != nil {
			log.Error("pause queues", zap.String("code", ke.Code), zap.Error(perr))
		} else {
			h.metrics.pauses.WithLabelValues(metrics.Code(ke.Code)).Inc()
			log.Warn("queues paused: account-level error; `wabulk queue resume` continues the campaigns",
				zap.String("queue", queue), zap.String("code", ke.Code), zap.String("message", ke.Message))
		}
		// asynq archives a job whose budget is spent whatever the error says, so a job on its
		// last attempt cannot wait for the resume: it is dead-lettered (and can be redriven).
		if retried < maxRetry {
			return h.requeue(log.With(zap.String("code", ke.Code), zap.Int("status", ke.Status)), sender,
				fmt.Errorf("%s: %w", ke.Error(), errNotFailure), start)
		}
	}
	if !ke.Retryable() || retried >= maxRetry {
		d := store.DeadLetter{TaskID: id, Code: ke.Label(), Status: ke.Status, Message: ke.Message, Attempt: attempt, Payload: p}
		return h.dead(ctx, log, scope, sender, d, ke.Status, start, ke)
	}
	if lerr := h.ledger.Retry(context.WithoutCancel(ctx), scope, id); lerr != nil {
		log.Warn("ledger: retry not recorded", zap.Error(lerr))
	}
	h.metrics.send(sender, outcomeRetry, ke.Label())
	log.Info("send", zap.String("outcome", outcomeRetry), zap.String("code", ke.Label()), zap.Int("status", ke.Status),
		zap.Duration("duration", time.Since(start)), zap.String("error", ke.Message))
	return ke
}

// markerPatience is how long a worker keeps trying to write a sent marker while Redis is away.
const markerPatience = 20 * time.Second

func (h *handler) sent(ctx context.Context, log *zap.Logger, scope, sender, id string, res kaleyra.Result, start time.Time) error {
	// The message is out: record it even if the job's context is ending, and try hard, because a
	// job whose sent marker is lost could be sent again after a crash.
	rctx := context.WithoutCancel(ctx)
	// Keep trying through a Redis restart (an outage of a few seconds is common; giving up after
	// one or two would lose markers), but stop well inside asynq's 30 s lease.
	// The ledger writes Kaleyra's answer as the task result (what asynqmon shows) with the marker.
	var err error
	for i, giveUp := 0, time.Now().Add(markerPatience); ; i++ {
		if err = h.ledger.SentMessage(rctx, scope, id, res.MessageID, res.Body); err == nil || time.Now().After(giveUp) {
			break
		}
		time.Sleep(min(time.Duration(100<<min(i, 4))*time.Millisecond, time.Second))
	}
	if err != nil {
		// The marker is the task's result: there is no other copy to write.
		log.Error("ledger: sent marker not written; a crash before the ack could send this job again", zap.Error(err))
	}
	h.metrics.send(sender, outcomeSent, "")
	log.Info("send", zap.String("outcome", outcomeSent), zap.String("code", ""), zap.Int("status", res.Status),
		zap.String("message_id", res.MessageID), zap.Duration("duration", time.Since(start)))
	return nil
}

// dead records the dead letter durably, then tells asynq to archive the job. The returned
// error's text starts with the code, so the archived task's last error does too.
func (h *handler) dead(ctx context.Context, log *zap.Logger, scope, sender string, d store.DeadLetter, status int, start time.Time, cause ...error) error {
	if err := h.ledger.Dead(context.WithoutCancel(ctx), scope, d); err != nil {
		// Without the durable record the dead letter could be trimmed from asynq's archive
		// unseen: try again later instead.
		return h.requeue(log, sender, fmt.Errorf("ledger: dead letter not recorded: %w", err), start)
	}
	h.metrics.send(sender, outcomeDead, d.Code)
	log.Warn("send", zap.String("outcome", outcomeDead), zap.String("code", d.Code), zap.Int("status", status),
		zap.Duration("duration", time.Since(start)), zap.String("error", d.Message))
	text := d.Code + ": " + d.Message
	if len(cause) > 0 && cause[0] != nil {
		text = cause[0].Error()
	}
	return fmt.Errorf("%s: %w", text, asynq.SkipRetry)
}

func (h *handler) requeue(log *zap.Logger, sender string, err error, start time.Time) error {
	h.metrics.send(sender, outcomeRequeued, "")
	log.Info("send", zap.String("outcome", outcomeRequeued), zap.Duration("duration", time.Since(start)), zap.Error(err))
	if errors.Is(err, errNotFailure) {
		return err
	}
	return fmt.Errorf("%w: %w", err, errNotFailure)
}

// laneSender is the sender label of a job whose payload did not decode: the sender part of its
// lane's name.
func (h *handler) laneSender(lane string) string {
	return h.metrics.senders.Value(lane[strings.LastIndexByte(lane, ':')+1:])
}

func message(p job.Payload) kaleyra.Message {
	return kaleyra.Message{To: p.To, Type: p.Type, MediaID: p.MediaID, MediaLink: p.MediaLink, Caption: p.Caption,
		Filename: p.Filename, Ref: p.Ref, Ref1: p.Ref1, Ref2: p.Ref2, WASource: p.WASource}
}

func clipBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// pauseAll pauses queue, every live lane and the namespace (its flag pauses the lanes registered
// after it too): the codes of WABULK_PAUSE_ON are account-level, so every campaign would meet
// them.
func (h *handler) pauseAll(queue string) error {
	queues := []string{queue, h.ledger.Namespace()}
	if h.lanes != nil {
		for _, ln := range h.lanes() {
			queues = append(queues, ln.Name)
		}
	}
	slices.Sort(queues)
	var errs []error
	for _, q := range slices.Compact(queues) {
		if err := store.SetPaused(h.pauser, q, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
