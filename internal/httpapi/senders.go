package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/ratelimit"
	"github.com/wabulk/wabulk/internal/store"
)

// SenderRateRequest is the body of PUT /v1/senders/{number}: {"rate": 20} sets the sender's
// rate (burst ceil(rate/10) unless "burst" is given), {"rate": null} removes the override.
type SenderRateRequest struct {
	// Rate is messages per second, > 0 and at most ratelimit.MaxRate, or null. Kept raw so a
	// missing rate (an error) and a null one (back to the default) differ.
	Rate json.RawMessage `json:"rate"`
	// Burst is how many sends may go at once, 1 to ratelimit.MaxBurst; absent or null: derived.
	Burst *int `json:"burst"`
}

// SenderSetting is the answer of PUT /v1/senders/{number} with a rate: the setting stored.
type SenderSetting struct {
	Number   string  `json:"number"`
	Rate     float64 `json:"rate"`
	Burst    int     `json:"burst"`
	Override bool    `json:"override"`
}

// maxSenderBody caps a PUT /v1/senders body: the setting is a few dozen bytes, so anything
// bigger is a mistake or an attack, refused before it is read.
const maxSenderBody = 1 << 10

// senderDefaults is what a sender without an override gets as this process's environment says
// (WABULK_RATE, WABULK_BURST; the API's Config does not carry them); a default published by
// running workers takes precedence in ops.Senders. Only those two variables are read.
func (s *Server) senderDefaults() ops.SenderDefaults {
	c, err := config.Load(func(name string) (string, bool) {
		if name == config.EnvRate || name == config.EnvBurst {
			return os.LookupEnv(name)
		}
		return "", false
	})
	if err != nil {
		c = config.Defaults()
		c.Burst = 0
	}
	return ops.SenderDefaults{Rate: c.Rate, Burst: c.Burst, From: s.cfg.Producer.DefaultFrom}
}

func (s *Server) getSenders(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	ss, err := s.ops.Senders(ctx, s.senderDefaults())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ss)
}

// senderNumber is the {number} of the path, normalised, or the problem to answer.
func senderNumber(r *http.Request) (string, error) {
	d, err := store.SenderDigits(r.PathValue("number"))
	if err != nil {
		return "", &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
	}
	return d, nil
}

// decodeSenderRate reads a PUT body: one JSON object, no unknown keys, a rate that is a
// number in range or null, a burst in range or absent. clear is true for a null rate.
func decodeSenderRate(w http.ResponseWriter, r *http.Request) (o ratelimit.Override, clear bool, err error) {
	if err := requireJSON(r); err != nil {
		return o, false, err
	}
	var req SenderRateRequest
	if err := decodeStrict(http.MaxBytesReader(w, r.Body, maxSenderBody), &req); err != nil {
		return o, false, err
	}
	raw := bytes.TrimSpace(req.Rate)
	switch {
	case len(raw) == 0:
		return o, false, &bodyError{http.StatusBadRequest, CodeInvalidRequest, `rate is required: messages per second, or null for the default`}
	case bytes.Equal(raw, []byte("null")):
		if req.Burst != nil {
			return o, false, &bodyError{http.StatusBadRequest, CodeInvalidRequest, "burst goes with a rate, not with a null rate"}
		}
		return o, true, nil
	}
	if json.Unmarshal(raw, &o.Rate) != nil { // a string, a bool, 1e400…
		return o, false, &bodyError{http.StatusBadRequest, CodeBadJSON, "rate must be a JSON number (messages per second) or null"}
	}
	if req.Burst != nil {
		o.Burst = *req.Burst
		if o.Burst < 1 {
			return o, false, &bodyError{http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("burst must be 1 to %d, got %d", ratelimit.MaxBurst, o.Burst)}
		}
	}
	if err := ratelimit.CheckOverride(o); err != nil {
		return o, false, &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
	}
	return o, false, nil
}

func (s *Server) putSender(w http.ResponseWriter, r *http.Request) {
	d, err := senderNumber(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	o, clear, err := decodeSenderRate(w, r)
	if err != nil {
		s.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if clear {
		s.clearSender(ctx, w, d)
		return
	}
	n, err := s.ops.SetSenderRate(ctx, d, o.Rate, o.Burst)
	if err != nil {
		s.fail(w, senderError(err))
		return
	}
	burst := o.Burst
	if burst == 0 {
		burst = ratelimit.DefaultBurst(o.Rate)
	}
	writeJSON(w, http.StatusOK, SenderSetting{Number: n, Rate: o.Rate, Burst: burst, Override: true})
}

func (s *Server) deleteSender(w http.ResponseWriter, r *http.Request) {
	d, err := senderNumber(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	s.clearSender(ctx, w, d)
}

// clearSender removes the override and answers 204; removing none is not an error.
func (s *Server) clearSender(ctx context.Context, w http.ResponseWriter, digits string) {
	if _, err := s.ops.ClearSenderRate(ctx, digits); err != nil {
		s.fail(w, senderError(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// senderError turns the store's input errors into 400s; anything else is Redis (503).
func senderError(err error) error {
	if errors.Is(err, store.ErrBadSender) || errors.Is(err, store.ErrBadRate) {
		return &bodyError{http.StatusBadRequest, CodeInvalidRequest, err.Error()}
	}
	return err
}
