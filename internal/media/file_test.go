package media_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/media"
)

// Samples of each kind of file: the first bytes that identify it, padded.
var (
	jpegBytes = pad("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01", 64)
	pngBytes  = pad("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", 64)
	pdfBytes  = pad("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", 64)
	mp4Bytes  = pad("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", 64)
	gp3Bytes  = pad("\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x003gp4", 64)
	m4aBytes  = pad("\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A mp42isom", 64)
	mp3Bytes  = pad("\xff\xfb\x90\x64", 64) // an MPEG-1 Layer III frame header
	aacBytes  = pad("\xff\xf1\x50\x80\x02\x1f\xfc", 64)
	amrBytes  = pad("#!AMR\n", 64)
	oggBytes  = pad("OggS\x00\x02"+strings.Repeat("\x00", 22)+"\x01vorbis", 64)
	gifBytes  = pad("GIF89a\x01\x00\x01\x00", 64)
	textBytes = []byte("Spring sale: 20% off this week.\nSee you soon.\n")
	csvBytes  = []byte("name,price\nshoes,10\nhat,5\n")
)

func pad(head string, n int) []byte {
	b := make([]byte, max(n, len(head)))
	copy(b, head)
	return b
}

// webp is a WebP file of size bytes, animated or not.
func webp(animated bool, size int) []byte {
	flags := byte(0)
	if animated {
		flags = 0x02
	}
	return pad("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00"+string([]byte{flags}), size)
}

func docx(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range []string{"[Content_Types].xml", "_rels/.rels", "word/document.xml"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "<xml/>")
	}
	zw.Close()
	return b.Bytes()
}

func write(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenFindsTheTypeFromTheContent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		content  []byte
		mime     string
		kind     string
		animated bool
	}{
		{"a.jpg", jpegBytes, "image/jpeg", "image", false},
		{"a.png", pngBytes, "image/png", "image", false},
		{"brochure.pdf", pdfBytes, "application/pdf", "document", false},
		{"a.mp4", mp4Bytes, "video/mp4", "video", false},
		{"a.3gp", gp3Bytes, "video/3gpp", "video", false},
		{"a.m4a", m4aBytes, "audio/mp4", "audio", false},
		{"a.mp3", mp3Bytes, "audio/mpeg", "audio", false},
		{"a.aac", aacBytes, "audio/aac", "audio", false},
		{"a.amr", amrBytes, "audio/amr", "audio", false},
		{"a.ogg", oggBytes, "audio/ogg", "audio", false},
		{"notes.txt", textBytes, "text/plain", "document", false},
		{"prices.csv", csvBytes, "text/plain", "document", false},
		{"sticker.webp", webp(false, 2000), "image/webp", "sticker", false},
		{"moving.webp", webp(true, 2000), "image/webp", "sticker", true},
		// The name says nothing: the content does.
		{"report.docx.jpg", docx(t), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "document", false},
		{"no-extension", jpegBytes, "image/jpeg", "image", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := media.Open(write(t, tc.name, tc.content), "")
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(tc.content)
			if f.MIME != tc.mime || f.Kind != tc.kind || f.Animated != tc.animated || f.Size != int64(len(tc.content)) ||
				f.SHA256 != hex.EncodeToString(sum[:]) || f.Name != tc.name {
				t.Errorf("got %+v, want %s %s animated=%v", f, tc.mime, tc.kind, tc.animated)
			}
		})
	}
}

func TestOpenRefusesWhatWhatsAppRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		content  []byte
		mime     string
		tooLarge bool
		msg      string
	}{
		{name: "a.gif", content: gifBytes, msg: "a.gif is image/gif, a type WhatsApp does not take; it takes image jpeg/png (5 MB)"},
		{name: "a.zip", content: zipBytes(t), msg: "is application/zip, a type WhatsApp does not take"},
		{name: "a.bin", content: []byte{0, 1, 2, 3, 0xfe, 0xff}, msg: "is application/octet-stream, a type WhatsApp does not take"},
		{name: "empty.jpg", content: []byte{}, msg: "empty.jpg is empty"},
		{name: "big.jpg", content: pad(string(jpegBytes), 5_000_001), tooLarge: true,
			msg: "big.jpg is 5,000,001 bytes, over the 5,000,000 bytes (5 MB) WhatsApp takes for an image (image/jpeg)"},
		{name: "big.png", content: pad(string(pngBytes), 6_500_000), tooLarge: true,
			msg: "big.png is 6,500,000 bytes, over the 5,000,000 bytes (5 MB) WhatsApp takes for an image (image/png)"},
		{name: "big.mp4", content: pad(string(mp4Bytes), 16_000_001), tooLarge: true,
			msg: "over the 16,000,000 bytes (16 MB) WhatsApp takes for a video (video/mp4)"},
		{name: "big.mp3", content: pad(string(mp3Bytes), 16_000_001), tooLarge: true,
			msg: "over the 16,000,000 bytes (16 MB) WhatsApp takes for an audio (audio/mpeg)"},
		{name: "static.webp", content: webp(false, 100_001), tooLarge: true,
			msg: "static.webp is 100,001 bytes, over the 100,000 bytes (100 KB) WhatsApp takes for a static sticker (image/webp)"},
		{name: "moving.webp", content: webp(true, 500_001), tooLarge: true,
			msg: "over the 500,000 bytes (500 KB) WhatsApp takes for an animated sticker (image/webp)"},
		{name: "given.jpg", content: jpegBytes, mime: "image/gif", msg: "given.jpg is image/gif, a type WhatsApp does not take"},
		{name: "given2.jpg", content: jpegBytes, mime: "not a type", msg: "is not a type, a type WhatsApp does not take"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := media.Open(write(t, tc.name, tc.content), tc.mime)
			var le *media.LimitError
			if !errors.As(err, &le) || le.TooLarge() != tc.tooLarge || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("%v: want a LimitError (too large %v) saying %q", err, tc.tooLarge, tc.msg)
			}
		})
	}
	// Static and animated stickers have their own limits.
	if _, err := media.Open(write(t, "ok.webp", webp(true, 100_001)), ""); err != nil {
		t.Errorf("an animated sticker of 100 KB: %v", err)
	}
}

// A file over the largest limit is refused from its size alone, before it is read.
func TestOpenRefusesAHugeFileUnread(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.pdf")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(100_000_001) // sparse: nothing is written
	f.Close()
	os.Chmod(p, 0o200) // not even readable
	_, err = media.Open(p, "")
	var le *media.LimitError
	if !errors.As(err, &le) || !le.TooLarge() || !strings.Contains(err.Error(), "the largest file WhatsApp takes") {
		t.Fatalf("%v", err)
	}
}

func TestOpenTakesAGivenType(t *testing.T) {
	// An MPEG-4 container holding only sound is audio/mp4, which its content does not say.
	f, err := media.Open(write(t, "voice.mp4", mp4Bytes), "Audio/MP4; codecs=mp4a")
	if err != nil || f.MIME != "audio/mp4" || f.Kind != "audio" {
		t.Fatalf("%+v %v", f, err)
	}
	if _, err := media.Open(filepath.Join(t.TempDir(), "missing.jpg"), ""); err == nil || errors.As(err, new(*media.LimitError)) {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := media.Open(t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
}

func TestSpoolChecksAndRemovesItsCopy(t *testing.T) {
	dir := t.TempDir()
	f, err := media.Spool(bytes.NewReader(pngBytes), "../../etc/x\x00y.png", dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.MIME != "image/png" || f.Name != "xy.png" || f.Size != int64(len(pngBytes)) {
		t.Errorf("%+v", f)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Errorf("%d files spooled", len(left))
	}
	f.Close()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Close left %d files", len(left))
	}
	for name, r := range map[string]io.Reader{
		"a.gif":     bytes.NewReader(gifBytes),
		"big.jpg":   bytes.NewReader(pad(string(jpegBytes), 5_000_001)),
		"huge.pdf":  io.MultiReader(bytes.NewReader(pdfBytes), io.LimitReader(zeros{}, 100_000_000)),
		"empty.png": bytes.NewReader(nil),
	} {
		_, err := media.Spool(r, name, dir)
		var le *media.LimitError
		if !errors.As(err, &le) {
			t.Errorf("%s: %v, want a LimitError", name, err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%s: a refused file left %d files", name, len(left))
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func zipBytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("readme.md")
	io.WriteString(w, "# hello")
	zw.Close()
	return b.Bytes()
}
