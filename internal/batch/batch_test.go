package batch

import (
	"slices"
	"testing"
	"time"
)

func TestOfTakesWhatWaitsUpToMaxAndEndsWhenClosed(t *testing.T) {
	ch := make(chan int, 10)
	for i := range 7 {
		ch <- i
	}
	close(ch)
	var got [][]int
	for b := range Of(ch, 3) {
		got = append(got, slices.Clone(b))
	}
	want := [][]int{{0, 1, 2}, {3, 4, 5}, {6}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches %v, want %v", got, want)
	}
}

func TestOfDoesNotWaitForABatchToFill(t *testing.T) {
	ch := make(chan int)
	done := make(chan []int)
	go func() {
		for b := range Of(ch, 64) {
			done <- slices.Clone(b)
		}
		close(done)
	}()
	ch <- 1
	if b := <-done; !slices.Equal(b, []int{1}) {
		t.Fatalf("first batch %v, want [1] at once", b)
	}
	close(ch)
	if _, ok := <-done; ok {
		t.Fatal("a batch after the channel closed")
	}
}

func TestOfStopsWhenTheLoopBreaks(t *testing.T) {
	ch := make(chan int, 4)
	ch <- 1
	ch <- 2
	for b := range Of(ch, 1) {
		if !slices.Equal(b, []int{1}) {
			t.Fatalf("batch %v", b)
		}
		break
	}
	if v := <-ch; v != 2 {
		t.Fatalf("the value after the break was taken: got %d", v)
	}
}

func TestLingeringWaitsOnlyAfterABusyBatch(t *testing.T) {
	ch := make(chan int, 10)
	ch <- 0
	ch <- 1
	got := make(chan []int)
	go func() {
		for b := range Lingering(ch, 3, 500*time.Millisecond, func(v int) bool { return v < 100 }) {
			got <- slices.Clone(b)
		}
		close(got)
	}()
	if b := <-got; !slices.Equal(b, []int{0, 1}) {
		t.Fatalf("first batch %v, want what was waiting", b)
	}
	// After a batch of two the next one waits for more: 2 and 3 go together even though 3
	// comes later.
	ch <- 2
	time.Sleep(50 * time.Millisecond)
	ch <- 3
	if b := <-got; !slices.Equal(b, []int{2, 3}) {
		t.Fatalf("second batch %v, want [2 3]", b)
	}
	// A lone value after a busy batch waits out the linger and goes alone; the next lone value
	// (after a batch of one) is not held.
	ch <- 4
	if b := <-got; !slices.Equal(b, []int{4}) {
		t.Fatalf("third batch %v", b)
	}
	start := time.Now()
	ch <- 5
	if b := <-got; !slices.Equal(b, []int{5}) {
		t.Fatalf("fourth batch %v", b)
	}
	if d := time.Since(start); d >= 500*time.Millisecond {
		t.Errorf("a lone value after a batch of one waited %v", d)
	}
	// A value that may not wait is not held, even after a busy batch.
	ch <- 6
	ch <- 7
	if b := <-got; !slices.Equal(b, []int{6, 7}) {
		t.Fatalf("fifth batch %v", b)
	}
	start = time.Now()
	ch <- 100
	if b := <-got; !slices.Equal(b, []int{100}) {
		t.Fatalf("sixth batch %v", b)
	}
	if d := time.Since(start); d >= 500*time.Millisecond {
		t.Errorf("a value that may not wait waited %v", d)
	}
	close(ch)
	if _, ok := <-got; ok {
		t.Fatal("batches after close")
	}
}
