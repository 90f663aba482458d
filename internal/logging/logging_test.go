package logging

import "testing"

func TestMaskPhone(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"+919876547890", "+91******7890"},
		{"919876547890", "91******7890"},
		{"+4915123", "+*****23"},
		{"", ""},
	} {
		if got := MaskPhone(tc.in); got != tc.want {
			t.Errorf("MaskPhone(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := (Masker{Full: true}).Phone("+919876547890"); got != "+919876547890" {
		t.Errorf("full mode masked: %q", got)
	}
}
