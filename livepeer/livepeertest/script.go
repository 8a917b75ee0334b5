package livepeertest

import (
	"bytes"
	"context"
	"net/http"
	"time"
)

// Step is a one-shot behaviour for one request, queued with Server.Script.
// Its parts apply in this order: Header, Delay, DropConnection, Events,
// Status/Body; a Step that sets none of the last three (e.g. only a Delay,
// only EventInterval, NoOrchestrator or RunnerErrorMidStream) continues
// with normal behaviour, validation included.
//
// A step describes the gateway. In Studio mode Studio's handling of the
// gateway's answer applies on top (see Config.Studio) unless StudioOwn.
type Step struct {
	// Status, if non-zero, is sent with Body instead of the normal answer.
	Status int
	// Body is the raw body sent with Status. A Body with Status 0 is sent
	// with 200, which fakes a "successful" garbage answer.
	Body string
	// ContentType defaults to application/json when Body looks like JSON,
	// else text/plain; an empty Body gets none.
	ContentType string
	// Header holds extra response headers (e.g. Retry-After); they apply to
	// whatever answer the request gets, normal or scripted.
	Header http.Header
	// Delay waits before answering. The wait ends early if the client goes
	// away (counted by Disconnects) or the server is closed.
	Delay time.Duration
	// DropConnection hijacks and closes the TCP connection without any
	// response. The request body has been read by then (the simulator
	// reads and records it before taking the step) but not validated, so
	// it drops invalid requests too. In Studio mode it is the gateway
	// dropping Studio's fetch: 500 StudioFetchErrorBody.
	DropConnection bool
	// NoOrchestrator is go-livepeer finding no orchestrator for the model
	// (UPSTREAM §12.2): the request is read and validated as usual (an
	// invalid one gets its normal 4xx, as the gateway decodes before
	// choosing an orchestrator), then a valid one has its connection
	// closed without any response — the panic net/http recovers from. In
	// Studio mode that failed fetch is 500 StudioFetchErrorBody instead.
	NoOrchestrator bool
	// StudioOwn, in Studio mode, makes the step Studio's own answer (its
	// 500 "AI Gateway URL is not set", a dropped client connection, an
	// unbuffered stream) rather than the gateway's, so Studio's rewriting
	// does not apply. Studio's 429 and other 4xx need no StudioOwn: Studio
	// passes 4xx through unchanged. Ignored outside Studio mode.
	StudioOwn bool

	// Events, if non-nil, answers with a text/event-stream (status 200, or
	// Status if set): each event is sent as "data: <event>\n\n" and flushed
	// on its own, EventInterval apart, followed by a final chunk whose
	// finish_reason is "stop" unless Truncate.
	//
	// Without Events, EventInterval and Truncate shape the normal stream of
	// an llm request with "stream": true.
	Events        []string
	EventInterval time.Duration
	// Truncate ends the stream after Events without the final
	// finish_reason chunk; the response itself ends cleanly.
	Truncate bool
	// AbortStream closes the TCP connection after the last event sent
	// (implies Truncate), so the client reads an unexpected EOF instead of
	// a clean end of the chunked response.
	AbortStream bool
	// RunnerErrorMidStream is the text of a runner error event
	// (data: {"error": ...}) sent mid-stream. go-livepeer never forwards it
	// (UPSTREAM §12.4): the client gets the events before it, then a clean
	// end of the body without a finish_reason chunk and without [DONE] —
	// no error event, no connection error; the text itself never reaches
	// the client. With Events, those are the events before the error; without,
	// it applies to an llm request with "stream": true and the events
	// before the error are the first RunnerErrorAfter chunks of the normal
	// stream (0: none, the body ends right after the headers). A request
	// that does not stream is answered normally.
	RunnerErrorMidStream string
	RunnerErrorAfter     int
}

type scripted struct {
	pipeline string // "" = any
	step     Step
}

// Script queues one-shot behaviours for the next requests to pipeline
// ("" = any pipeline), first in first out; each authenticated request takes
// the oldest step queued for its pipeline or for "". When none is queued the
// request gets normal behaviour. It panics on an unknown pipeline name,
// which would otherwise silently never match.
func (s *Server) Script(pipeline string, steps ...Step) {
	if pipeline != "" && !knownPipeline(pipeline) {
		panic("livepeertest: Script: unknown pipeline " + pipeline)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range steps {
		s.script = append(s.script, scripted{pipeline, st})
	}
}

// Pending returns how many scripted steps have not been used yet.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.script)
}

// popStepLocked removes and returns the oldest step for pipeline.
func (s *Server) popStepLocked(pipeline string) (Step, bool) {
	for i, sc := range s.script {
		if sc.pipeline == "" || sc.pipeline == pipeline {
			s.script = append(s.script[:i], s.script[i+1:]...)
			return sc.step, true
		}
	}
	return Step{}, false
}

// overrides reports whether the step replaces the normal answer.
func (st *Step) overrides() bool {
	return st.DropConnection || st.Events != nil || st.Status != 0 || st.Body != ""
}

func (st *Step) contentType() string {
	if st.ContentType != "" {
		return st.ContentType
	}
	b := bytes.TrimSpace([]byte(st.Body))
	switch {
	case len(b) == 0:
		return ""
	case b[0] == '{' || b[0] == '[':
		return "application/json"
	default:
		return "text/plain; charset=utf-8"
	}
}

// wait sleeps for d. It returns errDisconnected if the client went away
// and context.Canceled if the server is closing.
func (s *Server) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.done:
		return context.Canceled
	case <-ctx.Done():
		return errDisconnected
	}
}

// drop closes the connection without answering.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): abort the stream instead; net/http
		// resets it.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
