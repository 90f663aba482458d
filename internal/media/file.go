// Package media uploads a campaign's image or document to Kaleyra once per sender and gives
// every job the media id, the way Kaleyra's reference asks (upload first, send by id) instead of
// making WhatsApp fetch a link for every message. `wabulk media upload`, `--media-file` on
// `wabulk enqueue` and `wabulk send`, and the HTTP API's media_file part all come here.
//
// A file is checked against WhatsApp's types and size limits before anything is uploaded
// (Open, Spool). Uploader gets the media id of a file for a sender: from the cache in Redis
// (package store), else by uploading it. Prepare does that for a whole campaign before any of its
// jobs is written, so an upload that fails leaves nothing half-done.
package media

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gabriel-vasile/mimetype"

	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
)

// File is a media file checked against WhatsApp's limits, ready to upload.
type File struct {
	// Name is the file's base name, as the upload's form and messages give it.
	Name string `json:"name"`
	// MIME is the type it is uploaded as (image/jpeg); Kind the message type it is sent as
	// (image, video, audio, document, sticker).
	MIME string `json:"mime"`
	Kind string `json:"kind"`
	// Size is its length in bytes; SHA256 the hex SHA-256 of its content.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Animated is set for an animated WebP sticker (its limit is 500 KB, not 100 KB).
	Animated bool `json:"animated,omitempty"`

	path string // where the content is read from for each upload
	temp bool   // path is a spooled copy that Close removes
}

// LimitError is a file refused before any upload: of a type WhatsApp does not take, empty, or
// over its type's size limit. Its text names the limit.
type LimitError struct {
	// Name is the file's name; MIME its type; Size its length.
	Name string
	MIME string
	Size int64
	// Limit is the size limit the file is over; 0 when its type (or emptiness) is the problem.
	Limit int64
	// Kind is the message type the limit is WhatsApp's for; empty when the type is refused.
	Kind string
	// Animated is set when the limit is that of an animated sticker.
	Animated bool
}

func (e *LimitError) Error() string {
	switch {
	case e.Limit > 0 && e.Kind == "":
		return fmt.Sprintf("%s is over %s bytes (%s), the largest file WhatsApp takes (a document's limit)", e.Name, grouped(e.Limit), size(e.Limit))
	case e.Limit > 0:
		what := "an " + e.Kind
		if e.Kind == "video" || e.Kind == "document" || e.Kind == "sticker" {
			what = "a " + e.Kind
		}
		if e.Kind == "sticker" {
			what = map[bool]string{true: "an animated sticker", false: "a static sticker"}[e.Animated]
		}
		// Exact bytes: 5,000,070 bytes would read "5 MB, over the 5 MB" in the limits' units.
		return fmt.Sprintf("%s is %s bytes, over the %s bytes (%s) WhatsApp takes for %s (%s)", e.Name, grouped(e.Size),
			grouped(e.Limit), size(e.Limit), what, e.MIME)
	case e.Size == 0 && e.MIME == "":
		return e.Name + " is empty"
	default:
		return fmt.Sprintf("%s is %s, a type WhatsApp does not take; it takes %s", e.Name, e.MIME, Supported)
	}
}

// TooLarge reports whether the file is refused for its size (413), not its type (415).
func (e *LimitError) TooLarge() bool { return e.Limit > 0 }

// Supported says in words which files WhatsApp takes, for errors and help.
const Supported = "image jpeg/png (5 MB); video mp4/3gpp (16 MB); audio aac/amr/mpeg/mp4/ogg (16 MB); " +
	"document pdf, Word, Excel, PowerPoint or plain text (100 MB); sticker webp (100 KB static, 500 KB animated); 1 MB = 1,000,000 bytes"

// size writes n bytes in the units of the limits.
func size(n int64) string {
	switch {
	case n >= kaleyradocs.MB:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/kaleyradocs.MB)) + " MB"
	case n >= kaleyradocs.KB:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/kaleyradocs.KB)) + " KB"
	}
	return fmt.Sprintf("%d bytes", n)
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }

// grouped writes n with a comma every three digits: 5,000,070.
func grouped(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Open checks the file at path and returns it ready to upload: its type is mimeType when given
// (any case, parameters ignored), else found from its content; the type must be one WhatsApp
// takes and the size within that type's limit. The content is read once here to hash it, and
// again for each upload. The error is a *LimitError when WhatsApp would refuse the file.
func Open(path, mimeType string) (*File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("media file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("media file %s is not a regular file", path)
	}
	f := &File{Name: filepath.Base(path), Size: fi.Size(), path: path}
	if f.Size > kaleyradocs.MaxMediaBytes {
		// Refused before it is read: hashing gigabytes to say no would take minutes.
		return nil, &LimitError{Name: f.Name, Size: f.Size, Limit: kaleyradocs.MaxMediaBytes}
	}
	if err := f.check(mimeType); err != nil {
		return nil, err
	}
	return f, nil
}

// Spool copies r (a file arriving in a request) to a temporary file in dir (os.TempDir when
// empty), hashing it on the way, and checks it as Open does with its type found from the
// content. It reads at most one byte more than the largest file WhatsApp takes. Close removes
// the copy; on error there is none left.
func Spool(r io.Reader, name, dir string) (*File, error) {
	tmp, err := os.CreateTemp(dir, "wabulk-media-*")
	if err != nil {
		return nil, fmt.Errorf("media file: %w", err)
	}
	f := &File{Name: cleanName(name), path: tmp.Name(), temp: true}
	n, err := io.Copy(tmp, io.LimitReader(r, kaleyradocs.MaxMediaBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	f.Size = n
	switch {
	case err != nil:
		err = fmt.Errorf("media file: %w", err)
	case n > kaleyradocs.MaxMediaBytes:
		err = &LimitError{Name: f.Name, Size: n, Limit: kaleyradocs.MaxMediaBytes}
	default:
		err = f.check("")
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// cleanName is a name given by a client, fit for messages and the upload's form.
func cleanName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, ""))
	if len(name) > 200 {
		name = strings.ToValidUTF8(name[:200], "")
	}
	if name == "" || name == "." || name == "/" {
		return "media_file"
	}
	return name
}

// check finds the file's type (given, or sniffed from its first bytes), checks it and the size,
// and hashes the content.
func (f *File) check(given string) error {
	if f.Size == 0 {
		return &LimitError{Name: f.Name}
	}
	in, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("media file: %w", err)
	}
	defer in.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(in, head)
	if err != nil && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("media file %s: %w", f.Name, err)
	}
	head = head[:n]
	t, err := resolve(given, head)
	if err != nil {
		err.(*LimitError).Name, err.(*LimitError).Size = f.Name, f.Size
		return err
	}
	f.MIME, f.Kind = t.MIME, t.Kind
	f.Animated = t.MIME == "image/webp" && animatedWebP(head)
	if limit := t.Limit(f.Animated); f.Size > limit {
		return &LimitError{Name: f.Name, MIME: f.MIME, Size: f.Size, Limit: limit, Kind: f.Kind, Animated: f.Animated}
	}
	h := sha256.New()
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("media file %s: %w", f.Name, err)
	}
	// The size is checked above from the file's metadata; hashing reads exactly that much, so a
	// file that grows meanwhile is hashed (and uploaded) as it was checked.
	if m, err := io.Copy(h, io.LimitReader(in, f.Size)); err != nil || m != f.Size {
		return fmt.Errorf("media file %s: read %d of %d bytes: %v", f.Name, m, f.Size, err)
	}
	f.SHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// resolve returns the entry of the type given, or else of the type found in the first bytes
// of the file. Detection is github.com/gabriel-vasile/mimetype's: net/http's DetectContentType
// knows none of the Office formats (a .docx is application/zip to it), nor 3GPP, AMR or AAC,
// and WhatsApp's list needs all of them.
func resolve(given string, head []byte) (kaleyradocs.MediaType, error) {
	if strings.TrimSpace(given) != "" {
		mt, _, err := mime.ParseMediaType(given)
		if err != nil {
			return kaleyradocs.MediaType{}, &LimitError{MIME: given}
		}
		if t, ok := kaleyradocs.LookupMedia(strings.ToLower(mt)); ok {
			return t, nil
		}
		return kaleyradocs.MediaType{}, &LimitError{MIME: mt}
	}
	found := mimetype.Detect(head)
	base, _, _ := mime.ParseMediaType(found.String())
	if t, ok := kaleyradocs.LookupMedia(base); ok {
		return t, nil
	}
	// M4A is the MPEG-4 audio WhatsApp lists as audio/mp4.
	if found.Is("audio/x-m4a") || found.Is("audio/mp4") {
		t, _ := kaleyradocs.LookupMedia("audio/mp4")
		return t, nil
	}
	// Every text format (CSV, JSON, HTML…) is plain text to WhatsApp. Other parents are not
	// followed: an AVIF picture descends from video/mp4 in mimetype's tree, and is no video.
	for p := found; p != nil; p = p.Parent() {
		if p.Is("text/plain") {
			t, _ := kaleyradocs.LookupMedia("text/plain")
			return t, nil
		}
	}
	return kaleyradocs.MediaType{}, &LimitError{MIME: base}
}

// animatedWebP reports whether a WebP file's header says it is animated: an extended (VP8X)
// file with the animation flag set.
func animatedWebP(head []byte) bool {
	return len(head) >= 21 && string(head[0:4]) == "RIFF" && string(head[8:16]) == "WEBPVP8X" && head[20]&0x02 != 0
}

// open returns the content from its start, for one upload.
func (f *File) open() (*os.File, error) {
	in, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("media file %s: %w", f.Name, err)
	}
	return in, nil
}

// Close removes a spooled copy (Spool); for a file of Open it does nothing.
func (f *File) Close() error {
	if !f.temp {
		return nil
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
