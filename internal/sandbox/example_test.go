package sandbox_test

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/wabulk/wabulk/internal/sandbox"
)

// A test scripts the answers one recipient gets, sends, and reads the counters.
func ExampleServer_Script() {
	s, err := sandbox.Start(sandbox.Config{SID: "SID1", APIKey: "key", Senders: []string{"919000000001"}, Balance: -1,
		MediaIDs: []string{"1"}})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.Script("+919876543210", "WA500", "WA500")

	body := `{"messaging_object":{"messaging_product":"whatsapp","to":"+919876543210","type":"image","image":{"id":"1"}}}`
	for range 3 {
		req, _ := http.NewRequest("POST", s.URL+"/v2/SID1/whatsapp/919000000001/messages", strings.NewReader(body))
		req.Header.Set("api-key", "key")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	st := s.Stats()
	fmt.Println(st.Received, st.Answered["WA500"], st.Accepted)
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// 500
	// 500
	// 200
	// 3 2 1
}
