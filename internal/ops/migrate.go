package ops

import (
	"context"

	"github.com/wabulk/wabulk/internal/store"
)

// Migrate moves the tasks and ledger records that wabulk versions before the lanes-only release
// left in the queue named after the namespace into their lanes, then deletes that queue
// (store.Ledger.Migrate). With dryRun it only reads and reports what it would do.
func (o *Ops) Migrate(ctx context.Context, dryRun bool) (*store.MigrateReport, error) {
	return o.ledger.Migrate(ctx, dryRun)
}
