package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// CampaignStatus is the answer of GET /v1/campaigns/{id}: the counts `wabulk status --campaign`
// shows, the queue's and the campaign's.
type CampaignStatus struct {
	Time     time.Time          `json:"time"`
	Queue    ops.QueueCounts    `json:"queue"`
	Campaign store.CampaignInfo `json:"campaign"`
}

// DeadList is the answer of GET /v1/campaigns/{id}/dead: dead letters, newest first.
type DeadList struct {
	Campaign string          `json:"campaign"`
	Code     string          `json:"code,omitempty"`
	Limit    int             `json:"limit"`
	Dead     []ops.DeadEntry `json:"dead"`
}

// readTimeout bounds the Redis reads of a GET, so a hung Redis answers 503, not a hung request.
const readTimeout = 10 * time.Second

// MaxDeadLimit caps ?limit= of the dead-letter listing.
const MaxDeadLimit = 10_000

// status returns the campaign's status, or the problem to answer.
func (s *Server) status(ctx context.Context, id string) (ops.Status, *Problem) {
	if err := job.ValidCampaign(id); err != nil {
		return ops.Status{}, newProblem(http.StatusBadRequest, CodeInvalidRequest, err.Error())
	}
	st, err := s.ops.Status(ctx, id)
	switch {
	case errors.Is(err, ops.ErrUnknownCampaign):
		return st, newProblem(http.StatusNotFound, CodeUnknownCampaign, err.Error())
	case err != nil:
		return st, newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer: "+err.Error())
	}
	return st, nil
}

func (s *Server) getCampaign(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	st, p := s.status(ctx, r.PathValue("id"))
	if p != nil {
		writeProblem(w, p)
		return
	}
	out := CampaignStatus{Time: st.Time, Queue: st.Queue}
	if len(st.Campaigns) > 0 {
		out.Campaign = st.Campaigns[0]
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDead(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	id := r.PathValue("id")
	q := r.URL.Query()
	limit, p := queryLimit(q, 100, MaxDeadLimit)
	if p != nil {
		writeProblem(w, p)
		return
	}
	if _, p := s.status(ctx, id); p != nil {
		writeProblem(w, p)
		return
	}
	dead, err := s.ops.DeadLetters(ctx, ops.DeadFilter{Campaign: id, Code: q.Get("code"), Limit: limit})
	if err != nil {
		writeProblem(w, newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer: "+err.Error()))
		return
	}
	if dead == nil {
		dead = []ops.DeadEntry{}
	}
	writeJSON(w, http.StatusOK, DeadList{Campaign: id, Code: q.Get("code"), Limit: limit, Dead: dead})
}
