package tagd

import (
	"bytes"
	"context"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/getorcreate/getorcreate"
)

//go:embed web
var webFS embed.FS

// Options configures a Server. The zero value is a working server without
// authentication or rate limit.
type Options struct {
	// Token, when set, must be sent as "Authorization: Bearer <Token>" (the
	// scheme in any case) with every write (POST, PUT), and with every
	// request for /metrics and /readyz unless OpsHandler serves those.
	Token string
	// RateLimit is the requests per second each client may make; zero means
	// no limit. It covers every path but /healthz. RateBurst is the bucket
	// size (default: RateLimit rounded up).
	RateLimit float64
	RateBurst int
	// RateIPv6Prefix is how many leading bits of an IPv6 address name a
	// client for the rate limit; default 64, 128 for the whole address.
	RateIPv6Prefix int
	// MaxBodyBytes limits request bodies; default 64 KiB.
	MaxBodyBytes int64
	// BodyTimeout is the time a client has to send a request body once its
	// headers are in; default 15s. A slower body is answered 408.
	BodyTimeout time.Duration
	// DBTimeout bounds the database work of one request; default 5s. A
	// request that runs out of it is answered 503.
	DBTimeout time.Duration
	// SeparateOps takes /metrics and /readyz off this handler (they answer
	// 404): OpsHandler serves them, on a listener of their own.
	SeparateOps bool
	// Logger receives one line per request and every failure; default
	// slog.Default(). The token is never logged.
	Logger *slog.Logger
}

// A ConfigError is a setting refused before the server starts.
type ConfigError struct {
	Setting string // the Options or Config field
	Problem string
}

// Error says which setting is wrong and why.
func (e *ConfigError) Error() string { return "tagd: " + e.Setting + ": " + e.Problem }

func (o Options) validate() error {
	bad := func(setting, format string, args ...any) error {
		return &ConfigError{setting, fmt.Sprintf(format, args...)}
	}
	switch {
	case o.RateLimit < 0 || math.IsNaN(o.RateLimit) || math.IsInf(o.RateLimit, 0):
		return bad("RateLimit", "%v requests per second: use a positive number, or 0 for no limit", o.RateLimit)
	case o.RateBurst < 0:
		return bad("RateBurst", "%d: use a positive number, or 0 for the default", o.RateBurst)
	case o.RateBurst > 0 && o.RateLimit == 0:
		return bad("RateBurst", "a burst needs a rate limit (RateLimit) to apply to")
	case o.RateIPv6Prefix < 0 || o.RateIPv6Prefix > 128:
		return bad("RateIPv6Prefix", "%d bits: use 1 to 128, or 0 for the default 64", o.RateIPv6Prefix)
	case o.MaxBodyBytes < 0:
		return bad("MaxBodyBytes", "%d bytes: use a positive number, or 0 for the default", o.MaxBodyBytes)
	case o.BodyTimeout < 0:
		return bad("BodyTimeout", "%v: use a positive duration, or 0 for the default", o.BodyTimeout)
	case o.DBTimeout < 0:
		return bad("DBTimeout", "%v: use a positive duration, or 0 for the default", o.DBTimeout)
	}
	if err := checkToken(o.Token); err != nil {
		return err
	}
	return nil
}

// Server is the tagd HTTP handler: the JSON API, the web page, health checks
// and metrics. It holds no package-level state; several may run in one
// process.
type Server struct {
	store    *Store
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	calls    *callMetrics
	inflight sync.Map // Idempotency-Keys being answered by this process
	limiter  *limiter
	main     *handler
	ops      *handler
	draining atomic.Bool
	ready    readiness
}

// handler is one listener's routes with the middleware every request goes
// through: label folding, rate limit, path check, metrics, log.
type handler struct {
	s   *Server
	mux *http.ServeMux
}

// NewServer returns a handler serving store, or a *ConfigError for options
// that make no sense.
func NewServer(store *Store, opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.BodyTimeout == 0 {
		opts.BodyTimeout = 15 * time.Second
	}
	if opts.DBTimeout == 0 {
		opts.DBTimeout = 5 * time.Second
	}
	if opts.RateIPv6Prefix == 0 {
		opts.RateIPv6Prefix = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{store: store, opts: opts, log: opts.Logger, metrics: newMetrics(store.db, store.lib)}
	s.calls = s.metrics.calls
	if opts.RateLimit > 0 {
		s.limiter = newLimiter(opts.RateLimit, opts.RateBurst)
	}
	s.main = &handler{s: s, mux: http.NewServeMux()}
	s.ops = &handler{s: s, mux: http.NewServeMux()}
	m := s.main
	m.route("POST /api/tags", true, s.postTag)
	m.route("GET /api/tags", false, s.listTags)
	m.route("GET /api/tags/{key}", false, s.getTag)
	m.route("GET /api/tags/{key}/history", false, s.tagHistory)
	m.route("PUT /api/items/{item}/tags", true, s.putItemTags)
	m.route("GET /api/items/{item}/tags", false, s.getItemTags)
	// Paths without a method catch the methods not listed above: the mux's
	// own 405 is plain text, and every API answer here is JSON.
	m.route("/api/tags", false, s.methodNotAllowed("GET, POST"))
	m.route("/api/tags/{key}", false, s.methodNotAllowed("GET"))
	m.route("/api/tags/{key}/history", false, s.methodNotAllowed("GET"))
	m.route("/api/items/{item}/tags", false, s.methodNotAllowed("GET, PUT"))
	m.route("/", false, func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, "not_found", "no such path: "+truncate(r.URL.Path, 200))
	})
	m.route("GET /{$}", false, s.asset("web/index.html", "text/html; charset=utf-8"))
	m.route("GET /app.js", false, s.asset("web/app.js", "text/javascript; charset=utf-8"))
	m.route("GET /app.css", false, s.asset("web/app.css", "text/css; charset=utf-8"))
	for _, h := range []*handler{s.main, s.ops} {
		h.route("GET /healthz", false, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})
		h.route("/healthz", false, s.methodNotAllowed("GET"))
	}
	ops := s.ops
	if !opts.SeparateOps {
		ops = s.main
	}
	ops.route("GET /readyz", false, s.readyz)
	ops.route("GET /metrics", false, s.metrics.handler(s.log).ServeHTTP)
	ops.route("/readyz", false, s.methodNotAllowed("GET"))
	ops.route("/metrics", false, s.methodNotAllowed("GET"))
	if opts.SeparateOps {
		s.ops.route("/", false, func(w http.ResponseWriter, r *http.Request) {
			s.fail(w, r, "not_found", "no such path here: this address serves /metrics, /readyz and /healthz")
		})
	}
	return s, nil
}

// ServeHTTP serves one request of the main listener.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.main.ServeHTTP(w, r) }

// OpsHandler serves /metrics, /readyz and /healthz without the token, for a
// listener on a private address. Options.SeparateOps takes the first two off
// the main handler.
func (s *Server) OpsHandler() http.Handler { return s.ops }

// startDraining makes every answer from now on carry "Connection: close",
// those in flight included, so keep-alive clients learn from an answer that
// the server is going away instead of finding the connection closed under
// their next request.
func (s *Server) startDraining() { s.draining.Store(true) }

type statusWriter struct {
	http.ResponseWriter
	s      *Server
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		if w.s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route registers h for pattern; with write set, the request needs the
// token. The pattern is the route label of the request metrics, so label
// values are the registered patterns and nothing a client chooses.
func (h *handler) route(pattern string, write bool, fn http.HandlerFunc) {
	s := h.s
	h.s.metrics.routes[pattern] = true
	ops := strings.HasSuffix(pattern, " /metrics") || strings.HasSuffix(pattern, " /readyz")
	needToken := write || (ops && h == s.main)
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if needToken && s.opts.Token != "" && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tagd"`)
			s.fail(w, r, "unauthorized", "this server needs the header Authorization: Bearer <token> here")
			return
		}
		fn(w, r)
	})
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, s: s}
	_, pattern := h.mux.Handler(r)
	if !cleanPath(r.URL.Path) {
		pattern = ""
	}
	defer func() {
		d := time.Since(start)
		s.metrics.observe(pattern, r.Method, sw.status, d)
		lvl := slog.LevelInfo
		if sw.status >= 500 {
			lvl = slog.LevelWarn
		}
		// The method and path are the client's: cut to a bounded length.
		s.log.LogAttrs(r.Context(), lvl, "request", slog.String("method", truncate(r.Method, 16)),
			slog.String("path", truncate(r.URL.Path, 200)), slog.String("route", pattern),
			slog.Int("status", sw.status), slog.Int("bytes", sw.bytes),
			slog.Duration("duration", d), slog.String("remote", r.RemoteAddr))
	}()
	if s.limiter != nil && r.URL.Path != "/healthz" {
		if ok, wait := s.limiter.allow(clientKey(r.RemoteAddr, s.opts.RateIPv6Prefix), start); !ok {
			s.metrics.limited.Inc()
			sw.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			s.fail(sw, r, "rate_limited", "too many requests from this client; retry after "+wait.Round(time.Millisecond).String())
			return
		}
	}
	if !cleanPath(r.URL.Path) {
		// The mux would answer a plain-text redirect.
		s.fail(sw, r, "not_found", "no such path: paths with empty, '.' or '..' segments are not served")
		return
	}
	h.mux.ServeHTTP(sw, r)
}

// cleanPath reports whether p has no empty, "." or ".." segments (a
// trailing slash aside), so that the mux serves it rather than redirects.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

func (s *Server) authorized(r *http.Request) bool {
	got, ok := bearerToken(r.Header.Get("Authorization"))
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) == 1
}

// bearerToken returns the credentials of an "Authorization: Bearer ..."
// header. The scheme is case-insensitive (RFC 9110, section 11.1).
func bearerToken(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

// checkToken refuses a token no client could send in a header.
func checkToken(t string) error {
	for _, r := range t {
		if r <= ' ' || r == 0x7f || r > '~' {
			return &ConfigError{"Token", "the token may hold only visible ASCII characters (no spaces or line breaks)"}
		}
	}
	return nil
}

// LoadToken returns the write token from the file at path, or else from
// the environment variable TAGD_TOKEN (getenv reads it), or "" for none.
// A token never comes from a flag's value, which any user of the machine
// can read in the process list. The file's trailing line break is dropped;
// a file that is empty, or both sources at once, is refused.
func LoadToken(path string, getenv func(string) string) (string, error) {
	env := getenv("TAGD_TOKEN")
	if path == "" {
		return env, checkToken(env)
	}
	if env != "" {
		return "", &ConfigError{"Token", "both a token file and $TAGD_TOKEN are set: use one"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &ConfigError{"Token", "reading the token file: " + err.Error()}
	}
	t := strings.TrimRight(string(b), "\r\n")
	if t == "" {
		return "", &ConfigError{"Token", "the token file " + path + " is empty"}
	}
	return t, checkToken(t)
}

// errorStatus is every error code tagd answers with, and its status. Each
// is listed in docs/TAGD.md (TestErrorCodes checks both ways).
var errorStatus = map[string]int{
	"invalid_json":            400,
	"invalid_body":            400,
	"invalid_tag":             400,
	"unsafe_character":        400,
	"invalid_utf8":            400,
	"invalid_tags":            400,
	"invalid_item":            400,
	"invalid_prefix":          400,
	"invalid_limit":           400,
	"invalid_cursor":          400,
	"invalid_minutes":         400,
	"invalid_query":           400,
	"invalid_value":           400,
	"unauthorized":            401,
	"not_found":               404,
	"method_not_allowed":      405,
	"request_timeout":         408,
	"body_too_large":          413,
	"unsupported_media_type":  415,
	"rate_limited":            429,
	"internal":                500,
	"outcome_unknown":         500,
	"invalid_idempotency_key": 400,
	"idempotency_key_in_use":  409,
	"idempotency_key_reused":  422,
	"database_unavailable":    503,
	"canceled":                503,
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// fail answers with the error code's status and a JSON error body.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code, msg string) {
	status, ok := errorStatus[code]
	if !ok {
		s.log.Error("undocumented error code", "code", code, "path", truncate(r.URL.Path, 200))
		code, status = "internal", http.StatusInternalServerError
	}
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func (s *Server) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.fail(w, r, "method_not_allowed", "the method is not allowed here; use "+allow)
	}
}

// storeError answers a failed store call: the client's mistake is 400, an
// unknown tag 404, a database that is down, overloaded or too slow 503
// (nothing was written: retrying is safe), and a write whose outcome is
// unknown, because the connection was lost after it may have committed,
// 500 with the code outcome_unknown (retrying could count it twice). The
// library classifies every database error; nothing here reads a driver's
// codes.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	var ie *InputError
	kind := getorcreate.Kind(err) // the library's errors, and the drivers' own
	writes := r.Method != http.MethodGet && r.Method != http.MethodHead
	switch {
	case errors.As(err, &ie):
		s.fail(w, r, ie.Code, ie.Message)
		return
	case errors.Is(err, ErrNotFound):
		s.fail(w, r, "not_found", "no such tag or item")
		return
	case kind == getorcreate.ErrValueTooLong, kind == getorcreate.ErrInvalidValue:
		s.fail(w, r, "invalid_value", err.Error())
		return
	case kind == getorcreate.ErrIndeterminate && writes:
		s.log.Warn("write outcome unknown", "err", err, "path", r.URL.Path)
		s.fail(w, r, "outcome_unknown", "the connection to the database was lost after the write was sent: it may or may not have been applied")
		return
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		s.fail(w, r, "canceled", "request canceled")
		return
	case getorcreate.IsRetryable(err), kind == getorcreate.ErrIndeterminate, errors.Is(err, context.DeadlineExceeded):
		// (A read whose connection broke wrote nothing.)
		s.log.Warn("database unavailable", "err", err, "path", r.URL.Path)
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, "database_unavailable", "the database is unavailable or overloaded; nothing was written; retry shortly")
		return
	}
	s.log.Error("store failed", "err", err, "path", r.URL.Path)
	s.fail(w, r, "internal", "internal error; see the server log")
}

// decode reads a JSON object body into the fields' readers:
// application/json only, at most MaxBodyBytes, sent within BodyTimeout,
// valid UTF-8, exactly the field names given (case-sensitive, each once),
// one value. Errors are answered here, in the API's words.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, fields map[string]fieldReader) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		s.fail(w, r, "unsupported_media_type", "send the body as Content-Type: application/json")
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		s.fail(w, r, "unsupported_media_type", "the body must be UTF-8")
		return false
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	rc.SetReadDeadline(time.Time{}) // the server sets the next request's own
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			s.fail(w, r, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", mbe.Limit))
		case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
			w.Header().Set("Connection", "close") // the rest of the body may still come
			s.fail(w, r, "request_timeout", fmt.Sprintf("the body did not arrive within %v", s.opts.BodyTimeout))
		default:
			s.fail(w, r, "invalid_body", "the body could not be read; it was cut short or badly framed")
		}
		return false
	}
	// encoding/json would quietly replace invalid UTF-8 with U+FFFD.
	if !utf8.Valid(body) {
		s.fail(w, r, "invalid_utf8", "the body is not valid UTF-8")
		return false
	}
	if err := readObject(body, fields); err != nil {
		s.fail(w, r, "invalid_json", err.Error())
		return false
	}
	return true
}

// A fieldReader reads one member's value; name is the member's name, for
// messages.
type fieldReader func(dec *json.Decoder, name string) error

// readObject parses body as one JSON object. encoding/json alone would take
// {"Name": ...} for "name", let a repeated member win silently, and explain
// mistakes in Go's types; here each is refused in the API's words.
func readObject(body []byte, fields map[string]fieldReader) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := wantDelim(dec, '{', "the body must be a JSON object"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		name := tok.(string) // inside an object, the decoder gives only string keys
		read, ok := fields[name]
		if !ok {
			return fmt.Errorf("unknown field %s (names are case-sensitive); this request takes %s", strconv.Quote(truncate(name, 64)), fieldList(fields))
		}
		if seen[name] {
			return fmt.Errorf("the field %q appears more than once", name)
		}
		seen[name] = true
		if err := read(dec, name); err != nil {
			return err
		}
	}
	if err := wantDelim(dec, '}', "the body must be one JSON object"); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("the body holds more than one JSON value")
	}
	return nil
}

func fieldList(fields map[string]fieldReader) string {
	var names []string
	for n := range fields {
		names = append(names, strconv.Quote(n))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func wantDelim(dec *json.Decoder, d json.Delim, msg string) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if tok != d {
		return errors.New(msg)
	}
	return nil
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("the body is not valid JSON (at byte %d)", se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the body ends before its JSON does")
	}
	return errors.New("the body is not valid JSON")
}

// jsonKind names a token's JSON type, for messages.
func jsonKind(tok json.Token) string {
	switch tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		if tok == json.Delim('{') {
			return "an object"
		}
		return "an array"
	}
	return "something else"
}

// stringField reads a string, or null (leaving *dst nil).
func stringField(dst **string) fieldReader {
	return func(dec *json.Decoder, name string) error {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		switch v := tok.(type) {
		case nil:
			return nil
		case string:
			*dst = &v
			return nil
		}
		return fmt.Errorf("%q must be a string, not %s", name, jsonKind(tok))
	}
}

// stringsField reads an array of strings, or null (leaving *dst nil).
func stringsField(dst *[]string) fieldReader {
	return func(dec *json.Decoder, name string) error {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		if tok == nil {
			return nil
		}
		if tok != json.Delim('[') {
			return fmt.Errorf("%q must be an array of strings, not %s", name, jsonKind(tok))
		}
		out := []string{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return syntaxError(err)
			}
			v, ok := tok.(string)
			if !ok {
				return fmt.Errorf("%s[%d] must be a string, not %s", name, len(out), jsonKind(tok))
			}
			out = append(out, v)
		}
		if _, err := dec.Token(); err != nil { // the closing ]
			return syntaxError(err)
		}
		*dst = out
		return nil
	}
}

// query parses the query string strictly: every parameter known, at most
// once, and the whole string well-formed (url.Values would silently drop
// "limit=1;prefix=a").
func (s *Server) query(w http.ResponseWriter, r *http.Request, known ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.fail(w, r, "invalid_query", "the query string is malformed: separate parameters with &, and escape ; % and + in values")
		return nil, false
	}
	for k, v := range q {
		if !slices.Contains(known, k) {
			hint := "this path takes no parameters"
			if len(known) > 0 {
				hint = "use " + strings.Join(known, ", ")
			}
			s.fail(w, r, "invalid_query", "unknown query parameter "+strconv.Quote(truncate(k, 64))+"; "+hint)
			return nil, false
		}
		if len(v) > 1 {
			s.fail(w, r, "invalid_query", "the query parameter "+strconv.Quote(k)+" is given more than once")
			return nil, false
		}
	}
	return q, true
}

func (s *Server) dbContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.DBTimeout)
}

// TagAnswer is the body of POST /api/tags: the tag as stored after this
// submission, and whether this request created it.
type TagAnswer struct {
	Tag
	Created bool `json:"created"`
}

func (s *Server) postTag(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	key, ok := s.idempotencyKey(w, r)
	if !ok {
		return
	}
	var name *string
	if !s.decode(w, r, map[string]fieldReader{"name": stringField(&name)}) {
		return
	}
	if name == nil {
		s.fail(w, r, "invalid_tag", `the body needs a "name" string`)
		return
	}
	if key == "" && s.store.Coalescing() {
		// Without an Idempotency-Key nothing else goes in the request's
		// transaction: the store's coalesced calls serve it.
		ctx, cancel := s.dbContext(r)
		defer cancel()
		tag, o, err := s.store.Submit(ctx, *name)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		s.count([]Outcome{o}, o.Attempts)
		status, location := http.StatusOK, ""
		if o.Created {
			status, location = http.StatusCreated, "/api/tags/"+url.PathEscape(tag.Key)
		}
		a, err := recordJSON(status, location, TagAnswer{tag, o.Created})
		if err != nil {
			s.fail(w, r, "internal", "internal error; see the server log")
			return
		}
		s.answer(w, a, false)
		return
	}
	s.write(w, r, key, map[string]string{"name": *name}, func(ctx context.Context, tx *sql.Tx) (recorded, []Outcome, error) {
		tag, o, err := s.store.SubmitTx(ctx, tx, *name)
		if err != nil {
			return recorded{}, nil, err
		}
		status, location := http.StatusOK, ""
		if o.Created {
			status, location = http.StatusCreated, "/api/tags/"+url.PathEscape(tag.Key)
		}
		a, err := recordJSON(status, location, TagAnswer{tag, o.Created})
		return a, []Outcome{o}, err
	})
}

func (s *Server) getTag(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	ctx, cancel := s.dbContext(r)
	defer cancel()
	tag, err := s.store.Get(ctx, r.PathValue("key"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tag)
}

// ListAnswer is the body of GET /api/tags.
type ListAnswer struct {
	Tags []Tag  `json:"tags"`
	Next string `json:"next_cursor,omitempty"`
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) {
	q, ok := s.query(w, r, "prefix", "limit", "cursor")
	if !ok {
		return
	}
	limit := 20
	if l, ok := q["limit"]; ok {
		n, err := strconv.Atoi(l[0])
		if err != nil || n < 1 || n > 100 {
			s.fail(w, r, "invalid_limit", "limit must be a whole number from 1 to 100")
			return
		}
		limit = n
	}
	ctx, cancel := s.dbContext(r)
	defer cancel()
	tags, next, err := s.store.List(ctx, q.Get("prefix"), limit, q.Get("cursor"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ListAnswer{tags, next})
}

// HistoryAnswer is the body of GET /api/tags/{key}/history: the tag's
// submissions per minute, Counts[i] in the minute starting at Start + i
// minutes, the last being the current minute.
type HistoryAnswer struct {
	Key     string    `json:"key"`
	Name    string    `json:"name"`
	Minutes int       `json:"minutes"`
	Start   time.Time `json:"start"`
	Counts  []int64   `json:"counts"`
}

func (s *Server) tagHistory(w http.ResponseWriter, r *http.Request) {
	q, ok := s.query(w, r, "minutes")
	if !ok {
		return
	}
	minutes := 60
	if m, ok := q["minutes"]; ok {
		n, err := strconv.Atoi(m[0])
		if err != nil || n < 1 || n > MaxHistoryMinutes {
			s.fail(w, r, "invalid_minutes", fmt.Sprintf("minutes must be a whole number from 1 to %d", MaxHistoryMinutes))
			return
		}
		minutes = n
	}
	ctx, cancel := s.dbContext(r)
	defer cancel()
	h, err := s.store.History(ctx, r.PathValue("key"), minutes, time.Now())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// ItemAnswer is the body of PUT /api/items/{item}/tags.
type ItemAnswer struct {
	Item string     `json:"item"`
	Tags []Attached `json:"tags"`
}

// ItemTagsAnswer is the body of GET /api/items/{item}/tags.
type ItemTagsAnswer struct {
	Item string `json:"item"`
	Tags []Tag  `json:"tags"`
}

func (s *Server) putItemTags(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	key, ok := s.idempotencyKey(w, r)
	if !ok {
		return
	}
	var names []string
	if !s.decode(w, r, map[string]fieldReader{"tags": stringsField(&names)}) {
		return
	}
	item := r.PathValue("item")
	s.write(w, r, key, map[string]any{"item": item, "tags": names}, func(ctx context.Context, tx *sql.Tx) (recorded, []Outcome, error) {
		tags, outcomes, err := s.store.AttachTx(ctx, tx, item, names)
		if err != nil {
			return recorded{}, nil, err
		}
		a, err := recordJSON(http.StatusOK, "", ItemAnswer{item, tags})
		return a, outcomes, err
	})
}

func (s *Server) getItemTags(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	ctx, cancel := s.dbContext(r)
	defer cancel()
	tags, err := s.store.ItemTags(ctx, r.PathValue("item"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ItemTagsAnswer{r.PathValue("item"), tags})
}

// readyTTL is how long a readiness probe's result is reused: /readyz can be
// asked as often as anyone likes, and the database is pinged at most once
// in that time.
const readyTTL = time.Second

type readiness struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// readyz answers whether the database answers. The failure's details (the
// driver's error names hosts, users and databases) go to the log, not to
// whoever asks.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.query(w, r); !ok {
		return
	}
	if err := s.probe(r.Context()); err != nil {
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, "database_unavailable", "the database is not answering")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) probe(ctx context.Context) error {
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	if !s.ready.at.IsZero() && time.Since(s.ready.at) < readyTTL {
		return s.ready.err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	err := s.store.db.PingContext(ctx)
	if err != nil && s.ready.err == nil {
		s.log.Warn("readiness: the database does not answer", "err", err)
	}
	s.ready.at, s.ready.err = time.Now(), err
	return err
}

// contentPolicy lets the page load only its own script, style and API, and
// be framed by nobody.
const contentPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) asset(name, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := webFS.ReadFile(name)
		if err != nil {
			s.fail(w, r, "internal", "page missing from the build")
			return
		}
		h := w.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		w.Write(b)
	}
}
