// Package batch groups what arrives on a channel into batches without waiting for a batch to
// fill: a batch is whatever is waiting when the consumer is free, so a slow producer still gets
// prompt service and a fast one gets big batches. The producer's enqueues and the ledger's group
// commit both take their work this way.
package batch

import (
	"iter"
	"time"
)

// Of yields batches of up to max values from ch until ch is closed: it blocks for the first value
// of each batch, then adds the values already waiting. The slice is reused: a caller that keeps a
// batch after its loop body returns must copy it.
func Of[T any](ch <-chan T, max int) iter.Seq[[]T] { return Lingering(ch, max, 0, nil) }

// Lingering is Of, except that after a batch of more than one value the next batch waits up to
// linger, from its first value, for more values to fill it, as long as every value in it may
// wait (mayWait; nil: all may). Under load, where batches form anyway, fewer and fuller batches
// cost the consumer less per value; a lone value (the batch before it held one) is never held
// back, nor is a batch once it holds a value that may not wait.
func Lingering[T any](ch <-chan T, max int, linger time.Duration, mayWait func(T) bool) iter.Seq[[]T] {
	return func(yield func([]T) bool) {
		buf := make([]T, 0, max)
		busy := false
		var timer *time.Timer
		add := func(v T, wait *<-chan time.Time) {
			buf = append(buf, v)
			if mayWait != nil && !mayWait(v) {
				*wait = nil
			}
		}
		for v := range ch {
			buf = buf[:0]
			var wait <-chan time.Time
			if busy && linger > 0 {
				if timer == nil {
					timer = time.NewTimer(linger)
				} else {
					timer.Reset(linger)
				}
				wait = timer.C
			}
			add(v, &wait)
		more:
			for len(buf) < max {
				if wait == nil {
					select {
					case v, ok := <-ch:
						if !ok {
							break more
						}
						add(v, &wait)
					default:
						break more
					}
					continue
				}
				select {
				case v, ok := <-ch:
					if !ok {
						break more
					}
					add(v, &wait)
				case <-wait:
					wait = nil // what is waiting now still joins
				}
			}
			if timer != nil {
				timer.Stop()
			}
			busy = len(buf) > 1
			if !yield(buf) {
				return
			}
		}
	}
}
