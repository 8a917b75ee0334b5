package livepeertest

import (
	"errors"
	"net/http"
)

// stream writes an LLM event stream the way the go-livepeer gateway relays
// it (UPSTREAM.md §3.7): text/event-stream, one "data: <json>\n\n" per
// chunk, each flushed, and no "data: [DONE]" after the finish_reason chunk.
// final is omitted when st.Truncate or st.AbortStream.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, status int, events []string, final string, st *Step) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		s.noteDisconnect()
		return
	}
	if !st.Truncate && !st.AbortStream {
		events = append(events[:len(events):len(events)], final)
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
