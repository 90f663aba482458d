package ops

import (
	"context"
	"io"

	"github.com/wabulk/wabulk/internal/store"
)

// WriteReport writes the campaign's per-recipient report as CSV (store.ReportColumns) to w, in
// flat memory, and returns the rows written. An unknown campaign is ErrUnknownCampaign.
func (o *Ops) WriteReport(ctx context.Context, campaign string, w io.Writer) (int64, error) {
	if ok, err := o.ledger.CampaignExists(ctx, campaign); err != nil {
		return 0, err
	} else if !ok {
		return 0, ErrUnknownCampaign
	}
	return o.ledger.WriteReport(ctx, campaign, w)
}

// Suppress adds numbers to the suppression list; Unsuppress takes them off; EachSuppressed lists
// it. Numbers are E.164 as the payloads hold them.
func (o *Ops) Suppress(ctx context.Context, numbers []string, source string) (int64, error) {
	return o.ledger.Suppress(ctx, numbers, source)
}

// Unsuppress takes numbers off the suppression list and returns how many were on it.
func (o *Ops) Unsuppress(ctx context.Context, numbers []string) (int64, error) {
	return o.ledger.Unsuppress(ctx, numbers)
}

// EachSuppressed calls fn for every number on the suppression list.
func (o *Ops) EachSuppressed(ctx context.Context, fn func(store.Suppression) error) error {
	return o.ledger.EachSuppressed(ctx, fn)
}

// Unmatched is how many status callbacks named a message id no worker recorded.
func (o *Ops) Unmatched(ctx context.Context) (int64, error) { return o.ledger.Unmatched(ctx) }
