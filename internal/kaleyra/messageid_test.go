package kaleyra

import "testing"

func TestMessageID(t *testing.T) {
	for body, want := range map[string]string{
		`{"messaging_product":"whatsapp","contacts":[{"input":"+919876543210","wa_id":"919876543210"}],"messages":[{"id":"wamid.ab12"}]}`: "wamid.ab12",
		`{"data":{"messages":[{"id":"wamid.data"}]}}`:             "wamid.data",
		`{"messages": [ {"id": "wamid.spaced"} ]}`:                "wamid.spaced",
		`{"messages":[{"id":"wamid.\u0041"}]}`:                    "wamid.A",
		`{"messages":[{"id":"a"}],"x":{"messages":[{"id":"b"}]}}`: "a",
		`{"x":"\"messages\":[{\"id\":\"no\"}]"}`:                  "",
		`{"messages":[{"id":"cut`:                                 "",
		`not json "messages":[{"id":"x"}]`:                        "",
		`{"messages":[]}`:                                         "",
		``:                                                        "",
	} {
		if got := messageID([]byte(body)); got != want {
			t.Errorf("messageID(%s) = %q, want %q", body, got, want)
		}
	}
	// Meta's answer, as Kaleyra and the sandbox give it, takes the path without decoding.
	meta := `{"messaging_product":"whatsapp","contacts":[{"input":"+919876543210","wa_id":"919876543210"}],"messages":[{"id":"wamid.ab12"}]}`
	if id, ok := compactMessageID([]byte(meta)); !ok || id != "wamid.ab12" {
		t.Errorf("compactMessageID(Meta's answer) = %q, %v", id, ok)
	}
}

// FuzzMessageID holds the fast path to the decoding one wherever the decoding one finds an id.
func FuzzMessageID(f *testing.F) {
	f.Add([]byte(`{"messaging_product":"whatsapp","contacts":[{"input":"+1","wa_id":"1"}],"messages":[{"id":"wamid.1"}]}`))
	f.Add([]byte(`{"data":{"messages":[{"id":"wamid.2"}]},"messages":[{"id":"wamid.3"}]}`))
	f.Add([]byte(`{"messages":[{"id":"a\"b"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if want := decodeMessageID(b); want != "" {
			if got := messageID(b); got != want {
				t.Fatalf("messageID(%q) = %q, decoding gives %q", b, got, want)
			}
		}
	})
}
