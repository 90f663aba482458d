package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/redistest"
)

// hostileRef would retitle the operator's terminal (OSC 0) and colour it red if printed raw.
const hostileRef = "\x1b[31mred\x1b]0;pwned\x07\u009b2J"

// A ref holding terminal escapes must not reach the terminal raw from any table the CLI prints
// (the send summary's examples, `dead list`): control characters are shown escaped.
func TestTablesEscapeControlCharacters(t *testing.T) {
	srv := redistest.Start(t)
	env := []string{"WABULK_REDIS_URL=" + srv.URL, "WABULK_RETRY_BASE=20ms", "WABULK_RETRY_MAX=100ms"}
	in := "to,type,media_link,ref\n+919876543210,image,https://x.test/a.jpg,\"" + hostileRef + "\"\n"
	r := runCLI(t, env, "send", "--sandbox", "--fault", "WA400=1", "--campaign", "esc", writeFile(t, "esc.csv", in))
	if r.code != 0 && r.code != 1 {
		t.Fatalf("send: exit %d\n%s", r.code, r.stderr)
	}
	check := func(what, out string) {
		t.Helper()
		if strings.ContainsAny(out, "\x1b\x07\u009b") {
			t.Errorf("%s prints control characters raw:\n%q", what, out)
		}
		if !strings.Contains(out, `\x1b[31mred\x1b]0;pwned\x07\u009b2J`) {
			t.Errorf("%s does not show the ref escaped:\n%q", what, out)
		}
	}
	check("send summary", r.stdout)
	r = runCLI(t, env, "dead", "list", "--campaign", "esc")
	if r.code != 0 {
		t.Fatalf("dead list: exit %d\n%s", r.code, r.stderr)
	}
	check("dead list", r.stdout)
	// JSON keeps the value exact (encoding/json escapes it for the terminal).
	r = runCLI(t, env, "dead", "list", "--campaign", "esc", "--json")
	if r.code != 0 || strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, `\u001b]0;pwned\u0007`) {
		t.Errorf("dead list --json: exit %d\n%q", r.code, r.stdout)
	}
}

// Cells of the --rejects CSV that a spreadsheet would run as a formula (= + - @, tab, CR first)
// are written with a leading quote, so opening the file runs nothing.
func TestRejectsFileNeutralisesFormulas(t *testing.T) {
	recs := enqueueRejects(t, "to,type,media_link,ref,ref1,ref2,caption\n"+
		"\"=HYPERLINK(\"\"http://evil.test\"\")\",image,https://x.test/a.jpg,+1+2,-2+3+cmd|' /C calc'!A0,@SUM(A1),\"\tx\"\n"+
		"+919876543210,audio,https://x.test/a.mp3,\"\rcr\",-3,,caption\n")
	if len(recs) != 3 {
		t.Fatalf("rejects file:\n%q", recs)
	}
	slices.SortFunc(recs[1:], func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	col := func(rec []string, name string) string {
		return rec[slices.Index(recs[0], name)]
	}
	for _, c := range []struct {
		rec        []string
		name, want string
	}{
		{recs[1], "to", `'=HYPERLINK("http://evil.test")`},
		{recs[1], "ref", "'+1+2"},
		{recs[1], "ref1", "'-2+3+cmd|' /C calc'!A0"},
		{recs[1], "ref2", "'@SUM(A1)"},
		{recs[1], "caption", "'\tx"},
		{recs[2], "to", "+919876543210"}, // a plain number runs nothing and stays usable
		{recs[2], "ref", "'\rcr"},
		{recs[2], "ref1", "-3"},
		{recs[2], "caption", "caption"},
	} {
		if got := col(c.rec, c.name); got != c.want {
			t.Errorf("line %s %s = %q, want %q", c.rec[0], c.name, got, c.want)
		}
	}
	for _, rec := range recs {
		for _, cell := range rec {
			if cell != "" && strings.ContainsRune("=@\t\r", rune(cell[0])) {
				t.Errorf("cell %q starts a formula", cell)
			}
		}
	}
}
