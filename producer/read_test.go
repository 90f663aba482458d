package producer_test

import (
	"bytes"
	"errors"
	"io"
	"iter"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/job"
	"github.com/wabulk/wabulk/producer"
)

// got is one row as the tests compare it: its line, its error text or its fields.
type got struct {
	line int
	err  string
	f    job.Fields
}

func collect(rows iter.Seq[producer.Row]) (out []got, readErr *producer.ReadError) {
	for r := range rows {
		g := got{line: r.Line, f: r.Fields}
		if r.Err != nil {
			g.err = r.Err.Error()
			var re *producer.ReadError
			if errors.As(r.Err, &re) {
				readErr = re
			}
		}
		out = append(out, g)
	}
	return out, readErr
}

func TestReadCSVBadInput(t *testing.T) {
	big := strings.Repeat("x", producer.MaxRow+10)
	for _, tc := range []struct {
		name    string
		in      string
		want    []got
		readErr string // substring of the *ReadError that ends the rows
	}{
		{name: "an empty file is a read error", in: "", readErr: "the file is empty"},
		{name: "a header alone gives no rows", in: "to,type\r\n", want: nil},
		{name: "no to column is a read error", in: "type,media_id\nimage,m\n", readErr: "no to column"},
		{name: "an unknown column is a read error", in: "to,colour\n1,red\n", readErr: `unknown column(s) "colour"`},
		{name: "a column named twice is a read error", in: "to,TO\n1,2\n", readErr: `"to" twice`},
		{name: "a BOM and odd case and spaces in the header are fine", in: "\xef\xbb\xbf To , TYPE\n+919876543210,image\n",
			want: []got{{line: 2, f: job.Fields{To: "+919876543210", Type: "image"}}}},
		{name: "CRLF line ends", in: "to,type\r\n1,image\r\n2,video\r\n",
			want: []got{{line: 2, f: job.Fields{To: "1", Type: "image"}}, {line: 3, f: job.Fields{To: "2", Type: "video"}}}},
		{name: "quoted commas, quotes and line breaks", in: "to,caption\n\"1,2\",\"say \"\"hi\"\",\r\nbye\"\n3,x\n",
			want: []got{{line: 2, f: job.Fields{To: "1,2", Caption: "say \"hi\",\nbye"}}, {line: 4, f: job.Fields{To: "3", Caption: "x"}}}},
		{name: "a ragged row is rejected and reading goes on", in: "to,type\n1\n2,image,extra\n3,image\n",
			want: []got{{line: 2, err: "row has 1 fields, the header has 2"}, {line: 3, err: "row has 3 fields, the header has 2"},
				{line: 4, f: job.Fields{To: "3", Type: "image"}}}},
		{name: "a 1 MB cell is rejected without stopping", in: "to,caption\n1," + big + "\n2,ok\n",
			want: []got{{line: 2, err: "row is longer than 1048576 bytes"}, {line: 3, f: job.Fields{To: "2", Caption: "ok"}}}},
		{name: "a 1 MB quoted cell spanning lines keeps the line count", in: "to,caption\n1,\"" + big + "\n\n\"\n2,ok\n",
			want: []got{{line: 2, err: "row is longer than"}, {line: 5, f: job.Fields{To: "2", Caption: "ok"}}}},
		{name: "invalid UTF-8 is rejected", in: "to,caption\n1,caf\xe9\n", want: []got{{line: 2, err: "column caption is not valid UTF-8"}}},
		{name: "a bare quote is rejected", in: "to,caption\n1,a\"b\n2,c\n",
			want: []got{{line: 2, err: "holds a quote but is not quoted"}, {line: 3, f: job.Fields{To: "2", Caption: "c"}}}},
		{name: "text after a closing quote is rejected", in: "to,caption\n1,\"a\"b\n", want: []got{{line: 2, err: "text after its closing quote"}}},
		{name: "an unclosed quote is rejected at its first line", in: "to,caption\n1,ok\n2,\"open\n3,x\n",
			want: []got{{line: 2, f: job.Fields{To: "1", Caption: "ok"}}, {line: 3, err: "no closing quote"}}},
		{name: "blank lines are skipped but counted", in: "to\n\n1\n\r\n2", want: []got{{line: 3, f: job.Fields{To: "1"}}, {line: 5, f: job.Fields{To: "2"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, re := collect(producer.ReadCSV(strings.NewReader(tc.in)))
			if tc.readErr != "" {
				if re == nil || !strings.Contains(re.Error(), tc.readErr) {
					t.Fatalf("rows %+v, want a read error containing %q", rows, tc.readErr)
				}
				return
			}
			check(t, rows, tc.want)
		})
	}
}

func check(t *testing.T, rows, want []got) {
	t.Helper()
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i := range want {
		r, w := rows[i], want[i]
		if r.line != w.line || (w.err == "") != (r.err == "") || !strings.Contains(r.err, w.err) || (w.err == "" && r.f != w.f) {
			t.Errorf("row %d: got %+v, want %+v", i, r, w)
		}
	}
}

func TestReadJSONLBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []got
	}{
		{name: "an empty file gives no rows", in: ""},
		{name: "objects, blank lines skipped, any key case, numbers and null", in: "\xef\xbb\xbf{\"TO\":\"1\",\"type\":\"image\"}\n\n  \n{\"to\":919876543210,\"ref\":null}",
			want: []got{{line: 1, f: job.Fields{To: "1", Type: "image"}}, {line: 4, f: job.Fields{To: "919876543210"}}}},
		{name: "a line that is not an object is rejected", in: "[1]\n\"x\"\nnull\n{\n{\"to\":\"2\"}\n",
			want: []got{{line: 1, err: "not a JSON object"}, {line: 2, err: "not a JSON object"}, {line: 3, err: "not a JSON object"},
				{line: 4, err: "not a JSON object"}, {line: 5, f: job.Fields{To: "2"}}}},
		{name: "two values on a line are rejected", in: "{\"to\":\"1\"} {}\n", want: []got{{line: 1, err: "more than one JSON value"}}},
		{name: "an unknown key is rejected", in: "{\"to\":\"1\",\"colour\":\"red\"}\n", want: []got{{line: 1, err: `unknown key "colour"`}}},
		{name: "keys differing only by case, or a key given twice, are rejected",
			in: "{\"to\":\"+919812345601\",\"TO\":\"+919812345602\"}\n{\"to\":\"1\",\"to\":\"2\"}\n{\"Type\":\"image\",\"to\":\"3\",\" TYPE \":\"video\"}\n{\"to\":\"4\"}\n",
			want: []got{{line: 1, err: `key "to" is given twice`}, {line: 2, err: `key "to" is given twice`},
				{line: 3, err: `key "type" is given twice`}, {line: 4, f: job.Fields{To: "4"}}}},
		{name: "a non-string value is rejected", in: "{\"to\":[\"1\"]}\n", want: []got{{line: 1, err: `key "to" must be a string`}}},
		{name: "invalid UTF-8 is rejected", in: "{\"to\":\"1\",\"caption\":\"caf\xe9\"}\n", want: []got{{line: 1, err: "not valid UTF-8"}}},
		{name: "a 1 MB line is rejected without stopping", in: "{\"to\":\"1\",\"caption\":\"" + strings.Repeat("x", producer.MaxRow) + "\"}\n{\"to\":\"2\"}\r\n",
			want: []got{{line: 1, err: "row is longer than"}, {line: 2, f: job.Fields{To: "2"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, re := collect(producer.ReadJSONL(strings.NewReader(tc.in)))
			if re != nil {
				t.Fatalf("read error %v", re)
			}
			check(t, rows, tc.want)
		})
	}
}

// failingReader returns its data, then an error that is not EOF.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if err == io.EOF {
		return n, errors.New("disk on fire")
	}
	return n, err
}

func TestReadFailureIsAReadError(t *testing.T) {
	for name, rows := range map[string]iter.Seq[producer.Row]{
		"csv":   producer.ReadCSV(&failingReader{strings.NewReader("to\n1\n")}),
		"jsonl": producer.ReadJSONL(&failingReader{strings.NewReader("{\"to\":\"1\"}\n")}),
	} {
		t.Run(name, func(t *testing.T) {
			got, re := collect(rows)
			if re == nil || !strings.Contains(re.Error(), "disk on fire") || len(got) != 2 {
				t.Fatalf("rows %+v, read error %v", got, re)
			}
		})
	}
}

func TestReadersRewindASeekableInput(t *testing.T) {
	r := bytes.NewReader([]byte("to\n1\n2\n"))
	rows := producer.ReadCSV(r)
	a, _ := collect(rows)
	b, _ := collect(rows)
	if len(a) != 2 || len(b) != 2 || a[1] != b[1] {
		t.Fatalf("first pass %+v, second %+v", a, b)
	}
}

// checkRows holds for any input: lines increase, every row either parsed or says why not,
// and no field is longer than a row may be.
func checkRows(t *testing.T, rows iter.Seq[producer.Row]) {
	last := 0
	for r := range rows {
		if r.Line <= last && !(r.Line == 1 && last == 0) {
			var re *producer.ReadError
			if !errors.As(r.Err, &re) {
				t.Fatalf("line %d after line %d", r.Line, last)
			}
		}
		last = r.Line
		if r.Err != nil {
			if r.Fields != (job.Fields{}) && !strings.Contains(r.Err.Error(), "fields") {
				t.Fatalf("row with an error and fields: %+v", r)
			}
			continue
		}
		f := r.Fields
		for _, c := range job.Columns {
			v := *f.Ptr(c)
			if len(v) > producer.MaxRow || !utf8.ValidString(v) {
				t.Fatalf("column %s: %d bytes, valid UTF-8 %v", c, len(v), utf8.ValidString(v))
			}
		}
	}
}

func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{"to,type\n1,image\n", "\xef\xbb\xbfto,caption\r\n\"a,\"\"b\"\"\r\nc\",d\r\n", "to\n\"open\n",
		"to,ref\n1,a\"b\n2,\"x\"y\n", "to\n\n\n3", "type\n1\n", "to,to\n", "to,caption\n1,\xff\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRows(t, producer.ReadCSV(bytes.NewReader(b)))
	})
}

func FuzzReadJSONL(f *testing.F) {
	for _, s := range []string{`{"to":"1","type":"image"}` + "\n", "\n\n[1]\n", `{"to":1e3,"ref":null}`, "{\"to\":\"\xff\"}\n{}", `{"to":"1"}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRows(t, producer.ReadJSONL(bytes.NewReader(b)))
	})
}

// Validation reasons a user sees for rows that parse but cannot be sent.
func TestCampaignRejectsInvalidMessages(t *testing.T) {
	b := setup(t, redistest.Options{})
	for _, tc := range []struct{ name, row, reason string }{
		{"a number with letters", "+91 98765 4321O,image,m,", "unexpected 'O'"},
		{"a number with spaces, dashes and no + is fine", "91 98765-43210,image,m,", ""},
		{"both media id and link", "+919876543210,image,m,https://x.test/a", "not both"},
		{"neither media id nor link", "+919876543210,image,,", "media_id or media_link is required"},
		{"an ftp link", "+919876543210,image,,ftp://x.test/a", "absolute http(s) URL"},
		{"an unknown type", "+919876543210,gif,m,", `type "gif" is not one of`},
		{"an empty to", ",image,m,", "to is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := "to,type,media_id,media_link\n" + tc.row + "\n"
			_, outs, err := run(t, b.p, "v", producer.ReadCSV(strings.NewReader(in)), producer.Options{DryRun: true})
			if err != nil || len(outs) != 1 {
				t.Fatalf("%v %+v", err, outs)
			}
			o := outs[0]
			if tc.reason == "" {
				if o.Status != producer.StatusValid {
					t.Fatalf("outcome %+v, want valid", o)
				}
				return
			}
			if o.Status != producer.StatusRejected || o.Line != 2 || !strings.Contains(o.Reason, tc.reason) {
				t.Fatalf("outcome %+v, want rejected on line 2 with %q", o, tc.reason)
			}
		})
	}
}
