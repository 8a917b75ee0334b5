// Package livepeertest is an in-process HTTP server that behaves like
// Livepeer Studio's /api/generate/<pipeline> API (which relays the
// go-livepeer gateway's answers) for the nine batch AI pipelines, or, in
// its Studio and GoLivepeer modes, like exactly one of those upstreams
// with the quirks UPSTREAM §12 lists.
//
// It listens on a real loopback socket, checks the bearer key, validates
// bodies the way Studio and the gateway do, answers with deterministic
// results whose media URLs it serves itself, records every request, and
// can be scripted to fail. It is used by tests, by the demo command of the
// production binary and by benchmarks, so it stays quiet (no logging),
// cheap on the happy path, safe for concurrent use, and it does not import
// package testing.
package livepeertest

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Server. The zero value (plus an APIKey) simulates
// Studio with all nine pipelines on 127.0.0.1 (a blend: Studio's paths and
// error shapes, the gateway's pipeline set); Studio and GoLivepeer select
// one upstream's behaviour exactly.
type Config struct {
	// APIKey is the only key accepted: the request must carry exactly
	// "Authorization: Bearer <APIKey>". It must not be empty.
	APIKey string
	// BasePath is the path prefix the pipelines are served under. By
	// default (empty) they are served under both "/api/generate" and
	// "/api/beta/generate", as Studio mounts its generate router twice
	// (UPSTREAM §2.1, §12.6), and URL returns the non-beta one; with
	// GoLivepeer the default is the root. "/" serves them at the root like
	// a go-livepeer gateway; any other value serves them under it alone.
	BasePath string
	// TLS serves HTTPS (HTTP/1.1) with a freshly minted self-signed
	// certificate; CertPool then returns a pool trusting it.
	TLS bool
	// RelativeURLs makes result media URLs relative paths
	// ("/stream/<id>/<n>.png") as a go-livepeer gateway may return; by
	// default they are absolute URLs on the simulator's own origin.
	RelativeURLs bool
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// Pipelines, if non-nil, restricts which pipelines are served; others
	// get 404 (Studio has no image-to-text or text-to-speech, see
	// StudioPipelines). Nil serves all nine, or StudioPipelines with Studio.
	Pipelines []string
	// MaxFileBytes is the limit per uploaded file; default 10 MiB (Studio's
	// multer limit). Bigger files get 422 {"errors":["File too large"]}.
	MaxFileBytes int64
	// MaxRecorded is how many requests Requests keeps, dropping the oldest
	// first, so a long benchmark or demo does not grow without bound (a
	// record holds up to RecordFileBytes per file); 0 means 1000, negative
	// records nothing (Hits still counts).
	MaxRecorded int
	// CoerceFormValues emulates Studio coercing multipart text before
	// validating it (UPSTREAM §12.1): each text field becomes
	// Number.parseFloat(text) if that is not NaN, else a boolean for exactly
	// "true"/"false", else stays a string, and ajv checks that value. So a
	// prompt of "2024" or "4k photo" fails with 422 "must be string", a
	// return_timestamps of "true" too, and "7abc" passes as integer 7 but
	// the gateway, which gets the original text, answers 400 (see
	// checkGatewayBinding). Studio implies it.
	CoerceFormValues bool

	// Studio simulates Livepeer Studio in front of a go-livepeer gateway,
	// exactly (UPSTREAM §12): both /api/generate and /api/beta/generate
	// (unless BasePath is set), StudioPipelines (unless Pipelines is set),
	// CoerceFormValues, llm as Studio's stale multipart route, and
	// Studio's handling of what the gateway behind it answers — scripted
	// Steps describe the gateway, not Studio:
	//   - a Status >= 500 becomes 500 StudioFailedBody(pipeline) (§12.3),
	//     unless Step.StudioOwn;
	//   - a DropConnection, NoOrchestrator or AbortStream step, i.e. a
	//     failed fetch, becomes 500 StudioFetchErrorBody (§12.3), and so
	//     does an unscripted request with an empty model id, which no
	//     orchestrator serves (§12.2);
	//   - a Delay of at least StudioGatewayTimeout becomes, after that
	//     timeout, 500 StudioTimeoutBody;
	//   - 1xx-4xx pass through verbatim (§4.2), so Studio's own 429
	//     {"errors":["Too many AI requests"]} with Retry-After stays
	//     scriptable as a Step;
	//   - event streams are buffered whole and sent at once, since Studio
	//     reads the gateway's body with buffer() (§3.7).
	Studio bool
	// StudioGatewayTimeout, with Studio, is how long Studio waits for the
	// gateway's response headers; real Studio waits 10 minutes (UPSTREAM
	// §5, AI_GATEWAY_TIMEOUT). Zero never times out.
	StudioGatewayTimeout time.Duration
	// GoLivepeer simulates a go-livepeer AI gateway reached directly
	// (UPSTREAM §2.1, §12.2, §12.4): served at the root unless BasePath is
	// set; an unscripted request with an empty model id finds no
	// orchestrator and gets its connection closed after the body was read
	// (§12.2, as Step.NoOrchestrator); a scripted Status 400 on llm, which
	// stands for the runner's BadRequest, reaches the client as 500
	// GatewayError("Internal Server Error") (§12.4). The bearer key is
	// still checked (a real gateway checks none, §2.3; a proxy in front of
	// a community gateway might), and schema violations still get the
	// Studio-shaped 422s of the default mode. Ignored with Studio.
	GoLivepeer bool
}

const (
	// defaultBasePath is what URL returns by default: Studio's non-beta
	// path; defaultBetaPath is served too (UPSTREAM §12.6).
	defaultBasePath     = "/api/generate"
	defaultBetaPath     = "/api/beta/generate"
	defaultMaxFileBytes = 10 << 20
	defaultMaxRecorded  = 1000
)

// Server is a running simulator. Its methods are safe for concurrent use.
type Server struct {
	cfg       Config
	basePath  string   // the one URL reports; "" for the root
	basePaths []string // every prefix served, basePath first
	studio    bool
	goLP      bool
	served    map[string]*pipeline
	origin    string
	pool      *x509.CertPool
	srv       *http.Server
	apiKey    atomic.Pointer[string]
	ids       atomic.Uint64

	done      chan struct{} // closed by Close: ends delays and streams
	closeOnce sync.Once
	// Handlers in flight, so Close can wait for them (a sync.WaitGroup
	// must not see Add at zero concurrently with Wait).
	active  int
	closing bool
	idle    chan struct{} // closed when active drops to 0 while closing

	clientOnce sync.Once
	client     *http.Client

	mu             sync.Mutex
	records        []Request // ring buffer of recorded requests
	recStart       int       // index of the oldest record once full
	hits           map[string]int
	script         []scripted
	disconnects    int
	lastDisconnect time.Time
	disconnectCh   chan struct{} // closed and replaced at each disconnect
}

// New starts a simulator listening on a real socket.
func New(cfg Config) (*Server, error) {
	if cfg.APIKey == "" {
		return nil, errors.New("livepeertest: Config.APIKey must not be empty")
	}
	s := &Server{
		cfg:          cfg,
		served:       map[string]*pipeline{},
		hits:         map[string]int{},
		done:         make(chan struct{}),
		idle:         make(chan struct{}),
		disconnectCh: make(chan struct{}),
	}
	s.studio = cfg.Studio
	s.goLP = cfg.GoLivepeer && !cfg.Studio
	if s.studio {
		s.cfg.CoerceFormValues = true
	}
	switch bp := strings.TrimRight(cfg.BasePath, "/"); {
	case cfg.BasePath == "" && s.goLP:
		s.basePaths = []string{""}
	case cfg.BasePath == "":
		s.basePaths = []string{defaultBasePath, defaultBetaPath}
	case !strings.HasPrefix(cfg.BasePath, "/"):
		return nil, fmt.Errorf("livepeertest: BasePath %q must start with /", cfg.BasePath)
	default:
		s.basePaths = []string{bp}
	}
	s.basePath = s.basePaths[0]
	if s.cfg.MaxFileBytes <= 0 {
		s.cfg.MaxFileBytes = defaultMaxFileBytes
	}
	if s.cfg.MaxRecorded == 0 {
		s.cfg.MaxRecorded = defaultMaxRecorded
	}
	names := cfg.Pipelines
	if names == nil {
		names = Pipelines
		if s.studio {
			names = StudioPipelines
		}
	}
	for _, name := range names {
		p, ok := pipelineSpecs[name]
		if !ok {
			return nil, fmt.Errorf("livepeertest: unknown pipeline %q", name)
		}
		if s.studio {
			p = studioSpecs[name]
		}
		s.served[name] = p
	}
	key := cfg.APIKey
	s.apiKey.Store(&key)

	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("livepeertest: listen: %w", err)
	}
	scheme := "http"
	if cfg.TLS {
		cert, pool, err := selfSignedCert()
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.pool = pool
		// HTTP/1.1 only: DropConnection and AbortStream need to hijack
		// the connection.
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
			MinVersion:   tls.VersionTLS12,
		})
		scheme = "https"
	}
	s.origin = scheme + "://" + dialableAddr(ln.Addr())
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		// Closed connections and handshake failures are part of the tests;
		// keep net/http from logging them.
		ErrorLog: discardLogger(),
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// dialableAddr turns a wildcard listen address into a loopback one, so
// Origin is a URL a client can use.
func dialableAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	ip := "127.0.0.1"
	if tcp.IP.To4() == nil {
		ip = "::1"
	}
	return net.JoinHostPort(ip, strconv.Itoa(tcp.Port))
}

// URL returns the base URL including BasePath, e.g.
// "http://127.0.0.1:41234/api/generate" by default (Studio's non-beta
// path; the beta one is served too, see BetaURL), "http://127.0.0.1:41234"
// at the root.
func (s *Server) URL() string { return s.origin + s.basePath }

// BetaURL returns the base URL with Studio's beta path,
// "<origin>/api/beta/generate", when that path is served (the default
// BasePath, with or without Studio); otherwise it returns URL.
func (s *Server) BetaURL() string {
	if slices.Contains(s.basePaths, defaultBetaPath) {
		return s.origin + defaultBetaPath
	}
	return s.URL()
}

// Origin returns scheme://host:port.
func (s *Server) Origin() string { return s.origin }

// CertPool returns a pool trusting the server's certificate; nil unless
// Config.TLS.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// Client returns an HTTP client (shared, created on first use) that trusts
// the server's certificate. Close closes its idle connections.
func (s *Server) Client() *http.Client {
	s.clientOnce.Do(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if s.pool != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}
		}
		s.client = &http.Client{Transport: tr}
	})
	return s.client
}

// Close stops the server at once: it closes the listener and every
// connection (requests in flight get a transport error), ends pending
// delays and streams, and waits for the handlers to return.
//
// Not http.Server.Shutdown: it waits up to 5 s for connections a client
// dialled but never used, which transports do under concurrency.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.mu.Lock()
		s.closing = true
		if s.active == 0 {
			close(s.idle)
		}
		s.mu.Unlock()
		_ = s.srv.Close()
		select {
		case <-s.idle:
		case <-time.After(5 * time.Second):
			// A handler stuck outside our control; don't hang the caller.
		}
		s.Client().CloseIdleConnections()
	})
}

// enter registers a handler in flight; false once closing.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.active++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.active == 0 && s.closing {
		close(s.idle)
	}
}

// SetAPIKey changes the accepted key at run time (key rotation tests).
func (s *Server) SetAPIKey(key string) {
	s.apiKey.Store(&key)
}

// Requests returns a copy of the recorded requests, oldest first. The
// slice is the caller's; the maps and byte slices inside each Request are
// shared with the server and must not be modified.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, 0, len(s.records))
	out = append(out, s.records[s.recStart:]...)
	return append(out, s.records[:s.recStart]...)
}

// Hits returns how many requests were received for pipeline, one of
// Pipelines (including rejected ones), since the start or the last Reset.
func (s *Server) Hits(pipeline string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[pipeline]
}

// Reset forgets recorded requests, hit counts, disconnects and pending
// scripts.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records, s.recStart = nil, 0
	s.hits = map[string]int{}
	s.script = nil
	s.disconnects, s.lastDisconnect = 0, time.Time{}
}

// Disconnects returns how many times a client went away before its answer
// was complete: during a Delay, mid-stream, or while sending its body.
func (s *Server) Disconnects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disconnects
}

// LastDisconnect returns when the server last noticed a client going away;
// zero if none.
func (s *Server) LastDisconnect() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastDisconnect
}

// WaitDisconnects waits until Disconnects() >= n or timeout passes, and
// reports whether it got there. net/http notices a vanished client
// asynchronously, so tests should wait rather than check at once.
func (s *Server) WaitDisconnects(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch := s.disconnects, s.disconnectCh
		s.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

func (s *Server) noteDisconnect() {
	select {
	case <-s.done:
		return // the server closing is not the client going away
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disconnects++
	s.lastDisconnect = time.Now()
	close(s.disconnectCh)
	s.disconnectCh = make(chan struct{})
}

// recordLocked appends rec to the ring of recorded requests.
func (s *Server) recordLocked(rec Request) {
	if knownPipeline(rec.Pipeline) {
		// Only known names, so random paths cannot grow the map.
		s.hits[rec.Pipeline]++
	}
	limit := s.cfg.MaxRecorded
	switch {
	case limit < 0:
	case len(s.records) < limit:
		s.records = append(s.records, rec)
	default:
		s.records[s.recStart] = rec
		s.recStart = (s.recStart + 1) % limit
	}
}

// authorized checks for exactly one "Authorization: Bearer <key>" header.
func (s *Server) authorized(r *http.Request) bool {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return false
	}
	token, ok := strings.CutPrefix(vals[0], "Bearer ")
	key := *s.apiKey.Load()
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(key)) == 1
}

var notFoundBody = StudioError("not found")

// ServeHTTP implements http.Handler. Order: media (no auth), auth,
// pipeline, method, body, record, script, validation, answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		drop(w)
		return
	}
	defer s.leave()
	if strings.HasPrefix(r.URL.Path, mediaPrefix) {
		serveMedia(w, r)
		return
	}
	name, ok := s.route(r.URL.Path)
	if !ok {
		writeBody(w, http.StatusNotFound, "application/json", notFoundBody)
		return
	}
	rec := Request{Pipeline: name, Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()}
	if !s.authorized(r) {
		s.recordOnly(rec)
		writeBody(w, http.StatusUnauthorized, "application/json", UnauthorizedBody)
		return
	}
	p := s.served[name]
	if p == nil {
		s.recordOnly(rec)
		writeBody(w, http.StatusNotFound, "application/json", notFoundBody)
		return
	}
	if r.Method != http.MethodPost {
		s.recordOnly(rec)
		w.Header().Set("Allow", http.MethodPost)
		writeBody(w, http.StatusMethodNotAllowed, "application/json", StudioError("method not allowed"))
		return
	}

	bad, err := readBody(r, p, s.cfg.MaxFileBytes, &rec)
	if err != nil {
		s.recordOnly(rec)
		s.noteDisconnect()
		return
	}
	s.mu.Lock()
	s.recordLocked(rec)
	st, _ := s.popStepLocked(name)
	s.mu.Unlock()

	for k, vs := range st.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	delay, timedOut := st.Delay, false
	if s.studio && s.cfg.StudioGatewayTimeout > 0 && delay >= s.cfg.StudioGatewayTimeout {
		delay, timedOut = s.cfg.StudioGatewayTimeout, true
	}
	if err := s.wait(r.Context(), delay); err != nil {
		if errors.Is(err, errDisconnected) {
			s.noteDisconnect()
		} else {
			// Closing: a transport error, not an empty 200, for the client.
			drop(w)
		}
		return
	}
	if timedOut {
		// [ST] fetchWithTimeout rejects with the bare string "timeout",
		// which has neither name nor message, and errorHandler renders
		// `Internal server error: ${err.name || err.message}`. (UPSTREAM
		// §4.2 says "<error name>"; for this error that is "undefined".)
		writeBody(w, http.StatusInternalServerError, "application/json", StudioTimeoutBody)
		return
	}
	if st.overrides() {
		s.scripted(w, r, p, &st, &rec)
		return
	}
	if bad == nil {
		bad = checkSchema(p, &rec, s.cfg.CoerceFormValues)
	}
	switch {
	case bad != nil:
	case p == studioLLMSpec:
		bad = studioLLMForwarded(&rec)
	case s.cfg.CoerceFormValues && !p.json:
		bad = checkGatewayBinding(p, rec.Form)
	}
	v := params{obj: rec.JSON, form: rec.Form}
	if bad == nil {
		bad = checkSemantics(p, v)
	}
	if bad != nil {
		writeBody(w, bad.status, "application/json", bad.body)
		return
	}
	if st.NoOrchestrator || s.modelMissing(p, v) {
		s.noOrchestrator(w, p, st.NoOrchestrator)
		return
	}
	if p.name == LLM && v.bool("stream", false) {
		c := s.newCompletion(v)
		n := len(c.words)
		final := c.final()
		if st.RunnerErrorMidStream != "" {
			// UPSTREAM §12.4: the runner's data: {"error": ...} is never
			// forwarded; the client sees the chunks before it, then the
			// end of the body without a finish_reason chunk.
			n, final = min(max(st.RunnerErrorAfter, 0), n), ""
		} else if st.Truncate || st.AbortStream {
			final = ""
		}
		events := make([]string, n)
		for i := range events {
			events[i] = c.chunk(i)
		}
		s.stream(w, r, http.StatusOK, events, final, &st)
		return
	}
	writeBytes(w, http.StatusOK, "application/json", s.respond(p, v))
}

// route maps a request path to a pipeline name under one of the served
// base paths.
func (s *Server) route(path string) (string, bool) {
	for _, bp := range s.basePaths {
		if name, ok := strings.CutPrefix(path, bp+"/"); ok {
			return name, true
		}
	}
	return "", false
}

// modelMissing reports a request whose model id is empty: the gateway takes
// "" literally and no orchestrator serves it (UPSTREAM §4.2, §7.5). With
// Studio an absent model_id is no such request, since Studio injects its
// default model (UPSTREAM §6); an explicit "" overrides that default.
func (s *Server) modelMissing(p *pipeline, v params) bool {
	field := "model_id"
	if p.name == LLM {
		field = "model"
	}
	if s.studio && !v.has(field) {
		return false
	}
	return v.str(field, "") == ""
}

// noOrchestrator answers a valid request that no orchestrator serves.
//
// go-livepeer's "no orchestrators available" path panics on batch requests
// since #3709 and net/http closes the connection without a response
// (UPSTREAM §12.2); behind Studio that is a failed fetch, 500
// StudioFetchErrorBody (§12.3). The default mode keeps answering the empty
// model id with the 500 "Failed to generate <pipeline>" Studio makes of the
// gateway's older 503 (§4.2), which existing tests rely on; a scripted
// NoOrchestrator step drops the connection there too.
func (s *Server) noOrchestrator(w http.ResponseWriter, p *pipeline, scripted bool) {
	switch {
	case s.studio:
		writeBody(w, http.StatusInternalServerError, "application/json", StudioFetchErrorBody)
	case s.goLP || scripted:
		drop(w)
	default:
		writeBody(w, http.StatusInternalServerError, "application/json", StudioFailedBody(p.name))
	}
}

// scripted answers with a step that overrides normal behaviour. In Studio
// mode the step is the gateway's answer as Studio relays it (see
// Config.Studio), unless StudioOwn.
func (s *Server) scripted(w http.ResponseWriter, r *http.Request, p *pipeline, st *Step, rec *Request) {
	viaStudio := s.studio && !st.StudioOwn
	switch {
	case st.DropConnection && viaStudio:
		// Studio's fetch fails (UPSTREAM §12.3).
		writeBody(w, http.StatusInternalServerError, "application/json", StudioFetchErrorBody)
	case st.DropConnection:
		drop(w)
	case viaStudio && st.Status >= 500:
		// UPSTREAM §12.3, §4.2: [ST] generate.ts hides any gateway status
		// >= 500 behind `Failed to generate ${type}`, type being the route
		// name, e.g. "Failed to generate text-to-image".
		writeBody(w, http.StatusInternalServerError, "application/json", StudioFailedBody(p.name))
	case s.goLP && p.name == LLM && st.Status == http.StatusBadRequest:
		// UPSTREAM §12.4: go-livepeer's LLM handler has no BadRequestError
		// branch, so the runner's 400 goes through respondJsonError as a
		// 500, whose message is replaced by "Internal Server Error"
		// (UPSTREAM §4.1).
		writeBody(w, http.StatusInternalServerError, "application/json", GatewayError("Internal Server Error"))
	case st.Events != nil:
		model, _ := rec.JSON["model"].(string)
		c := &completion{id: "chatcmpl-" + s.nextID() + s.nextID(), model: model, created: time.Now().Unix(), finish: "stop"}
		final := c.final()
		if st.Truncate || st.AbortStream || st.RunnerErrorMidStream != "" {
			final = ""
		}
		s.stream(w, r, st.Status, st.Events, final, st)
	default:
		status := st.Status
		if status == 0 {
			status = http.StatusOK
		}
		writeBody(w, status, st.contentType(), st.Body)
	}
}

func (s *Server) recordOnly(rec Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(rec)
}

func writeBody(w http.ResponseWriter, status int, ctype, body string) {
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func writeBytes(w http.ResponseWriter, status int, ctype string, body []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
