package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/wabulk/wabulk/internal/ops"
	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// reportTimeout bounds writing one report: a campaign of millions takes a minute or two.
const reportTimeout = 30 * time.Minute

// getReport is GET /v1/campaigns/{id}/report: the per-recipient CSV, streamed. Once rows are
// written the status is 200; an error after that cuts the connection, so a client never takes a
// truncated report for a whole one.
func (s *Server) getReport(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := job.ValidCampaign(id); err != nil {
		writeProblem(w, newProblem(http.StatusBadRequest, CodeInvalidRequest, err.Error()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), reportTimeout)
	defer cancel()
	// The report outlasts WriteTimeout: each flush pushes the deadline on.
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(&deadlineWriter{w: w, rc: rc}, 64<<10)
	started := false
	hw := &headerWriter{w: w, bw: bw, started: &started, name: id}
	_, err := s.ops.WriteReport(ctx, id, hw)
	if err == nil {
		err = bw.Flush()
	}
	switch {
	case err == nil:
	case !started && errors.Is(err, ops.ErrUnknownCampaign):
		writeProblem(w, newProblem(http.StatusNotFound, CodeUnknownCampaign, fmt.Sprintf("campaign %q is unknown in queue %s", id, s.cfg.Producer.Queue)))
	case !started:
		writeProblem(w, newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer: "+err.Error()))
	default:
		panic(http.ErrAbortHandler)
	}
}

// headerWriter sets the CSV headers before the first byte of the report.
type headerWriter struct {
	w       http.ResponseWriter
	bw      *bufio.Writer
	started *bool
	name    string
}

func (h *headerWriter) Write(p []byte) (int, error) {
	if !*h.started {
		*h.started = true
		h.w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		h.w.Header().Set("Content-Disposition", `attachment; filename="`+h.name+`-report.csv"`)
		h.w.Header().Set("X-Content-Type-Options", "nosniff")
		h.w.WriteHeader(http.StatusOK)
	}
	return h.bw.Write(p)
}

// deadlineWriter moves the write deadline on with every chunk.
type deadlineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(time.Minute))
	n, err := d.w.Write(p)
	if err == nil {
		d.rc.Flush()
	}
	return n, err
}

// SuppressionRequest is the body of POST /v1/suppressions.
type SuppressionRequest struct {
	Numbers []string `json:"numbers"`
}

// SuppressionAnswer is the answer of POST /v1/suppressions and DELETE /v1/suppressions/{number}.
type SuppressionAnswer struct {
	Added   int64 `json:"added,omitempty"`
	Removed int64 `json:"removed,omitempty"`
}

// SuppressionList is the answer of GET /v1/suppressions.
type SuppressionList struct {
	Numbers []store.Suppression `json:"numbers"`
	Limit   int                 `json:"limit"`
	More    bool                `json:"more"`
}

// MaxSuppressions caps the numbers of one POST /v1/suppressions and one GET page.
const MaxSuppressions = 10_000

var errEnough = errors.New("enough")

func (s *Server) getSuppressions(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	out := SuppressionList{Numbers: []store.Suppression{}, Limit: MaxSuppressions}
	err := s.ops.EachSuppressed(ctx, func(sp store.Suppression) error {
		if len(out.Numbers) == out.Limit {
			out.More = true
			return errEnough
		}
		out.Numbers = append(out.Numbers, sp)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) postSuppressions(w http.ResponseWriter, r *http.Request) {
	if err := requireJSON(r); err != nil {
		s.fail(w, err)
		return
	}
	var req SuppressionRequest
	if err := decodeStrict(http.MaxBytesReader(w, r.Body, 1<<20), &req); err != nil {
		s.fail(w, err)
		return
	}
	if len(req.Numbers) == 0 || len(req.Numbers) > MaxSuppressions {
		writeProblem(w, newProblem(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("numbers: want 1 to %d E.164 numbers", MaxSuppressions)))
		return
	}
	nums := make([]string, len(req.Numbers))
	for i, n := range req.Numbers {
		e, err := job.NormalizeNumber(n)
		if err != nil {
			writeProblem(w, newProblem(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("numbers[%d]: %v", i, err)))
			return
		}
		nums[i] = e
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	n, err := s.ops.Suppress(ctx, nums, "api")
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, SuppressionAnswer{Added: n})
}

func (s *Server) deleteSuppression(w http.ResponseWriter, r *http.Request) {
	e, err := job.NormalizeNumber(r.PathValue("number"))
	if err != nil {
		writeProblem(w, newProblem(http.StatusBadRequest, CodeInvalidRequest, "number: "+err.Error()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	n, err := s.ops.Unsuppress(ctx, []string{e})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, SuppressionAnswer{Removed: n})
}
