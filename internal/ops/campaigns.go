package ops

import "context"

// PauseCampaign stops the campaign's sends within one in-flight round; false when it was paused
// already. An unknown campaign is ErrUnknownCampaign.
func (o *Ops) PauseCampaign(ctx context.Context, campaign string) (bool, error) {
	return o.ledger.PauseCampaign(ctx, campaign)
}

// ResumeCampaign lets a paused campaign send again; false when it was not paused.
func (o *Ops) ResumeCampaign(ctx context.Context, campaign string) (bool, error) {
	return o.ledger.ResumeCampaign(ctx, campaign)
}

// CancelCampaign ends the campaign: what is left of it is never sent and counts as cancelled;
// false when it was cancelled already.
func (o *Ops) CancelCampaign(ctx context.Context, campaign string) (bool, error) {
	return o.ledger.CancelCampaign(ctx, campaign)
}

// PurgeDead deletes the campaign's dead letters for good and returns how many there were.
func (o *Ops) PurgeDead(ctx context.Context, campaign string) (int64, error) {
	return o.ledger.PurgeDead(ctx, campaign)
}
