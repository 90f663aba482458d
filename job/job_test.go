package job

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// valid is a message every case below starts from.
func valid() Fields {
	return Fields{To: "+919876543210", Type: "image", MediaLink: "https://x.test/a.jpg"}
}

func with(mod func(*Fields)) Fields {
	f := valid()
	mod(&f)
	return f
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       Fields
		wantErr string // substring; empty: valid
		check   func(t *testing.T, p Payload)
	}{
		{name: "a valid image is stored in E.164 with wa_source api", f: valid(), check: func(t *testing.T, p Payload) {
			if p.To != "+919876543210" || p.WASource != "api" || p.V != Version || p.Campaign != "c" {
				t.Errorf("payload %+v", p)
			}
		}},
		{name: "a number with spaces and dashes is normalised", f: with(func(f *Fields) { f.To = " +91 98765-43210 " }),
			check: func(t *testing.T, p Payload) { wantTo(t, p, "+919876543210") }},
		{name: "a number without + gets one", f: with(func(f *Fields) { f.To = "919876543210" }),
			check: func(t *testing.T, p Payload) { wantTo(t, p, "+919876543210") }},
		{name: "a number with parentheses and dots is normalised", f: with(func(f *Fields) { f.To = "+1 (415) 555.0123" }),
			check: func(t *testing.T, p Payload) { wantTo(t, p, "+14155550123") }},
		{name: "a number with letters is refused", f: with(func(f *Fields) { f.To = "+91 98765 4321O" }), wantErr: "unexpected 'O'"},
		{name: "a too long number is refused", f: with(func(f *Fields) { f.To = strings.Repeat("9", 40) }), wantErr: "too long"},
		{name: "a number outside its numbering plan is refused", f: with(func(f *Fields) { f.To = "+9190000000" }), wantErr: "numbering plan"},
		{name: "an empty number is refused", f: with(func(f *Fields) { f.To = "" }), wantErr: "number is empty"},
		{name: "a number of punctuation alone is refused", f: with(func(f *Fields) { f.To = "+ - ." }), wantErr: "no digits"},
		{name: "a + inside a number is refused", f: with(func(f *Fields) { f.To = "91+9876543210" }), wantErr: "unexpected '+'"},
		{name: "an invalid sender is refused", f: with(func(f *Fields) { f.From = "12" }), wantErr: "from:"},
		{name: "a sender is normalised", f: with(func(f *Fields) { f.From = "91 98000 00001" }),
			check: func(t *testing.T, p Payload) {
				if p.From != "+919800000001" {
					t.Errorf("from %q", p.From)
				}
			}},
		{name: "media id and link together are refused", f: with(func(f *Fields) { f.MediaID = "abc" }), wantErr: "not both"},
		{name: "neither media id nor link is refused", f: with(func(f *Fields) { f.MediaLink = "" }), wantErr: "media_id or media_link is required"},
		{name: "an ftp link is refused", f: with(func(f *Fields) { f.MediaLink = "ftp://x.test/a.jpg" }), wantErr: "absolute http(s) URL"},
		{name: "a relative link is refused", f: with(func(f *Fields) { f.MediaLink = "/a.jpg" }), wantErr: "absolute http(s) URL"},
		{name: "a link with a space is refused", f: with(func(f *Fields) { f.MediaLink = "https://x.test/a b.jpg" }), wantErr: "spaces"},
		{name: "a media id with a slash is refused", f: with(func(f *Fields) { f.MediaLink, f.MediaID = "", "a/b" }), wantErr: "media_id must be"},
		{name: "an unknown type is refused", f: with(func(f *Fields) { f.Type = "gif" }), wantErr: `type "gif" is not one of`},
		{name: "a missing type is refused", f: with(func(f *Fields) { f.Type = "" }), wantErr: "type is required"},
		{name: "the type is case-insensitive", f: with(func(f *Fields) { f.Type = " VIDEO " }),
			check: func(t *testing.T, p Payload) {
				if p.Type != "video" {
					t.Errorf("type %q", p.Type)
				}
			}},
		{name: "a caption on audio is refused", f: with(func(f *Fields) { f.Type, f.Caption = "audio", "hi" }), wantErr: "caption is not allowed for audio"},
		{name: "a caption on a sticker is refused", f: with(func(f *Fields) { f.Type, f.Caption = "sticker", "hi" }), wantErr: "caption is not allowed for sticker"},
		{name: "a caption on a document is kept", f: with(func(f *Fields) { f.Type, f.Caption = "document", " hi " }),
			check: func(t *testing.T, p Payload) {
				if p.Caption != " hi " {
					t.Errorf("caption %q", p.Caption)
				}
			}},
		{name: "a caption over 1024 characters is refused", f: with(func(f *Fields) { f.Caption = strings.Repeat("é", 1025) }), wantErr: "longer than 1024"},
		{name: "a filename on an image is refused", f: with(func(f *Fields) { f.Filename = "a.pdf" }), wantErr: "filename is only allowed for documents"},
		{name: "a filename with a slash is refused", f: with(func(f *Fields) { f.Type, f.Filename = "document", "../a.pdf" }), wantErr: "without '/'"},
		{name: "refs are cut to 255 characters without splitting UTF-8",
			f: with(func(f *Fields) {
				f.Ref, f.Ref1, f.Ref2 = strings.Repeat("€", 300), strings.Repeat("a", 254)+"😀😀", "x\xffy"
			}),
			check: func(t *testing.T, p Payload) {
				if p.Ref != strings.Repeat("€", 255) {
					t.Errorf("ref has %d characters", utf8.RuneCountInString(p.Ref))
				}
				if p.Ref1 != strings.Repeat("a", 254)+"😀" {
					t.Errorf("ref1 %q", p.Ref1[250:])
				}
				if p.Ref2 != "x\uFFFDy" {
					t.Errorf("ref2 %q", p.Ref2)
				}
			}},
		{name: "an unknown wa_source becomes api", f: with(func(f *Fields) { f.WASource = "myapp" }),
			check: func(t *testing.T, p Payload) {
				if p.WASource != "api" {
					t.Errorf("wa_source %q", p.WASource)
				}
			}},
		{name: "a documented wa_source is kept in lower case", f: with(func(f *Fields) { f.WASource = "Shopify" }),
			check: func(t *testing.T, p Payload) {
				if p.WASource != "shopify" {
					t.Errorf("wa_source %q", p.WASource)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New("c", tc.f)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
			// Normalize is idempotent: the worker runs it again on what it reads back.
			q := p
			if err := q.Normalize(); err != nil || q != p {
				t.Fatalf("Normalize again: %v\n got %+v\nwant %+v", err, q, p)
			}
		})
	}
}

func wantTo(t *testing.T, p Payload, to string) {
	t.Helper()
	if p.To != to {
		t.Errorf("to %q, want %q", p.To, to)
	}
}

func TestValidCampaign(t *testing.T) {
	for id, ok := range map[string]bool{"spring-2026": true, "a.b_c": true, "": false, "-x": false, "a b": false,
		"a:b": false, "a{b}": false, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false} {
		if err := ValidCampaign(id); (err == nil) != ok {
			t.Errorf("ValidCampaign(%q) = %v, want ok=%v", id, err, ok)
		}
	}
	if _, err := New("bad id", valid()); err == nil {
		t.Error("New accepted a campaign id with a space")
	}
}

func TestTaskIDNamesCampaignSenderAndRecipient(t *testing.T) {
	a, _ := New("c", with(func(f *Fields) { f.To = "91 98765 43210"; f.From = "+919800000001" }))
	b, _ := New("c", with(func(f *Fields) { f.To = "+919876543210"; f.From = "919800000001"; f.Type = "video" }))
	if TaskID(a) != "c:919800000001:919876543210" {
		t.Fatalf("TaskID %q", TaskID(a))
	}
	if TaskID(a) != TaskID(b) {
		t.Fatalf("the same campaign, sender and recipient give two ids: %q %q", TaskID(a), TaskID(b))
	}
	other, _ := New("c", with(func(f *Fields) { f.From = "+919800000002" }))
	noFrom, _ := New("c", valid())
	c2, _ := New("c2", valid())
	ids := map[string]bool{TaskID(a): true, TaskID(other): true, TaskID(noFrom): true, TaskID(c2): true}
	if len(ids) != 4 {
		t.Fatalf("different campaigns or senders share an id: %v", ids)
	}
	if TaskID(noFrom) != "c:default:919876543210" {
		t.Fatalf("TaskID without sender %q", TaskID(noFrom))
	}
}

func TestRecipients(t *testing.T) {
	got := Recipients(" +919876543210, ;919876543211 ;,")
	if len(got) != 2 || got[0] != "+919876543210" || got[1] != "919876543211" {
		t.Fatalf("Recipients %q", got)
	}
	if Recipients(" , ") != nil {
		t.Fatal("empty parts are not dropped")
	}
}

func TestFieldsOverAndPtr(t *testing.T) {
	def := Fields{Type: "image", MediaID: "m", Ref: "campaign"}
	got := def.Over(Fields{To: "1", Ref: "row"})
	if got != (Fields{To: "1", Type: "image", MediaID: "m", Ref: "row"}) {
		t.Fatalf("Over %+v", got)
	}
	// A row's media replaces the default media as a whole, in both directions.
	if got := (Fields{Type: "image", MediaLink: "https://example.com/a.png"}).Over(Fields{To: "1", MediaID: "m1"}); got != (Fields{To: "1", Type: "image", MediaID: "m1"}) {
		t.Errorf("default media_link, row media_id: Over %+v", got)
	}
	if got := (Fields{Type: "image", MediaID: "m1"}).Over(Fields{To: "1", MediaLink: "https://example.com/b.png"}); got != (Fields{To: "1", Type: "image", MediaLink: "https://example.com/b.png"}) {
		t.Errorf("default media_id, row media_link: Over %+v", got)
	}
	// A row naming both is still the row's mistake, reported by New.
	both := (Fields{Type: "image", MediaID: "m0"}).Over(Fields{To: "+919876543210", MediaID: "m1", MediaLink: "https://example.com/b.png"})
	if _, err := New("c", both); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("a row with both media_id and media_link: %v", err)
	}
	var f Fields
	for _, c := range Columns {
		if f.Ptr(c) == nil {
			t.Errorf("Ptr(%q) is nil", c)
		}
	}
	if f.Ptr("TO") != nil || f.Ptr("phone") != nil {
		t.Error("Ptr knows a name that is not a column")
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	p, err := New("c", with(func(f *Fields) { f.Ref = "r" }))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || got != p {
		t.Fatalf("Decode(Encode(p)) = %+v, %v; want %+v", got, err, p)
	}
}

// TestEncodeRefusesWhatDecodeWould: a payload within every field limit can still pass
// MaxPayload once JSON escapes it; Encode must refuse it, since the worker's
// Decode would, and everything Encode accepts must decode.
func TestEncodeRefusesWhatDecodeWould(t *testing.T) {
	p, err := New("c", with(func(f *Fields) {
		f.MediaID, f.MediaLink = "", "https://example.com/a.png?"+strings.Repeat("&", 2000)
		f.Caption = strings.Repeat("‹", MaxCaption)
		f.Ref, f.Ref1, f.Ref2 = strings.Repeat(">", MaxRef), strings.Repeat(">", MaxRef), strings.Repeat(">", MaxRef)
	}))
	if err != nil {
		t.Fatalf("New refused a payload within the field limits: %v", err)
	}
	raw, _ := json.Marshal(p)
	if len(raw) <= MaxPayload {
		t.Fatalf("the test payload is %d bytes encoded, not over %d", len(raw), MaxPayload)
	}
	if _, err := Decode(raw); err == nil {
		t.Fatal("Decode accepted an oversized payload")
	}
	b, err := Encode(p)
	if err == nil {
		t.Fatalf("Encode gave %d bytes, more than MaxPayload %d, that Decode refuses", len(b), MaxPayload)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(MaxPayload)) {
		t.Errorf("the reason does not name the limit: %v", err)
	}
	// Just under the limit: Encode and Decode agree.
	p.Ref1, p.Ref2, p.Caption = "", "", ""
	p.MediaLink = "https://example.com/a.png?" + strings.Repeat("&", 1500)
	if b, err := Encode(p); err != nil {
		t.Fatalf("Encode refused %v", err)
	} else if _, err := Decode(b); err != nil {
		t.Fatalf("Decode refused what Encode gave: %v", err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := `{"v":1,"campaign":"c","to":"+919876543210","type":"image","media_id":"m","wa_source":"api"}`
	for _, tc := range []struct{ name, in, want string }{
		{"another version", strings.Replace(good, `"v":1`, `"v":2`, 1), "version 2"},
		{"an unknown field", strings.Replace(good, `{`, `{"api_key":"x",`, 1), "unknown field"},
		{"an oversized payload", `{"v":1,"caption":"` + strings.Repeat("a", MaxPayload) + `"}`, "more than"},
		{"data after the object", good + ` {}`, "data after"},
		{"a stray brace after the object", good + `}`, "data after"},
		{"not JSON", `nope`, "not a wabulk job"},
		{"an invalid number", strings.Replace(good, "+919876543210", "+91", 1), "payload is invalid"},
		{"a number without +", strings.Replace(good, "+919876543210", "919876543210", 1), "not a number in E.164 form"},
		{"a number with spaces", strings.Replace(good, "+919876543210", "+91 98765 43210", 1), "not a number in E.164 form"},
		{"a number with letters", strings.Replace(good, "+919876543210", "+9198765abc10", 1), "not a number in E.164 form"},
		{"a number of 21 digits", strings.Replace(good, "+919876543210", "+919876543210123456789", 1), "not a number in E.164 form"},
		{"a country code of 0", strings.Replace(good, "+919876543210", "+0919876543210", 1), "not a number in E.164 form"},
		{"a sender not in E.164 form", strings.Replace(good, `"to"`, `"from":"+91-98000",  "to"`, 1), "from:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Decode([]byte(good + "\n")); err != nil {
		t.Fatalf("trailing newline refused: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"campaign":"c","to":"+919876543210","type":"image","media_id":"m","wa_source":"api"}`))
	f.Add([]byte(`{"v":1,"campaign":"c","from":"+919800000001","to":"919876543210","type":"document","media_link":"https://x.test/a","filename":"a.pdf","caption":"x","ref":"é"}`))
	f.Add([]byte(`{"v":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		// What Decode accepts is stable: encoding it and decoding again gives the same payload.
		b2, err := Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := Decode(b2)
		if err != nil || p2 != p {
			t.Fatalf("round trip: %+v %v, want %+v", p2, err, p)
		}
		if utf8.RuneCountInString(p.Ref) > MaxRef || !utf8.ValidString(p.Ref) {
			t.Fatalf("ref %q", p.Ref)
		}
	})
}

func FuzzNew(f *testing.F) {
	f.Add("c", "+91 98765-43210", "image", "", "https://x.test/a.jpg", "cap", "", "r", "shopify", "")
	f.Add("c", "919876543210,1", "document", "m", "", "", "a.pdf", strings.Repeat("€", 300), "x", "+919800000001")
	f.Add("c", "abc", "gif", "m", "ftp://x", "", "", "\xff", "", "12")
	f.Fuzz(func(t *testing.T, campaign, to, typ, id, link, caption, filename, ref, src, from string) {
		p, err := New(campaign, Fields{To: to, Type: typ, MediaID: id, MediaLink: link, Caption: caption,
			Filename: filename, Ref: ref, WASource: src, From: from})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if !strings.HasPrefix(p.To, "+") || (p.MediaID == "") == (p.MediaLink == "") {
			t.Fatalf("invalid payload accepted: %+v", p)
		}
		if utf8.RuneCountInString(p.Ref) > MaxRef || !utf8.ValidString(p.Ref) {
			t.Fatalf("ref %q", p.Ref)
		}
		b, err := Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		if q, err := Decode(b); err != nil || q != p {
			t.Fatalf("Decode(Encode(New)) = %+v, %v; want %+v", q, err, p)
		}
	})
}
