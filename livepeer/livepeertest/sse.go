package livepeertest

import (
	"bytes"
	"errors"
	"net/http"
)

// stream writes an LLM event stream the way the go-livepeer gateway relays
// it (UPSTREAM.md §3.7): text/event-stream, one "data: <json>\n\n" per
// chunk, each flushed, then final (unless empty) and no "data: [DONE]"
// after it.
//
// In Studio mode (unless st.StudioOwn) Studio reads the gateway's whole
// body with buffer() before answering (UPSTREAM §3.7), so the client gets
// the complete stream at once, with only the content-* headers forwarded;
// an AbortStream there makes buffer() fail, which is Studio's 500
// StudioFetchErrorBody (UPSTREAM §12.3).
func (s *Server) stream(w http.ResponseWriter, r *http.Request, status int, events []string, final string, st *Step) {
	if status == 0 {
		status = http.StatusOK
	}
	if final != "" {
		events = append(events[:len(events):len(events)], final)
	}
	if s.studio && !st.StudioOwn {
		s.bufferedStream(w, r, status, events, st)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		s.noteDisconnect()
		return
	}
	buf := make([]byte, 0, 512)
	for i, ev := range events {
		if i > 0 {
			if err := s.wait(r.Context(), st.EventInterval); err != nil {
				if errors.Is(err, errDisconnected) {
					s.noteDisconnect()
				} else {
					drop(w) // closing: cut the stream mid-way
				}
				return
			}
		}
		buf = append(append(append(buf[:0], "data: "...), ev...), "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			s.noteDisconnect()
			return
		}
		if err := rc.Flush(); err != nil {
			s.noteDisconnect()
			return
		}
	}
	if st.AbortStream {
		drop(w)
	}
}

// bufferedStream is Studio relaying a gateway stream: paced like the
// gateway's, delivered whole.
func (s *Server) bufferedStream(w http.ResponseWriter, r *http.Request, status int, events []string, st *Step) {
	var buf bytes.Buffer
	for i, ev := range events {
		if i > 0 {
			if err := s.wait(r.Context(), st.EventInterval); err != nil {
				if errors.Is(err, errDisconnected) {
					s.noteDisconnect()
				} else {
					drop(w)
				}
				return
			}
		}
		buf.WriteString("data: ")
		buf.WriteString(ev)
		buf.WriteString("\n\n")
	}
	if st.AbortStream {
		writeBody(w, http.StatusInternalServerError, "application/json", StudioFetchErrorBody)
		return
	}
	writeBytes(w, status, "text/event-stream", buf.Bytes())
}
