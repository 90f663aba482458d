// Package batch groups what arrives on a channel into batches without waiting for a batch to
// fill: a batch is whatever is waiting when the consumer is free, so a slow producer still gets
// prompt service and a fast one gets big batches. The producer's enqueues and the ledger's group
// commit both take their work this way.
package batch

import "iter"

// Of yields batches of up to max values from ch until ch is closed: it blocks for the first value
// of each batch, then adds the values already waiting. The slice is reused: a caller that keeps a
// batch after its loop body returns must copy it.
func Of[T any](ch <-chan T, max int) iter.Seq[[]T] {
	return func(yield func([]T) bool) {
		buf := make([]T, 0, max)
		for v := range ch {
			buf = append(buf[:0], v)
		more:
			for len(buf) < max {
				select {
				case v, ok := <-ch:
					if !ok {
						break more
					}
					buf = append(buf, v)
				default:
					break more
				}
			}
			if !yield(buf) {
				return
			}
		}
	}
}
