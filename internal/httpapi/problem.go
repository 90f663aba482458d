package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/wabulk/wabulk/producer"
)

// The stable `code` of each problem the API answers; clients branch on these, never on `detail`.
const (
	CodeBadJSON              = "bad_json"                // 400: the body is not the JSON the route takes
	CodeInvalidRequest       = "invalid_request"         // 400: a bad campaign id, query parameter or CSV/JSONL header
	CodeUnauthorized         = "unauthorized"            // 401: no token, or not one of WABULK_API_TOKENS
	CodeMonitorReadOnly      = "monitor_read_only"       // 403: a change through /monitor/ without --monitor-write
	CodeCrossOrigin          = "cross_origin"            // 403: a change through /monitor/ sent by a page of another origin
	CodeHostNotAllowed       = "host_not_allowed"        // 403: without tokens, a Host that is not a loopback name
	CodeNotFound             = "not_found"               // 404: no such route
	CodeUnknownCampaign      = "unknown_campaign"        // 404: the queue has never seen the campaign
	CodeCampaignCancelled    = "campaign_cancelled"      // 409: the campaign was cancelled: no enqueue, pause or resume
	CodeBodyTooLarge         = "body_too_large"          // 413: the body is over the limit
	CodeTooManyRecipients    = "too_many_recipients"     // 413: more recipients than one request may carry
	CodeBadMultipart         = "bad_multipart"           // 400: a multipart body that is malformed, lacks or repeats a part, or has an unknown one
	CodeMediaTooLarge        = "media_too_large"         // 413: the media_file is over WhatsApp's limit for its type (or the server's)
	CodeUnsupportedMediaType = "unsupported_media_type"  // 415: a Content-Type the route does not take
	CodeUnsupportedMediaFile = "unsupported_media_file"  // 415: the media_file is of a type WhatsApp does not take
	CodeMediaUnavailable     = "media_unavailable"       // 501: the server has no Kaleyra account to upload a media_file to
	CodeMediaUploadFailed    = "media_upload_failed"     // 502: Kaleyra did not take the media_file; nothing was enqueued
	CodeTooManyLargeRequests = "too_many_large_requests" // 429: --max-large-requests large bodies are in flight; see Retry-After
	CodeRedisUnavailable     = "redis_unavailable"       // 503: Redis failed; the body says what was enqueued
	CodeInternal             = "internal"                // 500: a bug; the log has the details, the client does not
)

// Problem is an RFC 9457 problem document. Summary and Outcomes are set when a request stopped
// midway (Redis failed, a streamed body broke a limit): they say exactly what was enqueued, and
// a recipient without an outcome was not attempted.
type Problem struct {
	Type     string             `json:"type"`
	Title    string             `json:"title"`
	Status   int                `json:"status"`
	Detail   string             `json:"detail,omitempty"`
	Code     string             `json:"code"`
	Campaign string             `json:"campaign,omitempty"`
	Summary  *producer.Summary  `json:"summary,omitempty"`
	Outcomes []producer.Outcome `json:"outcomes,omitempty"`
}

// problemType is the problem's type URI: a URN, because the code is the identity and there is
// no page to link to.
func problemType(code string) string { return "urn:wabulk:problem:" + code }

func newProblem(status int, code, detail string) *Problem {
	return &Problem{Type: problemType(code), Title: http.StatusText(status), Status: status, Detail: detail, Code: code}
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// queryLimit reads the query's limit: def when absent, a 400 problem unless it is 1 to max.
func queryLimit(q url.Values, def, max int) (int, *Problem) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, newProblem(http.StatusBadRequest, CodeInvalidRequest, fmt.Sprintf("limit=%q: want 1 to %d", v, max))
	}
	return n, nil
}
