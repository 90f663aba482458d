package job

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// slowNormalize is NormalizeNumber through phonenumbers.Parse alone, the reference.
func slowNormalize(s string) (string, bool) {
	num, err := phonenumbers.Parse(s, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", false
	}
	return phonenumbers.Format(num, phonenumbers.E164), true
}

func TestFastPathAgreesWithParse(t *testing.T) {
	check := func(in string) {
		t.Helper()
		want, wantOK := slowNormalize(in)
		got, err := NormalizeNumber(in)
		if (err == nil) != wantOK || got != want {
			t.Fatalf("NormalizeNumber(%q) = %q, %v; Parse says %q, %v", in, got, err, want, wantOK)
		}
		// What is stored passes Decode's check of the stored form.
		if _, serr := storedNumber(got); err == nil && serr != nil {
			t.Fatalf("NormalizeNumber(%q) = %q, which Decode refuses: %v", in, got, serr)
		}
	}
	// Every region's example number of every type, as given and with a trunk zero inserted.
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.VOIP, phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	examples := 0
	for region := range phonenumbers.GetSupportedRegions() {
		for _, ty := range types {
			ex := phonenumbers.GetExampleNumberForType(region, ty)
			if ex == nil {
				continue
			}
			e164 := phonenumbers.Format(ex, phonenumbers.E164)
			cc := strconv.Itoa(int(ex.GetCountryCode()))
			check(e164)
			check("+" + cc + "0" + e164[1+len(cc):])
			examples++
		}
	}
	if examples < 500 {
		t.Fatalf("only %d example numbers", examples)
	}
	// Random digit strings: mostly invalid, some valid, all must agree.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := 6 + r.IntN(11)
		b := []byte{'+'}
		for range n {
			b = append(b, byte('0'+r.IntN(10)))
		}
		check(string(b))
	}
}

func BenchmarkNormalizeNumber(b *testing.B) {
	for i := range b.N {
		NormalizeNumber("+9198" + strconv.Itoa(10000000+i%89999999))
	}
}
