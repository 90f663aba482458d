package kaleyradocs_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wabulk/wabulk/internal/kaleyra/kaleyradocs"
)

func TestEveryAnswerHasTheDocumentedShape(t *testing.T) {
	want := map[string]int{"RBC001": 401, "WA401": 401, "WA400": 400, "WA500": 500, "E110": 400,
		"WA-401-account": 401, "WA-401-version": 401, "WAV2101": 400}
	if len(kaleyradocs.Answers) != len(want) {
		t.Errorf("%d answers, want %d", len(kaleyradocs.Answers), len(want))
	}
	for _, a := range kaleyradocs.Answers {
		if got, ok := kaleyradocs.Lookup(a.Name); !ok || got != a {
			t.Errorf("Lookup(%q) = %+v, %v", a.Name, got, ok)
		}
		if a.Status != want[a.Name] {
			t.Errorf("%s comes with %d, want %d", a.Name, a.Status, want[a.Name])
		}
		var b struct {
			Code    string            `json:"code"`
			Message string            `json:"message"`
			Data    json.RawMessage   `json:"data"`
			Error   map[string]string `json:"error"`
		}
		if err := json.Unmarshal([]byte(a.Body), &b); err != nil {
			t.Errorf("%s: %v", a.Name, err)
			continue
		}
		if (b.Code != a.Name && !strings.HasPrefix(a.Name, b.Code+"-")) || b.Message == "" || b.Data == nil || len(b.Error) == 0 {
			t.Errorf("%s: body %s lacks the documented code, message, data or error", a.Name, a.Body)
		}
		// An editor that adds a final newline would change the bytes the sandbox sends.
		if !strings.HasSuffix(a.Body, "\n}") {
			t.Errorf("%s: body does not end with the closing brace of the reference's layout", a.Name)
		}
	}
	if _, ok := kaleyradocs.Lookup("WA999"); ok {
		t.Error("Lookup found an undocumented answer")
	}
}

func TestMediaTypesAreTheDocumentedOnes(t *testing.T) {
	kinds := map[string]int64{}
	for _, m := range kaleyradocs.MediaTypes {
		if got, ok := kaleyradocs.LookupMedia(m.MIME); !ok || got != m {
			t.Errorf("LookupMedia(%q) = %+v, %v", m.MIME, got, ok)
		}
		if kinds[m.Kind] != 0 && kinds[m.Kind] != m.MaxBytes {
			t.Errorf("%s: %s limits differ within one kind", m.MIME, m.Kind)
		}
		kinds[m.Kind] = m.MaxBytes
		if m.MaxBytes > kaleyradocs.MaxMediaBytes {
			t.Errorf("%s: %d bytes is above MaxMediaBytes", m.MIME, m.MaxBytes)
		}
	}
	want := map[string]int64{"image": 5_000_000, "video": 16_000_000, "audio": 16_000_000,
		"document": 100_000_000, "sticker": 100_000}
	for k, v := range want {
		if kinds[k] != v {
			t.Errorf("%s limit %d, want %d", k, kinds[k], v)
		}
	}
	if w, _ := kaleyradocs.LookupMedia("image/webp"); w.Limit(true) != 500_000 || w.Limit(false) != 100_000 {
		t.Errorf("sticker limits %d animated, %d static", w.Limit(true), w.Limit(false))
	}
	if _, ok := kaleyradocs.LookupMedia("image/gif"); ok {
		t.Error("image/gif is not a type WhatsApp takes")
	}
}
