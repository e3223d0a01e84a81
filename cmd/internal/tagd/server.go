package tagd

import (
	"bytes"
	"context"
	"crypto/subtle"
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
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/getorcreate/getorcreate"
)

//go:embed web
var webFS embed.FS

// Options configures a Server. The zero value is a working server without
// authentication or rate limit.
type Options struct {
	// Token, when set, must be sent as "Authorization: Bearer <Token>" with
	// every write (POST, PUT).
	Token string
	// RateLimit is the requests per second each client (by remote IP) may
	// make to /api/; zero means no limit. RateBurst is the bucket size
	// (default: RateLimit rounded up).
	RateLimit float64
	RateBurst int
	// MaxBodyBytes limits request bodies; default 64 KiB.
	MaxBodyBytes int64
	// DBTimeout bounds the database work of one request; default 5s. A
	// request that runs out of it is answered 503.
	DBTimeout time.Duration
	// Logger receives one line per request and every failure; default
	// slog.Default().
	Logger *slog.Logger
}

// Server is the tagd HTTP handler: the JSON API, the web page, health checks
// and metrics. It holds no package-level state; several may run in one
// process.
type Server struct {
	store   *Store
	opts    Options
	log     *slog.Logger
	metrics *metrics
	limiter *limiter
	mux     *http.ServeMux
}

// NewServer returns a handler serving store.
func NewServer(store *Store, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.DBTimeout <= 0 {
		opts.DBTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{store: store, opts: opts, log: opts.Logger, metrics: newMetrics(), mux: http.NewServeMux()}
	if opts.RateLimit > 0 {
		s.limiter = newLimiter(opts.RateLimit, opts.RateBurst)
	}
	s.route("POST /api/tags", true, s.postTag)
	s.route("GET /api/tags", true, s.listTags)
	s.route("GET /api/tags/{key}", true, s.getTag)
	s.route("PUT /api/items/{item}/tags", true, s.putItemTags)
	s.route("GET /api/items/{item}/tags", true, s.getItemTags)
	// Paths without a method catch the methods not listed above: the mux's
	// own 405 is plain text, and every API answer here is JSON.
	s.route("/api/tags", false, s.methodNotAllowed("GET, POST"))
	s.route("/api/tags/{key}", false, s.methodNotAllowed("GET"))
	s.route("/api/items/{item}/tags", false, s.methodNotAllowed("GET, PUT"))
	s.route("/", false, func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "not_found", "no such path: "+r.URL.Path)
	})
	s.route("GET /{$}", false, s.page)
	s.route("GET /healthz", false, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.route("GET /readyz", false, s.ready)
	s.route("GET /metrics", false, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.metrics.write(w, s.store.db)
	})
	return s
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route registers h for pattern, wrapped in logging and metrics (labelled
// by the pattern, so label values stay few) and, for the API, in the rate
// limit and the token check.
func (s *Server) route(pattern string, api bool, h http.HandlerFunc) {
	write := strings.HasPrefix(pattern, "POST ") || strings.HasPrefix(pattern, "PUT ")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			d := time.Since(start)
			s.metrics.observe(pattern, r.Method, sw.status, d)
			lvl := slog.LevelInfo
			if sw.status >= 500 {
				lvl = slog.LevelWarn
			}
			s.log.LogAttrs(r.Context(), lvl, "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("route", pattern), slog.Int("status", sw.status), slog.Int("bytes", sw.bytes),
				slog.Duration("duration", d), slog.String("remote", r.RemoteAddr))
		}()
		if api && s.limiter != nil {
			if ok, wait := s.limiter.allow(clientIP(r), start); !ok {
				s.metrics.rateLimited()
				sw.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				s.fail(sw, r, http.StatusTooManyRequests, "rate_limited", "too many requests from this client; retry after "+wait.Round(time.Millisecond).String())
				return
			}
		}
		if api && write && s.opts.Token != "" && !s.authorized(r) {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="tagd"`)
			s.fail(sw, r, http.StatusUnauthorized, "unauthorized", "this server needs the header Authorization: Bearer <token> for writes")
			return
		}
		h(sw, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) == 1
}

// clientIP is the remote address without the port. Forwarded headers are
// not trusted: behind a proxy, every client shares the proxy's bucket.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func (s *Server) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+allow)
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
	switch {
	case errors.As(err, &ie):
		s.fail(w, r, http.StatusBadRequest, ie.Code, ie.Message)
		return
	case errors.Is(err, ErrNotFound):
		s.fail(w, r, http.StatusNotFound, "not_found", "no such tag or item")
		return
	case errors.Is(err, getorcreate.ErrValueTooLong), errors.Is(err, getorcreate.ErrInvalidValue):
		s.fail(w, r, http.StatusBadRequest, "invalid_value", err.Error())
		return
	case errors.Is(err, getorcreate.ErrIndeterminate):
		s.log.Warn("write outcome unknown", "err", err, "path", r.URL.Path)
		s.fail(w, r, http.StatusInternalServerError, "outcome_unknown", "the connection to the database was lost after the write was sent: it may or may not have been applied")
		return
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		s.fail(w, r, http.StatusServiceUnavailable, "canceled", "request canceled")
		return
	case getorcreate.IsRetryable(err), errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("database unavailable", "err", err, "path", r.URL.Path)
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, http.StatusServiceUnavailable, "database_unavailable", "the database is unavailable or overloaded; nothing was written; retry shortly")
		return
	}
	s.log.Error("store failed", "err", err, "path", r.URL.Path)
	s.fail(w, r, http.StatusInternalServerError, "internal", "internal error; see the server log")
}

// decode reads a JSON body into v: application/json only, at most
// MaxBodyBytes, valid UTF-8, no unknown fields, one value.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		s.fail(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as Content-Type: application/json")
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		s.fail(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be UTF-8")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", mbe.Limit))
			return false
		}
		s.fail(w, r, http.StatusBadRequest, "bad_body", "could not read the body: "+err.Error())
		return false
	}
	// encoding/json would quietly replace invalid UTF-8 with U+FFFD.
	if !utf8.Valid(body) {
		s.fail(w, r, http.StatusBadRequest, "invalid_utf8", "the body is not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.fail(w, r, http.StatusBadRequest, "invalid_json", "the body is not the JSON expected: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		s.fail(w, r, http.StatusBadRequest, "invalid_json", "the body holds more than one JSON value")
		return false
	}
	return true
}

func (s *Server) dbContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.DBTimeout)
}

// TagAnswer is the body of POST /api/tags and GET /api/tags/{key}.
type TagAnswer struct {
	Tag
	Created bool `json:"created"` // this request created the tag
}

func (s *Server) postTag(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name *string `json:"name"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	if in.Name == nil {
		s.fail(w, r, http.StatusBadRequest, "invalid_tag", `the body needs a "name" string`)
		return
	}
	ctx, cancel := s.dbContext(r)
	defer cancel()
	tag, o, err := s.store.Submit(ctx, *in.Name)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.metrics.outcome(o)
	status := http.StatusOK
	if o.Created {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/tags/"+url.PathEscape(tag.Key))
	}
	writeJSON(w, status, TagAnswer{tag, o.Created})
}

func (s *Server) getTag(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.dbContext(r)
	defer cancel()
	tag, err := s.store.Get(ctx, r.PathValue("key"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TagAnswer{tag, false})
}

// ListAnswer is the body of GET /api/tags.
type ListAnswer struct {
	Tags []Tag  `json:"tags"`
	Next string `json:"next_cursor,omitempty"`
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "prefix" && k != "limit" && k != "cursor" {
			s.fail(w, r, http.StatusBadRequest, "invalid_query", "unknown query parameter "+strconv.Quote(k)+"; use prefix, limit, cursor")
			return
		}
	}
	limit := 20
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			s.fail(w, r, http.StatusBadRequest, "invalid_limit", "limit must be a whole number from 1 to 100")
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

// ItemAnswer is the body of PUT and GET /api/items/{item}/tags.
type ItemAnswer struct {
	Item string     `json:"item"`
	Tags []Attached `json:"tags"`
}

func (s *Server) putItemTags(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Tags []string `json:"tags"`
	}
	if !s.decode(w, r, &in) {
		return
	}
	ctx, cancel := s.dbContext(r)
	defer cancel()
	tags, outcomes, err := s.store.Attach(ctx, r.PathValue("item"), in.Tags)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	for _, o := range outcomes {
		s.metrics.outcome(o)
	}
	writeJSON(w, http.StatusOK, ItemAnswer{r.PathValue("item"), tags})
}

func (s *Server) getItemTags(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.dbContext(r)
	defer cancel()
	tags, err := s.store.ItemTags(ctx, r.PathValue("item"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := make([]Attached, len(tags))
	for i, t := range tags {
		out[i] = Attached{Tag: t, Attached: true}
	}
	writeJSON(w, http.StatusOK, ItemAnswer{r.PathValue("item"), out})
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.db.PingContext(ctx); err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "database_unavailable", "database unreachable: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	b, err := webFS.ReadFile("web/index.html")
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, "internal", "page missing from the build")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	w.Write(b)
}
