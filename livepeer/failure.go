package livepeer

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file is every way an upstream call can fail, classified once. Each error type
// says its Kind; the client's retry loop and genservice's gRPC status table both read
// the Kind, so a quirk of the upstream (UPSTREAM.md §12) is recognised here and nowhere
// else.

// Kind is what happened upstream, in the words an operator or a caller acts on.
type Kind int

// The kinds of upstream failure. The comments say which answers make each one.
const (
	KindUnknown Kind = iota
	// KindKeyRejected: 401, the backend key is not valid.
	KindKeyRejected
	// KindKeyForbidden: 403, the key may not do this (a CORS-enabled key, a suspended
	// account, an unverified e-mail, a disallowed origin; UPSTREAM §12.5).
	KindKeyForbidden
	// KindInvalidArgument: 400, 413, 415, 422: the gateway refused the request's content.
	KindInvalidArgument
	// KindPipelineUnsupported: 404 on the pipeline's path, or Studio's llm endpoint that
	// only takes its old multipart form (422 "Expected multipart/form-data").
	KindPipelineUnsupported
	// KindRateLimited: 429.
	KindRateLimited
	// KindUnavailable: 502, 503: the gateway is busy or has no capacity now; nothing was
	// generated. Retried.
	KindUnavailable
	// KindGenerationUnavailable: Studio's 500 "Failed to generate …" (the gateway behind
	// it answered 5xx) or "Internal server error: FetchError" (Studio could not reach the
	// gateway) (UPSTREAM §12.3). Nothing was generated, but Studio counted the request
	// against the account's rate limit and does not say whether the gateway was busy or
	// broken, so genservice does not retry it: the caller decides, with RetryInfo.
	KindGenerationUnavailable
	// KindTimeout: 504, 408, or genservice's own per-pipeline timeout.
	KindTimeout
	// KindUnreachable: DNS, connect, TLS or write failure: the request never reached the
	// gateway whole.
	KindUnreachable
	// KindConnectionDropped: the gateway read the whole request and closed the connection
	// without answering. Current go-livepeer does this when no orchestrator serves the
	// model (a server-side panic; UPSTREAM §12.2). Not retried: the same request meets
	// the same missing orchestrator at once, and on another gateway a drop after the
	// request may mean the generation ran.
	KindConnectionDropped
	// KindInternal: 500 and other 5xx. Not retried: the generation may have run.
	KindInternal
	// KindRejected: any other non-2xx (other 4xx, 3xx).
	KindRejected
	// KindBadResponse: a 2xx that is empty, not JSON, the wrong shape or too large.
	KindBadResponse
	// KindStreamTruncated: an event stream ended before its final event. Through
	// go-livepeer this is also how a runner error in the middle of a stream arrives: the
	// gateway drops the error event and ends the stream (UPSTREAM §12.4).
	KindStreamTruncated
	// KindStreamError: an error event inside the stream.
	KindStreamError
	// KindStreamIdle: no event within the idle timeout.
	KindStreamIdle
	// KindMediaRefused, KindMediaTooLarge, KindMediaFetchFailed: inline media.
	KindMediaRefused
	KindMediaTooLarge
	KindMediaFetchFailed
	// KindInvalidParam: a value genservice will not send (nothing was sent).
	KindInvalidParam
)

// Kinds lists every kind but KindUnknown, for tables that must cover them all.
func Kinds() []Kind {
	out := make([]Kind, 0, int(KindInvalidParam))
	for k := KindKeyRejected; k <= KindInvalidParam; k++ {
		out = append(out, k)
	}
	return out
}

// KindOf returns the kind of an error from this package (KindUnknown for others).
func KindOf(err error) Kind {
	var k interface{ Kind() Kind }
	if errors.As(err, &k) {
		return k.Kind()
	}
	return KindUnknown
}

// classifyStatus is the one place an HTTP status and the gateway's words become a Kind.
func classifyStatus(pipeline string, code int, message string) Kind {
	switch {
	case code == http.StatusUnauthorized:
		return KindKeyRejected
	case code == http.StatusForbidden:
		return KindKeyForbidden
	case code == http.StatusUnprocessableEntity && pipeline == PipelineLLM && strings.Contains(message, "multipart/form-data"):
		// Livepeer Studio still serves llm with its 2024 multipart schema (UPSTREAM §3.7):
		// the configured gateway does not serve the API genservice speaks.
		return KindPipelineUnsupported
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge ||
		code == http.StatusUnsupportedMediaType || code == http.StatusUnprocessableEntity:
		return KindInvalidArgument
	case code == http.StatusNotFound:
		return KindPipelineUnsupported
	case code == http.StatusTooManyRequests:
		return KindRateLimited
	case code == http.StatusBadGateway || code == http.StatusServiceUnavailable:
		return KindUnavailable
	case code == http.StatusGatewayTimeout || code == http.StatusRequestTimeout:
		return KindTimeout
	case code == http.StatusInternalServerError && studioCollapsed(message):
		return KindGenerationUnavailable
	case code >= 500:
		return KindInternal
	}
	return KindRejected
}

// studioCollapsed recognises the texts Studio puts in place of a gateway failure
// (UPSTREAM §12.3): "Failed to generate <type>" for a gateway 5xx, "Internal server
// error: <error name>" for a fetch exception (FetchError, or the abort of its 10-minute
// timeout).
func studioCollapsed(message string) bool {
	if strings.HasPrefix(message, "Failed to generate ") {
		return true
	}
	name, ok := strings.CutPrefix(message, "Internal server error: ")
	return ok && (name == "FetchError" || name == "AbortError" || name == "TimeoutError")
}

// retryable reports whether a failed attempt is worth another: the gateway said it is
// busy (502, 503) or timed out at its edge (504) before generating anything, or asked
// to be called again after Retry-After (429). Everything else is final: a 500 may have
// run a paid generation.
func (e *StatusError) retryable() bool {
	switch e.kind {
	case KindUnavailable:
		return true
	case KindTimeout:
		return e.StatusCode == http.StatusGatewayTimeout
	case KindRateLimited:
		return e.HasRetryAfter
	}
	return false
}

// StatusError is a non-2xx answer from the gateway.
type StatusError struct {
	Pipeline   string
	StatusCode int
	// Message is the upstream's own explanation, sanitized and truncated; may be empty.
	Message string
	// Violations lists field errors the gateway reported (422 bodies, Studio validation).
	Violations []Violation
	// RetryAfter is the delay the gateway asked for, if it sent Retry-After.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// KeyFingerprint identifies the key the request carried (never the key itself).
	KeyFingerprint string

	kind Kind
}

// NewStatusError classifies a non-2xx answer.
func NewStatusError(pipeline string, code int, message string, violations []Violation) *StatusError {
	return &StatusError{Pipeline: pipeline, StatusCode: code, Message: message, Violations: violations, kind: classifyStatus(pipeline, code, message)}
}

// Kind says what the answer means (classifyStatus).
func (e *StatusError) Kind() Kind { return e.kind }

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("gateway answered %s to %s", statusText(e.StatusCode), e.Pipeline)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// Violation is one field error reported by the gateway.
type Violation struct {
	// Field is a dotted path such as "body.prompt", or "" when the gateway did not say.
	Field   string
	Message string
}

// TransportError means the request did not get an HTTP response: DNS, connect, TLS,
// reset, or a per-attempt timeout.
type TransportError struct {
	Pipeline string
	// Timeout is true when genservice's own per-attempt timeout expired.
	Timeout bool
	// AfterRequest is true when the whole request had been written: the gateway closed
	// the connection instead of answering (UPSTREAM §12.2).
	AfterRequest bool
	// Err is the transport's error. Its text may quote what the gateway sent; print the
	// TransportError, which redacts the key, rather than Err.
	Err error

	redactor keyRedactor
}

// Kind is KindTimeout, KindConnectionDropped or KindUnreachable.
func (e *TransportError) Kind() Kind {
	switch {
	case e.Timeout:
		return KindTimeout
	case e.AfterRequest:
		return KindConnectionDropped
	}
	return KindUnreachable
}

func (e *TransportError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("gateway did not answer %s in time", e.Pipeline)
	}
	if e.AfterRequest {
		return fmt.Sprintf("the gateway closed the connection after receiving the %s request, without answering: %s", e.Pipeline, e.detail())
	}
	return fmt.Sprintf("could not reach the gateway for %s: %s", e.Pipeline, e.detail())
}

// detail is Err's text, sanitized, capped (a malformed header line that net/http quotes
// can be megabytes long) and with the key redacted.
func (e *TransportError) detail() string {
	return e.redactor.redact(truncateTo(Sanitize(e.Err.Error()), maxTransportDetail))
}

// maxTransportDetail caps TransportError's quote of the transport's error: room for a
// long gateway URL and the reason, not for what a broken gateway sent.
const maxTransportDetail = 1 << 10

func (e *TransportError) Unwrap() error { return e.Err }

// BadResponseError is a 2xx answer that cannot be used: empty, not JSON, the wrong
// shape or too large.
type BadResponseError struct {
	Pipeline string
	Reason   string
}

func (e *BadResponseError) Error() string {
	return fmt.Sprintf("gateway sent an unusable %s response: %s", e.Pipeline, e.Reason)
}

// StreamTruncatedError means an event stream ended before its final event.
type StreamTruncatedError struct {
	Pipeline string
	Events   int
}

func (e *StreamTruncatedError) Error() string {
	return fmt.Sprintf("gateway closed the %s stream after %d events without a final event", e.Pipeline, e.Events)
}

// Kind is KindBadResponse.
func (e *BadResponseError) Kind() Kind { return KindBadResponse }

// Kind is KindStreamTruncated.
func (e *StreamTruncatedError) Kind() Kind { return KindStreamTruncated }

// MediaRefusedError means a result URL is not on an allowed host.
type MediaRefusedError struct {
	Host   string
	Reason string
}

func (e *MediaRefusedError) Error() string {
	return fmt.Sprintf("refused to fetch media from %q: %s", e.Host, e.Reason)
}

// MediaTooLargeError means a result exceeds the size cap.
type MediaTooLargeError struct{ Limit int64 }

func (e *MediaTooLargeError) Error() string {
	return fmt.Sprintf("media larger than the %d-byte cap", e.Limit)
}

// MediaFetchError means fetching a result failed (transport error or non-2xx).
type MediaFetchError struct {
	Status int
	Err    error
}

func (e *MediaFetchError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("media server answered %s", statusText(e.Status))
	}
	return "fetching media failed: " + Sanitize(e.Err.Error())
}

func (e *MediaFetchError) Unwrap() error { return e.Err }

// StreamEventError is an error event inside an event stream (`data: {"error": ...}`),
// which the runner sends when generation fails after the stream started.
type StreamEventError struct {
	Pipeline string
	Message  string
}

func (e *StreamEventError) Error() string {
	return "gateway reported an error in the " + e.Pipeline + " stream: " + e.Message
}

// StreamIdleError means the gap between two events exceeded the idle timeout.
type StreamIdleError struct {
	Pipeline string
	Idle     time.Duration
}

func (e *StreamIdleError) Error() string {
	return "gateway sent no " + e.Pipeline + " event for " + e.Idle.String()
}

// InvalidParamError means a parameter cannot be sent to the gateway as given: a number
// that is NaN or infinite (JSON has no such numbers, and a multipart field would carry
// the text "NaN"), or a file's content type or name that would break out of its
// multipart part header. Nothing is sent.
type InvalidParamError struct {
	Field  string // the parameter's name, e.g. "guidance_scale" or "image.content_type"; may be empty
	Reason string
}

func (e *InvalidParamError) Error() string {
	if e.Field == "" {
		return "invalid parameter: " + e.Reason
	}
	return "invalid parameter " + e.Field + ": " + e.Reason
}

// Kind is KindMediaRefused.
func (e *MediaRefusedError) Kind() Kind { return KindMediaRefused }

// Kind is KindMediaTooLarge.
func (e *MediaTooLargeError) Kind() Kind { return KindMediaTooLarge }

// Kind is KindMediaFetchFailed.
func (e *MediaFetchError) Kind() Kind { return KindMediaFetchFailed }

// Kind is KindStreamError.
func (e *StreamEventError) Kind() Kind { return KindStreamError }

// Kind is KindStreamIdle.
func (e *StreamIdleError) Kind() Kind { return KindStreamIdle }

// Kind is KindInvalidParam.
func (e *InvalidParamError) Kind() Kind { return KindInvalidParam }
