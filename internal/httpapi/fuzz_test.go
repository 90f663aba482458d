package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzCampaignBody: whatever the body, decodeCampaign either returns a *bodyError with a
// status the API documents, or a request within the limits that survives a JSON round trip.
func FuzzCampaignBody(f *testing.F) {
	for _, s := range []string{
		`{"campaign":"c","defaults":{"type":"image","media_link":"https://example.com/a.png"},"recipients":[{"to":"+919812345601"}]}`,
		`{"campaign":"c","recipients":[{"to":"+919812345601,+919812345602;+919812345603"}]}`,
		`{"campaign":"c","recipients":[{"to":"1","media_url":"x"}]}`,
		`{"campaign":"c","recipients":[{"to":919812345601}]}`,
		`{"campaign":"c","recipients":[]} {}`,
		`{"campaign":"c","recipients":null}`,
		`{"campaign":"c","defaults":{"to":"1"},"recipients":[{}]}`,
		`{"campaign":"\u0000","recipients":[{"to":"1"}]}`,
		`{"campaign":"c","recipients":[{"to":"\xff\xfe"}]}`,
		`[]`, `null`, ``, `{`, `{"campaign":"c"}}`, `{"Campaign":"c","RECIPIENTS":[{"TO":"1"}]}`,
		`{"campaign":"c","recipients":[` + strings.Repeat(`{"to":"1,2"},`, 3) + `{"to":"3"}]}`,
	} {
		f.Add([]byte(s))
	}
	const limit = 5
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeCampaign(bytes.NewReader(body), limit)
		if err != nil {
			var be *bodyError
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T) is not a *bodyError", err, err)
			}
			switch be.status {
			case 400, 413:
			default:
				t.Fatalf("status %d for a body error", be.status)
			}
			if be.code == "" || be.msg == "" {
				t.Fatalf("body error without code or message: %+v", be)
			}
			return
		}
		n := 0
		for _, r := range req.Recipients {
			n += recipientCount(req.Defaults, r)
		}
		if n > limit || n == 0 || req.Defaults.To != "" {
			t.Fatalf("accepted %d recipients (limit %d), defaults.to %q", n, limit, req.Defaults.To)
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeCampaign(bytes.NewReader(b), limit)
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, req, again)
		}
	})
}
