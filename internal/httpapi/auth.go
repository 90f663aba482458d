package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

func hashToken(t string) [32]byte { return sha256.Sum256([]byte(t)) }

// validToken compares t with every token in constant time. Hashing first makes the comparison's
// time independent of the lengths too (ConstantTimeCompare returns early on a length mismatch),
// and every token is compared so the time does not say which one matched.
func (s *Server) validToken(t string) bool {
	if t == "" {
		return false
	}
	h := hashToken(t)
	ok := 0
	for i := range s.tokens {
		ok |= subtle.ConstantTimeCompare(h[:], s.tokens[i][:])
	}
	return ok == 1
}

// bearer requires `Authorization: Bearer <token>`.
func (s *Server) bearer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.tokens) == 0 {
			next.ServeHTTP(w, r) // --insecure-no-auth on loopback
			return
		}
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || !s.validToken(strings.TrimSpace(tok)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wabulk"`)
			writeProblem(w, newProblem(http.StatusUnauthorized, CodeUnauthorized,
				"send Authorization: Bearer <token> with one of the tokens of WABULK_API_TOKENS"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// basic requires HTTP Basic auth with any user name and a token as the password, because a
// browser cannot be made to send a bearer token to a UI it loads; a bearer token is taken too,
// for scripts that call asynqmon's JSON API.
func (s *Server) basic(next http.Handler) http.Handler {
	return s.basicOrBearer(next, `Basic realm="wabulk monitor", charset="UTF-8"`,
		"log in with any user name and one of the tokens of WABULK_API_TOKENS as the password")
}

// callbackAuth takes `Authorization: Bearer <token>` or Basic with any user name and a token as
// the password: a Kaleyra callback profile can send either (a fixed header, or Basic auth).
func (s *Server) callbackAuth(next http.Handler) http.Handler {
	return s.basicOrBearer(next, `Bearer realm="wabulk"`,
		"send Authorization: Bearer <token>, or Basic auth with any user name and the token as the password, with one of the tokens of WABULK_API_TOKENS")
}

func (s *Server) basicOrBearer(next http.Handler, challenge, detail string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.tokens) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		_, pass, ok := r.BasicAuth()
		if !ok {
			if scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
				pass, ok = strings.TrimSpace(tok), true
			}
		}
		if !ok || !s.validToken(pass) {
			w.Header().Set("WWW-Authenticate", challenge)
			writeProblem(w, newProblem(http.StatusUnauthorized, CodeUnauthorized, detail))
			return
		}
		next.ServeHTTP(w, r)
	})
}
