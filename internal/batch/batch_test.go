package batch

import (
	"slices"
	"testing"
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
