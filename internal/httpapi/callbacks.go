package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/metrics"
	"github.com/wabulk/wabulk/internal/store"
)

// Bounds of a status callback. Kaleyra sends one status per callback as documented; a batch of
// more is taken, up to MaxCallbackStatuses.
const (
	MaxCallbackBytes    = 256 << 10
	MaxCallbackStatuses = 1000
	// callbackTimeout bounds the Redis work of one callback: Kaleyra wants its 200 quickly, and a
	// 503 makes it retry, which is safe (applying again counts nothing twice).
	callbackTimeout = 2 * time.Second
)

// CodeBadCallback is the problem code of a callback body the receiver cannot read.
const CodeBadCallback = "bad_callback"

// callbackBody is a Kaleyra status callback (API v2). Fields not read here are ignored, as
// Kaleyra adds variables a callback profile chooses.
type callbackBody struct {
	MetaObject *struct {
		Value *struct {
			Statuses []callbackStatus `json:"statuses"`
		} `json:"value"`
	} `json:"meta_object"`
	Status    string `json:"status"`
	MessageID string `json:"message_id"`
}

type callbackStatus struct {
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	Timestamp json.RawMessage `json:"timestamp"`
	Errors    []struct {
		Code json.RawMessage `json:"code"`
	} `json:"errors"`
}

// CallbackAnswer is the body of a 200 to a callback.
type CallbackAnswer struct {
	Matched int `json:"matched"`
	Parked  int `json:"parked"`
}

// parseCallback reads a callback body into status updates, or says what is wrong with it.
func parseCallback(raw []byte) ([]store.StatusUpdate, error) {
	var b callbackBody
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("body is not a Kaleyra status callback: %v", clip(err.Error()))
	}
	if dec.More() {
		return nil, errors.New("body holds more than one JSON value")
	}
	var sts []callbackStatus
	if b.MetaObject != nil && b.MetaObject.Value != nil {
		sts = b.MetaObject.Value.Statuses
	}
	if len(sts) == 0 && b.MessageID != "" && b.Status != "" {
		// The short form: the top-level status and message_id alone.
		sts = []callbackStatus{{ID: b.MessageID, Status: b.Status}}
	}
	if len(sts) == 0 {
		return nil, errors.New("no status: want meta_object.value.statuses[] or status and message_id")
	}
	if len(sts) > MaxCallbackStatuses {
		return nil, fmt.Errorf("%d statuses in one callback; at most %d", len(sts), MaxCallbackStatuses)
	}
	out := make([]store.StatusUpdate, 0, len(sts))
	for i, st := range sts {
		status, ok := store.ParseStatus(strings.ToLower(strings.TrimSpace(st.Status)))
		if !ok {
			return nil, fmt.Errorf("statuses[%d]: status %q is not sent, delivered, read, failed or not-sent", i, clip(st.Status))
		}
		if !store.ValidMessageID(st.ID) {
			return nil, fmt.Errorf("statuses[%d]: id must be 1-%d printable characters without spaces or braces", i, store.MaxMessageID)
		}
		u := store.StatusUpdate{MessageID: st.ID, Status: status}
		if len(st.Timestamp) > 0 {
			ts, err := parseUnix(st.Timestamp)
			if err != nil {
				return nil, fmt.Errorf("statuses[%d]: timestamp: %v", i, err)
			}
			u.Time = ts
		}
		if u.Time == 0 {
			u.Time = time.Now().Unix()
		}
		if status == store.StatusFailed {
			u.Code = "unknown"
			if len(st.Errors) > 0 && len(st.Errors[0].Code) > 0 {
				c, err := parseCode(st.Errors[0].Code)
				if err != nil {
					return nil, fmt.Errorf("statuses[%d]: errors[0].code: %v", i, err)
				}
				u.Code = c
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// parseUnix reads Unix seconds given as a string (as documented) or a number.
func parseUnix(raw json.RawMessage) (int64, error) {
	s := string(raw)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return 0, errors.New("want Unix seconds")
	}
	return n, nil
}

// parseCode reads a Meta error code: digits, as a number or a string.
func parseCode(raw json.RawMessage) (string, error) {
	s := string(raw)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	if s == "" || len(s) > 12 || strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		return "", errors.New("want a numeric code")
	}
	return s, nil
}

// postStatus is POST /v1/kaleyra/status: records each message's furthest status and answers 200
// only once it is recorded; a Redis failure answers 503, so Kaleyra retries.
func (s *Server) postStatus(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > MaxCallbackBytes {
		writeProblem(w, newProblem(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("a callback body is at most %d bytes", MaxCallbackBytes)))
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxCallbackBytes+1))
	if err != nil {
		writeProblem(w, newProblem(http.StatusBadRequest, CodeBadCallback, "body could not be read"))
		return
	}
	if len(raw) > MaxCallbackBytes {
		writeProblem(w, newProblem(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("a callback body is at most %d bytes", MaxCallbackBytes)))
		return
	}
	updates, err := parseCallback(raw)
	if err != nil {
		s.metrics.callbacks.WithLabelValues("malformed", "").Inc()
		writeProblem(w, newProblem(http.StatusBadRequest, CodeBadCallback, err.Error()))
		return
	}
	for i := range updates {
		// The ledger suppresses the number when it applies the failure (now, or when its message
		// is recorded), and never for 131047.
		updates[i].Suppress = updates[i].Status == store.StatusFailed && slices.Contains(s.cfg.SuppressOn, updates[i].Code)
	}
	ctx, cancel := context.WithTimeout(r.Context(), callbackTimeout)
	defer cancel()
	res, err := s.ledger.Apply(ctx, updates)
	if err != nil {
		s.log.Warn("status callback not recorded; answered 503 so Kaleyra retries", zap.Int("statuses", len(updates)), zap.Error(err))
		writeProblem(w, newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "the status was not recorded; retry"))
		return
	}
	for _, u := range updates {
		s.metrics.callbacks.WithLabelValues(u.Status, metrics.MetaCode(u.Code)).Inc()
	}
	if res.Parked > 0 {
		s.metrics.callbacks.WithLabelValues("unmatched", "").Add(float64(res.Parked))
	}
	writeJSON(w, http.StatusOK, CallbackAnswer{Matched: res.Matched, Parked: res.Parked})
}
