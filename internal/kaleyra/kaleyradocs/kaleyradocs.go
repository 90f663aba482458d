// Package kaleyradocs holds Kaleyra's documented failure answers to a send, one file each in
// answers/, so that the client's tests and the sandbox use the same bytes, and the media types
// and sizes the Upload Media Files API takes (media.go), so that wabulk's checks before an
// upload and the sandbox's checks of one use the same table. It is data only and
// imports nothing of wabulk: the sandbox, a fake of Kaleyra, depends on what Kaleyra documents,
// not on the client it is there to test.
//
// A file is named <status>-<name>.json: the HTTP status the answer comes with, then the answer's
// name, which is its code, or the code and a suffix where one code has two bodies
// (WA-401-account, WA-401-version). Its content is the body byte for byte, without a final
// newline, as the API reference's "Sample Failure Response" shows it. WAV2101 is the exception:
// the reference names no daily-limit answer, so its body is a stand-in of the same shape.
package kaleyradocs

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Answer is one documented failure answer.
type Answer struct {
	// Name is the code, with a suffix where one code has two bodies: RBC001, WA-401-account.
	Name string
	// Status is the HTTP status the answer comes with.
	Status int
	// Body is the answer's body, byte for byte.
	Body string
}

//go:embed answers/*.json
var files embed.FS

// Answers lists every documented answer, ordered by status, then name.
var Answers = load()

// Lookup returns the documented answer called name.
func Lookup(name string) (Answer, bool) {
	for _, a := range Answers {
		if a.Name == name {
			return a, true
		}
	}
	return Answer{}, false
}

// load reads answers/. A misnamed file or a body that is not JSON is a build mistake, so it
// panics at start rather than serving or testing a wrong answer.
func load() []Answer {
	entries, err := fs.ReadDir(files, "answers")
	if err != nil {
		panic(err)
	}
	var out []Answer
	for _, e := range entries {
		status, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".json"), "-")
		code, err := strconv.Atoi(status)
		if !ok || name == "" || err != nil || code < 100 || code > 599 {
			panic(fmt.Sprintf("kaleyradocs: answers/%s is not named <status>-<name>.json", e.Name()))
		}
		body, err := files.ReadFile("answers/" + e.Name())
		if err != nil {
			panic(err)
		}
		if !json.Valid(body) {
			panic(fmt.Sprintf("kaleyradocs: answers/%s is not JSON", e.Name()))
		}
		out = append(out, Answer{Name: name, Status: code, Body: string(body)})
	}
	return out
}
