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
// or only EventInterval) continues with normal behaviour.
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
	// response.
	DropConnection bool

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
