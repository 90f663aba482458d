package producer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/wabulk/wabulk/job"
)

// MaxRow is the most bytes one row (a CSV record or a JSONL line) may take. A longer row is
// rejected and skipped without being held in memory, so one bad line cannot exhaust memory.
const MaxRow = 1 << 20

// ReadError is a problem with a campaign file as a whole (its header, or reading it at all), as
// opposed to one bad row. A reader yields it as the last Row; Campaign stops on it and returns it.
type ReadError struct {
	Line int // file line where the problem is; 0 when it is not tied to a line
	Err  error
}

func (e *ReadError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return e.Err.Error()
}

func (e *ReadError) Unwrap() error { return e.Err }

var (
	bom  = []byte("\xef\xbb\xbf")
	crlf = []byte("\r\n")
)

// rewind makes a reader iterable more than once when it can seek: Campaign with Strict reads the
// rows twice (validate everything, then enqueue) rather than holding them in memory.
type rewind struct {
	r     io.Reader
	start int64
	used  bool
}

func (rw *rewind) begin() error {
	s, ok := rw.r.(io.Seeker)
	if !rw.used {
		rw.used = true
		if ok {
			if pos, err := s.Seek(0, io.SeekCurrent); err == nil {
				rw.start = pos
			}
		}
		return nil
	}
	if !ok {
		return errors.New("the input cannot be read twice (not seekable): spool it to a file first")
	}
	if _, err := s.Seek(rw.start, io.SeekStart); err != nil {
		return fmt.Errorf("rewind the input: %w", err)
	}
	return nil
}

// ReadCSV yields the rows of a CSV campaign file: a header row naming the columns (job.Columns,
// any case, surrounding spaces ignored; `to` required), then one row per record. It takes a
// UTF-8 BOM, CRLF line ends and quoted fields (commas, quotes, line breaks inside quotes).
// A record that cannot be used (wrong field count, bad quoting, invalid UTF-8, over MaxRow
// bytes) is yielded with Err set and reading goes on; a bad header or a read failure is yielded
// as a *ReadError and ends the sequence. Memory stays flat whatever the file size. When r is an
// io.Seeker, the sequence can be iterated again from the same starting point.
func ReadCSV(r io.Reader) iter.Seq[Row] {
	rw := &rewind{r: r}
	return func(yield func(Row) bool) {
		if err := rw.begin(); err != nil {
			yield(Row{Err: &ReadError{Err: err}})
			return
		}
		cr := newCSVReader(r)
		hline, header, err := cr.record()
		if err == io.EOF {
			yield(Row{Line: 1, Err: &ReadError{Line: 1, Err: errors.New("the file is empty: want a header row naming at least the to column")}})
			return
		}
		if err != nil {
			yield(Row{Line: hline, Err: &ReadError{Line: hline, Err: fmt.Errorf("header: %w", err)}})
			return
		}
		cols, err := headerColumns(header)
		if err != nil {
			yield(Row{Line: hline, Err: &ReadError{Line: hline, Err: err}})
			return
		}
		for {
			line, rec, err := cr.record()
			if err == io.EOF {
				return
			}
			var rerr *ReadError
			if errors.As(err, &rerr) {
				yield(Row{Line: line, Err: err})
				return
			}
			row := Row{Line: line, Err: err}
			if err == nil {
				row.Fields, row.Err = csvFields(cols, rec)
			}
			if !yield(row) {
				return
			}
		}
	}
}

func headerColumns(header []string) ([]string, error) {
	cols := make([]string, len(header))
	seen := map[string]bool{}
	var unknown []string
	for i, h := range header {
		c := strings.ToLower(strings.TrimSpace(h))
		if !utf8.ValidString(c) {
			return nil, errors.New("header is not valid UTF-8")
		}
		var f job.Fields
		if f.Ptr(c) == nil {
			unknown = append(unknown, fmt.Sprintf("%q", clip(c, 40)))
			continue
		}
		if seen[c] {
			return nil, fmt.Errorf("header names column %q twice", c)
		}
		seen[c] = true
		cols[i] = c
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("header has unknown column(s) %s; known columns: %s",
			strings.Join(unknown, ", "), strings.Join(job.Columns, ", "))
	}
	if !seen["to"] {
		return nil, fmt.Errorf("header has no to column (columns: %s)", strings.Join(job.Columns, ", "))
	}
	return cols, nil
}

func csvFields(cols []string, rec []string) (job.Fields, error) {
	var f job.Fields
	if len(rec) != len(cols) {
		return f, fmt.Errorf("row has %d fields, the header has %d", len(rec), len(cols))
	}
	for i, v := range rec {
		if !utf8.ValidString(v) {
			return job.Fields{}, fmt.Errorf("column %s is not valid UTF-8", cols[i])
		}
		*f.Ptr(cols[i]) = v
	}
	return f, nil
}

// csvReader splits records itself rather than using encoding/csv so that a record's size can be
// capped while it is read (encoding/csv buffers a whole record, however large, before returning).
type csvReader struct {
	br     *bufio.Reader
	line   int // lines consumed so far
	first  bool
	buf    []byte
	fields []string
}

func newCSVReader(r io.Reader) *csvReader {
	return &csvReader{br: bufio.NewReaderSize(r, 64<<10), first: true}
}

// record returns the next non-blank record and the file line it starts on. A record-level
// problem comes back as a plain error with the line; a read failure as *ReadError; the end as io.EOF.
func (c *csvReader) record() (int, []string, error) {
	for {
		start := c.line + 1
		raw, eof, tooLong, err := c.rawRecord()
		if err != nil {
			return start, nil, &ReadError{Line: start, Err: fmt.Errorf("read: %w", err)}
		}
		if tooLong {
			return start, nil, fmt.Errorf("row is longer than %d bytes", MaxRow)
		}
		if c.first {
			c.first = false
			raw = bytes.TrimPrefix(raw, bom)
		}
		if len(bytes.TrimRight(raw, "\r\n")) == 0 {
			if eof {
				return start, nil, io.EOF
			}
			continue // blank lines carry no row, as in encoding/csv
		}
		fields, err := c.split(raw)
		return start, fields, err
	}
}

// rawRecord reads up to the newline that ends a record (one outside quotes). The quote state
// machine follows RFC 4180: a quote opens a quoted field only at the field's start. Past MaxRow
// bytes it keeps scanning to the record's end but stops storing.
func (c *csvReader) rawRecord() (raw []byte, eof, tooLong bool, err error) {
	const (
		fieldStart = iota
		unquoted
		quoted
		quoteInQuoted
	)
	c.buf = c.buf[:0]
	state := fieldStart
	for {
		chunk, rerr := c.br.ReadSlice('\n')
		// Walk the chunk for quote state; the newline at its end ends the record unless quoted.
		for _, b := range chunk {
			switch state {
			case fieldStart:
				switch b {
				case '"':
					state = quoted
				case ',', '\n':
				default:
					state = unquoted
				}
			case unquoted:
				if b == ',' {
					state = fieldStart
				}
			case quoted:
				if b == '"' {
					state = quoteInQuoted
				}
			case quoteInQuoted:
				switch b {
				case '"':
					state = quoted
				case ',', '\n':
					state = fieldStart
				default:
					state = unquoted
				}
			}
		}
		if !tooLong {
			if len(c.buf)+len(chunk) > MaxRow {
				tooLong = true
				c.buf = c.buf[:0]
			} else {
				c.buf = append(c.buf, chunk...)
			}
		}
		if n := len(chunk); n > 0 && chunk[n-1] == '\n' {
			c.line++
			if state != quoted {
				return c.buf, false, tooLong, nil
			}
		}
		switch {
		case rerr == io.EOF:
			if len(chunk) > 0 && chunk[len(chunk)-1] != '\n' {
				c.line++
			}
			return c.buf, true, tooLong, nil
		case errors.Is(rerr, bufio.ErrBufferFull):
		case rerr != nil:
			return nil, false, false, rerr
		}
	}
}

// split parses one record's bytes into fields, reporting the mistakes encoding/csv reports.
func (c *csvReader) split(raw []byte) ([]string, error) {
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	raw = bytes.TrimSuffix(raw, []byte("\r"))
	fields := c.fields[:0]
	var field []byte
	for i := 0; ; {
		field = field[:0]
		if i < len(raw) && raw[i] == '"' {
			i++
			for {
				j := bytes.IndexByte(raw[i:], '"')
				if j < 0 {
					return nil, errors.New("a quoted field has no closing quote")
				}
				field = append(field, raw[i:i+j]...)
				i += j + 1
				if i < len(raw) && raw[i] == '"' {
					field = append(field, '"')
					i++
					continue
				}
				break
			}
			if i < len(raw) && raw[i] != ',' {
				return nil, errors.New(`a quoted field has text after its closing quote (write a quote inside quotes as "")`)
			}
		} else {
			j := bytes.IndexByte(raw[i:], ',')
			if j < 0 {
				j = len(raw) - i
			}
			field = append(field, raw[i:i+j]...)
			if bytes.IndexByte(field, '"') >= 0 {
				return nil, errors.New(`a field holds a quote but is not quoted (quote the field and write the quote as "")`)
			}
			i += j
		}
		// A CRLF inside a quoted field becomes LF, as in encoding/csv.
		if bytes.Contains(field, crlf) {
			field = bytes.ReplaceAll(field, crlf, []byte("\n"))
		}
		fields = append(fields, string(field))
		if i >= len(raw) {
			break
		}
		i++ // the comma
	}
	c.fields = fields
	return fields, nil
}

// ReadJSONL yields the rows of a JSONL campaign file: one JSON object per line whose keys are the
// column names (job.Columns, any case) and whose values are strings (numbers are taken as
// written, null as empty). Blank lines are skipped. A line that is not such an object, holds
// invalid UTF-8 or exceeds MaxRow bytes is yielded with Err set; a read failure is yielded as a
// *ReadError and ends the sequence. When r is an io.Seeker, the sequence can be iterated again.
func ReadJSONL(r io.Reader) iter.Seq[Row] {
	rw := &rewind{r: r}
	return func(yield func(Row) bool) {
		if err := rw.begin(); err != nil {
			yield(Row{Err: &ReadError{Err: err}})
			return
		}
		br := bufio.NewReaderSize(r, 64<<10)
		var buf []byte
		for line := 1; ; line++ {
			buf = buf[:0]
			tooLong := false
			var rerr error
			for {
				chunk, err := br.ReadSlice('\n')
				if !tooLong {
					if len(buf)+len(chunk) > MaxRow {
						tooLong, buf = true, buf[:0]
					} else {
						buf = append(buf, chunk...)
					}
				}
				if errors.Is(err, bufio.ErrBufferFull) {
					continue
				}
				rerr = err
				break
			}
			if rerr != nil && rerr != io.EOF {
				yield(Row{Line: line, Err: &ReadError{Line: line, Err: fmt.Errorf("read: %w", rerr)}})
				return
			}
			if line == 1 {
				buf = bytes.TrimPrefix(buf, bom)
			}
			var row Row
			switch {
			case tooLong:
				row = Row{Line: line, Err: fmt.Errorf("row is longer than %d bytes", MaxRow)}
			case len(bytes.TrimSpace(buf)) == 0:
				if rerr == io.EOF {
					return
				}
				continue
			default:
				f, err := jsonFields(buf)
				row = Row{Line: line, Fields: f, Err: err}
			}
			if !yield(row) || rerr == io.EOF {
				return
			}
		}
	}
}

var errNotObject = errors.New(`line is not a JSON object (want {"to": "+91…", …})`)

func jsonFields(b []byte) (job.Fields, error) {
	var f job.Fields
	if !utf8.Valid(b) {
		return f, errors.New("line is not valid UTF-8")
	}
	// The object is read key by key, not into a map: a map keeps one of two keys that differ
	// only by case ("to" and "TO") at random (Go's map order) and the last of a key given twice,
	// so the row would be sent to a number the file does not say plainly. Such a row is
	// rejected, as a CSV header naming a column twice is.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return f, errNotObject
	}
	var set uint64 // bit i: job.Columns[i] was given
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return job.Fields{}, errNotObject
		}
		k, _ := t.(string)
		v, err := dec.Token()
		if err != nil {
			return job.Fields{}, errNotObject
		}
		c := strings.ToLower(strings.TrimSpace(k))
		i := slices.Index(job.Columns, c)
		if i < 0 {
			return job.Fields{}, fmt.Errorf("unknown key %q; known keys: %s", clip(k, 40), strings.Join(job.Columns, ", "))
		}
		if set&(1<<i) != 0 {
			return job.Fields{}, fmt.Errorf("key %q is given twice (keys are matched in any case)", c)
		}
		set |= 1 << i
		p := f.Ptr(c)
		switch v := v.(type) {
		case string:
			*p = v
		case json.Number:
			*p = v.String()
		case nil:
		default: // an array or object (its opening delimiter), or a boolean
			return job.Fields{}, fmt.Errorf("key %q must be a string", c)
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return job.Fields{}, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return job.Fields{}, errors.New("line holds more than one JSON value")
	}
	return f, nil
}

// clip shortens s for an error message, on a character boundary.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
