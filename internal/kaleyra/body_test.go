package kaleyra_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/kaleyra"
)

// marshalBody is the documented body built with encoding/json (the media object under the key
// its type names, in a map): the reference Body must equal byte for byte.
func marshalBody(m kaleyra.Message) []byte {
	type media struct {
		ID       string `json:"id,omitempty"`
		Link     string `json:"link,omitempty"`
		Caption  string `json:"caption,omitempty"`
		Filename string `json:"filename,omitempty"`
	}
	type extraInfo struct {
		Ref      string `json:"ref,omitempty"`
		Ref1     string `json:"ref1,omitempty"`
		Ref2     string `json:"ref2,omitempty"`
		WASource string `json:"wa_source,omitempty"`
	}
	r := struct {
		MessagingObject map[string]any `json:"messaging_object"`
		ExtraInfo       *extraInfo     `json:"extra_info,omitempty"`
	}{MessagingObject: map[string]any{
		"messaging_product": "whatsapp",
		"recipient_type":    "individual",
		"to":                m.To,
		"type":              m.Type,
		m.Type:              media{ID: m.MediaID, Link: m.MediaLink, Caption: m.Caption, Filename: m.Filename},
	}}
	if m.Ref != "" || m.Ref1 != "" || m.Ref2 != "" || m.WASource != "" {
		r.ExtraInfo = &extraInfo{Ref: m.Ref, Ref1: m.Ref1, Ref2: m.Ref2, WASource: m.WASource}
	}
	b, _ := json.Marshal(r)
	return b
}

func TestBodyIsWhatJSONMarshalGives(t *testing.T) {
	for _, typ := range []string{"image", "video", "audio", "document", "sticker"} {
		for _, m := range []kaleyra.Message{
			{To: "+919876543210", Type: typ, MediaID: "12345"},
			{To: "+919876543210", Type: typ, MediaLink: "https://x.test/a.jpg?a=1&b=<2>", Caption: "line\nnext \"q\" é \u2028 \x01",
				Filename: "a\\b.pdf", Ref: "r", Ref1: "\xff\xfe", Ref2: "€", WASource: "api"},
			{To: "+1", Type: typ, MediaID: "m", WASource: "shopify"},
		} {
			got, err := kaleyra.Body(m)
			if want := marshalBody(m); err != nil || string(got) != string(want) {
				t.Errorf("Body(%+v)\n got %s, %v\nwant %s", m, got, err, want)
			}
		}
	}
	if _, err := kaleyra.Body(kaleyra.Message{To: "+919876543210", Type: "gif", MediaID: "m"}); err == nil {
		t.Error("an unknown type was encoded")
	}
}

func FuzzBody(f *testing.F) {
	f.Add("+919876543210", "image", "", "https://x.test/a.jpg", "cap <b>", "", "r", "", "", "api")
	f.Add("+1", "document", "m", "", "", "a.pdf", "\xff", "é", "\u2028", "")
	f.Fuzz(func(t *testing.T, to, typ, id, link, caption, filename, ref, ref1, ref2, src string) {
		m := kaleyra.Message{To: to, Type: typ, MediaID: id, MediaLink: link, Caption: caption, Filename: filename,
			Ref: ref, Ref1: ref1, Ref2: ref2, WASource: src}
		got, err := kaleyra.Body(m)
		if err != nil {
			return // unknown type
		}
		if want := marshalBody(m); string(got) != string(want) {
			t.Fatalf("Body(%+v)\n got %s\nwant %s", m, got, want)
		}
	})
}

func TestCallbackProfileIDIsTopLevelAndOffByDefault(t *testing.T) {
	m := kaleyra.Message{To: "+919812345678", Type: "image", MediaID: "1"}
	b, _ := kaleyra.Body(m)
	if strings.Contains(string(b), "callback_profile_id") {
		t.Fatalf("sent without being set: %s", b)
	}
	m.CallbackProfileID = "prof-1"
	b, _ = kaleyra.Body(m)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil || v["callback_profile_id"] != "prof-1" {
		t.Fatalf("body %s: %v", b, err)
	}
	want, _ := json.Marshal(map[string]any{"callback_profile_id": "prof-1", "messaging_object": v["messaging_object"]})
	if string(b) != string(want) {
		t.Fatalf("body\n%s\nwant what json.Marshal gives\n%s", b, want)
	}
}
