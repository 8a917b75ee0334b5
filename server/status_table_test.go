package server

import (
	"errors"
	"strings"
	"testing"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"genservice/livepeer"
)

// TestUpstreamRows checks the error table as data: every kind of upstream failure the
// client can classify has a row with a non-OK code, a reason and a sentence.
func TestUpstreamRows(t *testing.T) {
	for _, k := range livepeer.Kinds() {
		row, ok := upstreamRows[k]
		if !ok {
			t.Errorf("livepeer kind %d has no row in upstreamRows", k)
			continue
		}
		if row.code == codes.OK || row.reason == 0 {
			t.Errorf("kind %d: code %v, reason %v", k, row.code, row.reason)
		}
		f := facts{kind: k, pipeline: livepeer.PipelineLLM, httpStatus: 500, message: "m", said: ": m", detail: "d",
			violations: []livepeer.Violation{{Field: "f", Message: "d"}},
			meta:       map[string]string{"idleTimeout": "1s", "maxMediaBytes": "1"}}
		msg := row.message(f)
		if msg == "" || strings.HasSuffix(msg, ".") || strings.ContainsAny(msg, "\n\t") {
			t.Errorf("kind %d: message %q is not one sentence without a final period", k, msg)
		}
	}
	if len(upstreamRows) != len(livepeer.Kinds()) {
		t.Errorf("upstreamRows has %d rows for %d kinds", len(upstreamRows), len(livepeer.Kinds()))
	}
}

// TestUpstreamMapping maps one error of each shape through Upstream, without sockets.
func TestUpstreamMapping(t *testing.T) {
	e := Errors{Domain: "test"}
	cases := []struct {
		err    error
		code   codes.Code
		reason string
	}{
		{livepeer.NewStatusError("text-to-image", 401, "", nil), codes.Unauthenticated, "UPSTREAM_API_KEY_REJECTED"},
		{livepeer.NewStatusError("text-to-image", 403, "Your account is suspended", nil), codes.PermissionDenied, "UPSTREAM_API_KEY_FORBIDDEN"},
		{livepeer.NewStatusError("image-to-image", 422, "must be string", nil), codes.InvalidArgument, "UPSTREAM_INVALID_ARGUMENT"},
		{livepeer.NewStatusError("llm", 422, "Expected multipart/form-data content-type", nil), codes.Unimplemented, "UPSTREAM_PIPELINE_UNSUPPORTED"},
		{livepeer.NewStatusError("image-to-text", 404, "", nil), codes.Unimplemented, "UPSTREAM_PIPELINE_UNSUPPORTED"},
		{livepeer.NewStatusError("text-to-image", 429, "Too many AI requests", nil), codes.ResourceExhausted, "UPSTREAM_RATE_LIMITED"},
		{livepeer.NewStatusError("text-to-image", 503, "", nil), codes.Unavailable, "UPSTREAM_UNAVAILABLE"},
		{livepeer.NewStatusError("text-to-image", 500, "Failed to generate image", nil), codes.Unavailable, "UPSTREAM_UNAVAILABLE"},
		{livepeer.NewStatusError("text-to-image", 500, "Internal server error: FetchError", nil), codes.Unavailable, "UPSTREAM_UNAVAILABLE"},
		{livepeer.NewStatusError("text-to-image", 500, "boom", nil), codes.Internal, "UPSTREAM_INTERNAL_ERROR"},
		{livepeer.NewStatusError("text-to-image", 504, "", nil), codes.Unavailable, "UPSTREAM_TIMEOUT"},
		{livepeer.NewStatusError("text-to-image", 409, "", nil), codes.FailedPrecondition, "UPSTREAM_REJECTED"},
		{&livepeer.TransportError{Pipeline: "llm", AfterRequest: true, Err: errTest}, codes.Unavailable, "UPSTREAM_CONNECTION_DROPPED"},
		{&livepeer.TransportError{Pipeline: "llm", Err: errTest}, codes.Unavailable, "UPSTREAM_UNREACHABLE"},
		{&livepeer.TransportError{Pipeline: "llm", Timeout: true, Err: errTest}, codes.Unavailable, "UPSTREAM_TIMEOUT"},
		{&livepeer.StreamTruncatedError{Pipeline: "llm", Events: 2}, codes.Unavailable, "UPSTREAM_STREAM_TRUNCATED"},
		{&livepeer.MediaTooLargeError{Limit: 10}, codes.ResourceExhausted, "MEDIA_TOO_LARGE"},
		{&livepeer.InvalidParamError{Field: "x", Reason: "NaN"}, codes.InvalidArgument, "INVALID_REQUEST"},
		{errTest, codes.Internal, "INTERNAL_ERROR"},
	}
	for _, tc := range cases {
		st := statusOf(e.Upstream(tc.err, "rid"))
		if st.Code() != tc.code || reasonOf(st) != tc.reason {
			t.Errorf("%v: got %v/%s, want %v/%s (%q)", tc.err, st.Code(), reasonOf(st), tc.code, tc.reason, st.Message())
		}
	}
}

var errTest = errors.New("test failure")

func statusOf(err error) *status.Status { return status.Convert(err) }

// Studio answers 403 for several reasons (UPSTREAM §12.5): the status carries Studio's own
// words and the operator's checklist, and does not claim one cause.
func TestUpstreamForbiddenDoesNotGuess(t *testing.T) {
	st := statusOf(Errors{Domain: "test"}.Upstream(livepeer.NewStatusError("text-to-image", 403, "Your account is suspended", nil), "rid"))
	if !strings.Contains(st.Message(), "Your account is suspended") {
		t.Errorf("message %q does not carry the upstream text", st.Message())
	}
	if strings.Contains(st.Message(), "CORS") {
		t.Errorf("message %q asserts the CORS case", st.Message())
	}
	var help string
	for _, d := range st.Details() {
		if h, ok := d.(*errdetails.Help); ok {
			for _, l := range h.GetLinks() {
				help += l.GetDescription()
			}
		}
	}
	for _, want := range []string{"CORS", "suspended", "e-mail", "origins"} {
		if !strings.Contains(help, want) {
			t.Errorf("Help %q lacks %q from the checklist", help, want)
		}
	}
}
