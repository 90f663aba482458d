package defaults

import (
	"testing"
	"time"
)

func TestSetFillsOnlyUnsetValues(t *testing.T) {
	n, neg, kept := 0, -3, 7
	Set(&n, 5)
	Set(&neg, 5)
	Set(&kept, 5)
	d := time.Duration(0)
	Set(&d, time.Second)
	s, named := "", "mine"
	Set(&s, "default")
	Set(&named, "default")
	if n != 5 || neg != 5 || kept != 7 || d != time.Second || s != "default" || named != "mine" {
		t.Errorf("got %d %d %d %v %q %q", n, neg, kept, d, s, named)
	}
}
