package tagd

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/getorcreate/getorcreate"
)

// An Idempotency-Key (the IETF HTTPAPI draft "The Idempotency-Key HTTP
// Header Field") makes a write safe to resend: tagd records the key with
// the write's answer in the same transaction as the write (the library's
// Ledger.Once), so a resend of the request, with the same key and the same
// body, gets the first answer and changes nothing, however the first
// attempt ended. The same key with another body is refused (422); a resend
// that arrives while the first is still being answered by this process is
// refused (409), and one that reaches another tagd process of the same
// database waits for the first to commit and then gets its answer.

// maxKeyLength bounds an Idempotency-Key, in bytes.
const maxKeyLength = 255

// recorded is a write's answer, as kept for its Idempotency-Key.
type recorded struct {
	Status   int             `json:"status"`
	Location string          `json:"location,omitempty"`
	Body     json.RawMessage `json:"body"`
}

// idempotencyKey reads the Idempotency-Key header: "" when there is none.
// A malformed one is answered here (ok false). The draft's sf-string form
// ("abc", quoted) and a bare value are both accepted.
func (s *Server) idempotencyKey(w http.ResponseWriter, r *http.Request) (key string, ok bool) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", true
	}
	k := strings.TrimSpace(vals[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	valid := len(vals) == 1 && k != "" && len(k) <= maxKeyLength
	for i := 0; valid && i < len(k); i++ {
		valid = k[i] >= 0x20 && k[i] < 0x7f && k[i] != '"' && k[i] != '\\'
	}
	if !valid {
		s.fail(w, r, "invalid_idempotency_key", "send one Idempotency-Key of 1 to 255 printable ASCII characters (a UUID, say), without quotes or backslashes inside")
		return "", false
	}
	return k, true
}

func sum(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// write runs a request's write and answers it. Without a key it runs in a
// transaction of its own (retried as RunTx retries). With a key it runs at
// most once for that key: input, the request as decoded, is its
// fingerprint, and the answer is recorded with it. outcomes are counted in
// the metrics for a write that ran, not for a replayed answer.
func (s *Server) write(w http.ResponseWriter, r *http.Request, key string, input any,
	fn func(ctx context.Context, tx *sql.Tx) (recorded, []Outcome, error)) {
	ctx, cancel := s.dbContext(r)
	defer cancel()
	var outcomes []Outcome
	if key == "" {
		var a recorded
		attempts := 0
		err := getorcreate.RunTx(ctx, s.store.db, nil, func(tx *sql.Tx) error {
			attempts++
			var err error
			a, outcomes, err = fn(ctx, tx)
			return err
		})
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		s.count(outcomes, attempts)
		s.answer(w, a, false)
		return
	}
	fp, err := json.Marshal(input)
	if err != nil {
		s.fail(w, r, "internal", "internal error; see the server log")
		return
	}
	id := sum(r.Method, r.URL.Path, key)
	if _, busy := s.inflight.LoadOrStore(id, struct{}{}); busy {
		s.fail(w, r, "idempotency_key_in_use", "a request with this Idempotency-Key is still being answered; resend it once it has its answer")
		return
	}
	defer s.inflight.Delete(id)
	attempts := 0
	out, replayed, err := s.store.Once(ctx, id, sum(string(fp)), func(tx *sql.Tx) ([]byte, error) {
		attempts++
		a, o, err := fn(ctx, tx)
		if err != nil {
			return nil, err
		}
		outcomes = o
		return json.Marshal(a)
	})
	switch {
	case errors.Is(err, getorcreate.ErrRequestReused):
		s.fail(w, r, "idempotency_key_reused", "this Idempotency-Key was used for a request with another body; use a new key for a new request")
		return
	case errors.Is(getorcreate.Kind(err), getorcreate.ErrConnection), getorcreate.IsRetryable(err), errors.Is(err, context.DeadlineExceeded):
		// Whether or not this attempt was applied, the key makes a resend
		// safe: it is applied once, or answered as it was.
		s.log.Warn("database unavailable for a keyed write", "err", err, "path", r.URL.Path)
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, "database_unavailable", "the database is unavailable; resend the request with the same Idempotency-Key: it will be applied at most once")
		return
	case err != nil:
		s.storeError(w, r, err)
		return
	}
	var a recorded
	if err := json.Unmarshal(out, &a); err != nil {
		s.log.Error("recorded answer unreadable", "err", err, "path", r.URL.Path)
		s.fail(w, r, "internal", "internal error; see the server log")
		return
	}
	if !replayed {
		s.count(outcomes, attempts)
	}
	s.answer(w, a, replayed)
}

func (s *Server) count(outcomes []Outcome, attempts int) {
	for _, o := range outcomes {
		o.Attempts = attempts
		s.calls.observe(o)
	}
}

// answer writes a write's answer; a replayed one says so in
// Idempotent-Replayed.
func (s *Server) answer(w http.ResponseWriter, a recorded, replayed bool) {
	if a.Location != "" {
		w.Header().Set("Location", a.Location)
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, a.Status, a.Body)
}

// recordJSON is the answer with status and body v, encoded as writeJSON
// encodes answers.
func recordJSON(status int, location string, v any) (recorded, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return recorded{Status: status, Location: location, Body: json.RawMessage(strings.TrimSpace(b.String()))}, err
}
