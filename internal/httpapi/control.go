package httpapi

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wabulk/wabulk/internal/store"
	"github.com/wabulk/wabulk/job"
)

// CampaignList is the answer of GET /v1/campaigns: one page of campaigns, sorted by id.
type CampaignList struct {
	Campaigns []store.CampaignInfo `json:"campaigns"`
	Limit     int                  `json:"limit"`
	// Next is the `after` that asks for the following page; absent on the last page.
	Next string `json:"next,omitempty"`
}

// CampaignAction is the answer of POST /v1/campaigns/{id}/pause, /resume and /cancel.
type CampaignAction struct {
	Action string `json:"action"`
	// Changed is false when the campaign already was as asked: repeating an action is harmless.
	Changed  bool               `json:"changed"`
	Campaign store.CampaignInfo `json:"campaign"`
}

// Bounds of ?limit= in GET /v1/campaigns.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	maxAfter         = 256
)

// actionTimeout bounds a pause, resume or cancel. A cancel deletes every waiting task of the
// campaign, which takes a while for a large one.
const actionTimeout = time.Minute

// infoWorkers is how many campaigns of a page are read at once.
const infoWorkers = 4

// idHeap is a max-heap of campaign ids: its root is the largest id kept.
type idHeap []string

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i] > h[j] }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(string)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// pageIDs returns the limit smallest campaign ids above after, sorted, and whether there are
// more. The campaign set has no order, so every page reads all ids (in batches); only limit of
// them are kept, so a page's memory and its per-campaign reads depend on limit, not on how
// many campaigns the queue holds.
func (s *Server) pageIDs(ctx context.Context, after string, limit int) ([]string, bool, error) {
	h := make(idHeap, 0, limit)
	more := false
	err := s.ledger.EachCampaign(ctx, func(id string) (bool, error) {
		switch {
		case id <= after:
		case h.Len() < limit:
			heap.Push(&h, id)
		default:
			more = true
			if id < h[0] {
				h[0] = id
				heap.Fix(&h, 0)
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, false, err
	}
	ids := []string(h)
	slices.Sort(ids)
	return ids, more, nil
}

// infos reads the CampaignInfo of each id, a few at a time, in the order of ids. A campaign
// whose record went away meanwhile (its retention ended) is left out.
func (s *Server) infos(ctx context.Context, ids []string) ([]store.CampaignInfo, error) {
	out := make([]store.CampaignInfo, len(ids))
	found := make([]bool, len(ids))
	errs := make([]error, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(infoWorkers, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				info, err := s.ledger.Campaign(ctx, ids[i])
				switch {
				case errors.Is(err, store.ErrUnknownCampaign):
				case err != nil:
					errs[i] = err
				default:
					out[i], found[i] = info, true
				}
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	list := make([]store.CampaignInfo, 0, len(ids))
	for i, ok := range found {
		if ok {
			list = append(list, out[i])
		}
	}
	return list, nil
}

func (s *Server) listCampaigns(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	q := r.URL.Query()
	limit, p := queryLimit(q, DefaultListLimit, MaxListLimit)
	if p != nil {
		writeProblem(w, p)
		return
	}
	// after is compared, not looked up, and may be an id no request can create (the dead letters
	// of undecodable payloads are kept under one): only its length is checked.
	after := q.Get("after")
	if len(after) > maxAfter {
		writeProblem(w, newProblem(http.StatusBadRequest, CodeInvalidRequest,
			fmt.Sprintf("after is %d bytes, over %d: give the next of the previous page", len(after), maxAfter)))
		return
	}
	ids, more, err := s.pageIDs(ctx, after, limit)
	if err != nil {
		writeProblem(w, newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer: "+err.Error()))
		return
	}
	list, err := s.infos(ctx, ids)
	if err != nil {
		writeProblem(w, newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer: "+err.Error()))
		return
	}
	out := CampaignList{Campaigns: list, Limit: limit}
	if more {
		// The last id selected, not the last listed: one that went away still moves the page on.
		out.Next = ids[len(ids)-1]
	}
	writeJSON(w, http.StatusOK, out)
}

// campaignAction serves POST /v1/campaigns/{id}/<action> with do, one of the ledger's
// PauseCampaign, ResumeCampaign and CancelCampaign.
func (s *Server) campaignAction(action string, do func(*store.Ledger, context.Context, string) (bool, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := job.ValidCampaign(id); err != nil {
			writeProblem(w, newProblem(http.StatusBadRequest, CodeInvalidRequest, err.Error()))
			return
		}
		// A change runs to its end even if the client leaves: a cancel stopped halfway would
		// leave lanes flagged with their tasks still queued.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), actionTimeout)
		defer cancel()
		changed, err := do(s.ledger, ctx, id)
		if err != nil {
			writeProblem(w, s.actionProblem(ctx, id, action, err))
			return
		}
		info, err := s.ledger.Campaign(ctx, id)
		if err != nil {
			writeProblem(w, s.actionProblem(ctx, id, action, err))
			return
		}
		writeJSON(w, http.StatusOK, CampaignAction{Action: action, Changed: changed, Campaign: info})
	})
}

// actionProblem is the problem to answer for err from a campaign action. The ledger refuses to
// pause or resume a cancelled campaign with an error of its own wording, so a refusal is told
// from a Redis failure by reading the campaign's state.
func (s *Server) actionProblem(ctx context.Context, id, action string, err error) *Problem {
	var p *Problem
	switch {
	case errors.Is(err, store.ErrUnknownCampaign):
		p = newProblem(http.StatusNotFound, CodeUnknownCampaign, err.Error())
	case errors.Is(err, store.ErrCampaignCancelled) || s.cancelled(ctx, id):
		p = newProblem(http.StatusConflict, CodeCampaignCancelled, fmt.Sprintf("cannot %s: %v; a cancelled campaign stays cancelled", action, err))
	default:
		s.log.Warn("campaign action failed", zap.String("campaign", id), zap.String("action", action), zap.Error(err))
		p = newProblem(http.StatusServiceUnavailable, CodeRedisUnavailable, "Redis did not answer: "+err.Error())
	}
	p.Campaign = id
	return p
}

// cancelled reports whether the campaign's record says it was cancelled.
func (s *Server) cancelled(ctx context.Context, id string) bool {
	info, err := s.ledger.Campaign(ctx, id)
	return err == nil && info.CancelledAt != nil
}
