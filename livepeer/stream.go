package livepeer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"
)

// maxEventBytes caps one server-sent event; an LLM delta is a few hundred bytes.
const maxEventBytes = 1 << 20

// DefaultStreamIdleTimeout is the longest gap allowed between two events of a stream.
const DefaultStreamIdleTimeout = 60 * time.Second

var errStreamIdle = errors.New("stream idle")

// LLMStream reads a streamed completion event by event. It is not safe for concurrent
// use; Close must be called.
type LLMStream struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	release  context.CancelFunc
	resp     *http.Response
	r        *bufio.Reader
	idle     time.Duration
	timer    *time.Timer
	events   int
	done     bool
	buffered *LLMResponse // a whole JSON answer to a stream request (see below)
	key      APIKey       // scrubbed from error events
}

// LLMStream calls POST /llm with stream=true and returns once the gateway has answered
// with a 2xx; events are then read with Next. idle bounds the gap between events (0:
// DefaultStreamIdleTimeout). Before the first event only the call's deadline applies:
// the model may take long to start, and Livepeer Studio buffers the whole stream and
// sends it at the end (UPSTREAM.md §3.7).
func (c *Client) LLMStream(ctx context.Context, p *LLMRequest, idle time.Duration) (*LLMStream, error) {
	q := *p
	q.Stream = true
	b, err := jsonBody(&q)
	if err != nil {
		return nil, err
	}
	if idle <= 0 {
		idle = DefaultStreamIdleTimeout
	}
	sctx, cancel := context.WithCancelCause(ctx)
	resp, rctx, release, err := c.send(sctx, PipelineLLM, b, "text/event-stream")
	if err != nil {
		cancel(nil)
		return nil, err
	}
	s := &LLMStream{ctx: rctx, cancel: cancel, release: release, resp: resp, idle: idle, key: c.keys.Key()}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "text/event-stream":
		s.r = bufio.NewReaderSize(resp.Body, 4096)
	case "application/json":
		// A gateway that ignores stream=true (or buffers it) answers with one JSON
		// completion; deliver it as a single final event rather than failing.
		var out LLMResponse
		if err := c.decode(rctx, PipelineLLM, resp, &out); err != nil {
			s.Close()
			return nil, err
		}
		for i := range out.Choices {
			if out.Choices[i].Delta == nil {
				out.Choices[i].Delta = out.Choices[i].Message
			}
			out.Choices[i].Message = nil
			if out.Choices[i].FinishReason == "" {
				out.Choices[i].FinishReason = "stop"
			}
		}
		s.buffered = &out
	default:
		s.Close()
		return nil, &BadResponseError{Pipeline: PipelineLLM, Reason: "expected text/event-stream, got " + orNone(mt)}
	}
	return s, nil
}

func orNone(mt string) string {
	if mt == "" {
		return "no content type"
	}
	return mt
}

// Next returns the next event. It returns io.EOF after the final event (one whose
// finish_reason is set, or `data: [DONE]`), *StreamTruncatedError if the stream ends
// before that, *StreamEventError for an error event, *StreamIdleError when the gateway
// goes quiet for longer than the idle timeout, and the context's error when the call
// ends.
func (s *LLMStream) Next() (*LLMResponse, error) {
	if s.done {
		return nil, io.EOF
	}
	if s.buffered != nil {
		ev := s.buffered
		s.buffered, s.done = nil, true
		s.events++
		return ev, nil
	}
	if s.events > 0 && s.timer == nil {
		s.timer = time.AfterFunc(s.idle, func() { s.cancel(errStreamIdle) })
	} else if s.timer != nil {
		s.timer.Reset(s.idle)
	}
	ci := TraceFrom(s.ctx)
	for {
		start := time.Now()
		data, err := s.readEvent()
		ci.addUpstream(time.Since(start))
		if err != nil {
			s.done = true
			return nil, s.readError(err)
		}
		if data == nil {
			continue // comment or event without data
		}
		if bytes.Equal(data, []byte("[DONE]")) {
			s.done = true
			return nil, io.EOF
		}
		var ev struct {
			LLMResponse
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			s.done = true
			return nil, &BadResponseError{Pipeline: PipelineLLM, Reason: "event is not JSON: " + newKeyRedactor(s.key).text(Sanitize(err.Error()))}
		}
		if len(ev.Error) > 0 && string(ev.Error) != "null" {
			s.done = true
			msg, _ := parseErrorBody(append(append([]byte(`{"error":`), ev.Error...), '}'), s.key)
			return nil, &StreamEventError{Pipeline: PipelineLLM, Message: msg}
		}
		s.events++
		out := ev.LLMResponse
		for _, c := range out.Choices {
			if c.FinishReason != "" {
				// The go-livepeer gateway stops after this event and never sends [DONE].
				s.done = true
			}
		}
		if s.timer != nil {
			s.timer.Stop()
		}
		return &out, nil
	}
}

func (s *LLMStream) readError(err error) error {
	if cause := context.Cause(s.ctx); cause != nil {
		switch {
		case errors.Is(cause, errStreamIdle):
			return &StreamIdleError{Pipeline: PipelineLLM, Idle: s.idle}
		}
		return ctxCause(s.ctx, PipelineLLM)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &StreamTruncatedError{Pipeline: PipelineLLM, Events: s.events}
	}
	var tooLong *eventTooLongError
	if errors.As(err, &tooLong) {
		return &BadResponseError{Pipeline: PipelineLLM, Reason: "event larger than 1 MiB"}
	}
	// A reset mid-stream: the stream started, so it cannot be retried; report it as
	// truncated.
	return &StreamTruncatedError{Pipeline: PipelineLLM, Events: s.events}
}

type eventTooLongError struct{}

func (*eventTooLongError) Error() string { return "event too long" }

// readEvent reads one event and returns its data (data lines joined by "\n"), or nil
// for an event without data. Other fields (event, id, retry) are ignored.
func (s *LLMStream) readEvent() ([]byte, error) {
	var data []byte
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if hasData {
				return data, nil
			}
			return nil, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		if string(field) == "data" {
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
			if len(data) > maxEventBytes {
				return nil, &eventTooLongError{}
			}
		}
	}
}

func (s *LLMStream) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := s.r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxEventBytes {
			return nil, &eventTooLongError{}
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// Close ends the stream and the upstream request, closing the connection at once if
// the gateway is still sending.
func (s *LLMStream) Close() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.cancel(context.Canceled)
	s.resp.Body.Close()
	s.release()
}
