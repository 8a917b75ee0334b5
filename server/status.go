package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"genservice/authz"
	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
)

// This file is the error table of DESIGN §7: the one place where outcomes become gRPC
// statuses. Every non-OK status carries ErrorInfo with the service's domain.

// DefaultErrorDomain is ErrorInfo.domain unless configured otherwise.
const DefaultErrorDomain = "genservice"

// Errors builds statuses for one error domain.
type Errors struct {
	Domain string
}

// reasonName is the ErrorReason value's name without the enum prefix, as carried in
// ErrorInfo.reason.
func reasonName(r generationv1.ErrorReason) string {
	return strings.TrimPrefix(r.String(), "ERROR_REASON_")
}

// New returns a status error with ErrorInfo and any extra details. Empty metadata
// values are dropped.
func (e Errors) New(code codes.Code, reason generationv1.ErrorReason, msg string, meta map[string]string, details ...protoadapt.MessageV1) error {
	for k, v := range meta {
		if v == "" {
			delete(meta, k)
		}
	}
	st := status.New(code, msg)
	all := make([]protoadapt.MessageV1, 0, 1+len(details))
	all = append(all, &errdetails.ErrorInfo{Reason: reasonName(reason), Domain: e.Domain, Metadata: meta})
	all = append(all, details...)
	if withDetails, err := st.WithDetails(all...); err == nil {
		st = withDetails
	}
	return st.Err()
}

// ClientCertificateRequired is the status for a caller without a client certificate.
func (e Errors) ClientCertificateRequired(method string) error {
	return e.New(codes.Unauthenticated, generationv1.ErrorReason_ERROR_REASON_CLIENT_CERTIFICATE_REQUIRED,
		"a client certificate is required: connect with a certificate issued by the CA genservice trusts",
		map[string]string{"method": method})
}

// MeshIdentityRequired is the status for a call in mesh mode whose sidecar header
// carries no identity: the sidecar is not enforcing mTLS for this port.
func (e Errors) MeshIdentityRequired(method, mesh string) error {
	header := "x-forwarded-client-cert"
	if mesh == "linkerd" {
		header = "l5d-client-id"
	}
	return e.New(codes.Unauthenticated, generationv1.ErrorReason_ERROR_REASON_CLIENT_CERTIFICATE_REQUIRED,
		"no caller identity: the "+mesh+" sidecar sent no "+header+" header; the mesh must require mTLS for genservice's port",
		map[string]string{"method": method, "mesh": mesh})
}

// Unidentified is the status for a caller without a usable identity: err is
// errNoIdentity or an *IdentityError from identify.
func (e Errors) Unidentified(err error, method, mesh string) error {
	var ie *IdentityError
	if errors.As(err, &ie) {
		return e.New(codes.Unauthenticated, generationv1.ErrorReason_ERROR_REASON_CLIENT_CERTIFICATE_REQUIRED,
			"the caller's identity is not usable: "+ie.Problem,
			map[string]string{"method": method, "problem": ie.Problem})
	}
	if mesh != MeshNone {
		return e.MeshIdentityRequired(method, mesh)
	}
	return e.ClientCertificateRequired(method)
}

// Denied is the status for a call the authorization policy refuses.
func (e Errors) Denied(d *authz.Denial, principal, method string) error {
	meta := map[string]string{"principal": principal, "method": method}
	switch d.Kind {
	case authz.RateLimited:
		meta["limit"] = "rate"
		return e.New(codes.ResourceExhausted, generationv1.ErrorReason_ERROR_REASON_CALLER_RATE_LIMITED,
			fmt.Sprintf("%s is over its rate limit of %g requests per second (burst %d); retry after the delay in RetryInfo", principal, d.Limits.Rate, d.Limits.Burst),
			meta,
			&errdetails.RetryInfo{RetryDelay: durationpb.New(d.RetryAfter)},
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
				Subject:     "principal:" + principal,
				Description: fmt.Sprintf("rate limit %g requests per second, burst %d", d.Limits.Rate, d.Limits.Burst),
			}}})
	case authz.TooManyInFlight:
		meta["limit"] = "maxInFlight"
		return e.New(codes.ResourceExhausted, generationv1.ErrorReason_ERROR_REASON_CALLER_RATE_LIMITED,
			fmt.Sprintf("%s already has %d calls in flight, its limit; retry when one finishes", principal, d.Limits.MaxInFlight),
			meta,
			&errdetails.RetryInfo{RetryDelay: durationpb.New(d.RetryAfter)},
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
				Subject:     "principal:" + principal,
				Description: fmt.Sprintf("at most %d concurrent calls", d.Limits.MaxInFlight),
			}}})
	}
	return e.New(codes.PermissionDenied, generationv1.ErrorReason_ERROR_REASON_CALLER_NOT_AUTHORIZED,
		fmt.Sprintf("%s is not allowed to call %s by genservice's authorization policy", principal, method), meta)
}

// Overloaded is the status when the global cap on in-flight upstream calls is reached.
func (e Errors) Overloaded(limit int) error {
	return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_OVERLOADED,
		"genservice is at its limit of concurrent upstream calls; retry shortly, ideally on another replica",
		map[string]string{"maxInFlight": strconv.Itoa(limit)},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
}

// ShuttingDown is the status for calls arriving while the server drains.
func (e Errors) ShuttingDown() error {
	return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_SHUTTING_DOWN,
		"genservice is shutting down; retry on another replica", nil)
}

// ShutdownCut is the status for a call still running when the shutdown grace ended.
func (e Errors) ShutdownCut() error {
	return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_SHUTTING_DOWN,
		"genservice shut down before this call finished (its shutdown grace period ended); retry on another replica",
		map[string]string{"cut": "true"})
}

// Undecodable is the status for a request message that does not decode. The decoder's
// words say what is wrong (for example a string field with invalid UTF-8); they come
// from the protobuf library, not from the caller's bytes.
func (e Errors) Undecodable(err error) error {
	msg := livepeer.Sanitize(err.Error())
	return e.New(codes.InvalidArgument, generationv1.ErrorReason_ERROR_REASON_INVALID_REQUEST,
		"invalid request: "+msg+"; send a message encoded by a protobuf library from genservice's .proto files",
		nil, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "", Description: msg}}})
}

// ResponseTooLarge is the status for a response larger than the send limit.
func (e Errors) ResponseTooLarge(size, limit int) error {
	return e.New(codes.ResourceExhausted, generationv1.ErrorReason_ERROR_REASON_RESPONSE_TOO_LARGE,
		fmt.Sprintf("the response is %d bytes, more than genservice's send limit of %d bytes", size, limit),
		map[string]string{"responseBytes": strconv.Itoa(size), "maxSendBytes": strconv.Itoa(limit)})
}

// CallerNotReading is the status of a stream whose caller did not take a message
// within the send timeout. The caller is not reading, so this is mostly for the log.
func (e Errors) CallerNotReading(timeout time.Duration) error {
	return e.New(codes.ResourceExhausted, generationv1.ErrorReason_ERROR_REASON_CALLER_NOT_READING,
		fmt.Sprintf("the caller did not read the stream for %s; genservice ended the call", timeout),
		map[string]string{"sendTimeout": timeout.String()})
}

// Internal is the status for a panic or other unexpected failure. It says nothing about
// the cause; the log has it under the request id.
func (e Errors) Internal(requestID string) error {
	return e.New(codes.Internal, generationv1.ErrorReason_ERROR_REASON_INTERNAL_ERROR,
		"internal error in genservice; operators can find it in the log by request id",
		map[string]string{"requestId": requestID})
}

// InlineMediaTooLarge is the status when inline_media results do not fit in one
// response message of maxResponse bytes: result index failedAt (of results) would not
// fit, and nothing after it was fetched. It is
// RESOURCE_EXHAUSTED like the per-file cap and like grpc's own refusal of an oversized
// message, so callers handle one code for "too big to inline"; the remedy is the same.
func (e Errors) InlineMediaTooLarge(maxResponse int, maxMedia int64, results, failedAt int) error {
	return e.New(codes.ResourceExhausted, generationv1.ErrorReason_ERROR_REASON_MEDIA_TOO_LARGE,
		fmt.Sprintf("inline_media: the results do not fit in one response: genservice sends at most %d bytes per message and result %d of %d would go past that; call without inline_media and fetch the URLs, or ask for fewer results; to receive responses that large, a client's receive limit must allow %d bytes too (gRPC's default is 4 MiB)",
			maxResponse, failedAt+1, results, maxResponse),
		map[string]string{
			"maxResponseBytes": strconv.Itoa(maxResponse),
			"maxMediaBytes":    strconv.FormatInt(maxMedia, 10),
			"results":          strconv.Itoa(results),
		})
}

// FieldViolation is one invalid request field.
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidRequest is the status for a request that fails genservice's own validation.
func (e Errors) InvalidRequest(violations []FieldViolation) error {
	var b strings.Builder
	b.WriteString("invalid request: ")
	for i, v := range violations {
		if i > 0 {
			b.WriteString("; ")
		}
		if b.Len() > 300 {
			b.WriteString(fmt.Sprintf("and %d more (see BadRequest)", len(violations)-i))
			break
		}
		b.WriteString(v.Field + ": " + v.Description)
	}
	return e.New(codes.InvalidArgument, generationv1.ErrorReason_ERROR_REASON_INVALID_REQUEST, b.String(), nil, badRequest(violations))
}

// badRequestBudget bounds the field violations carried in one status, so that all
// details stay under 2 KB (some clients cap trailers at 8 KiB, and the message and
// ErrorInfo need room too).
const badRequestBudget = 900

// badRequest builds a BadRequest detail from violations, keeping as many as fit in the
// budget and summarising the rest.
func badRequest(violations []FieldViolation) *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	used := 0
	for i, v := range violations {
		size := len(v.Field) + len(v.Description) + 8
		if used+size > badRequestBudget {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Description: fmt.Sprintf("and %d more violations not shown", len(violations)-i),
			})
			break
		}
		used += size
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	return br
}

// Upstream maps an error from the livepeer client to a status. Context errors become
// DEADLINE_EXCEEDED or CANCELLED; anything unrecognised becomes INTERNAL_ERROR.
func (e Errors) Upstream(err error, requestID string) error {
	var (
		se  *livepeer.StatusError
		te  *livepeer.TransportError
		bre *livepeer.BadResponseError
		ste *livepeer.StreamTruncatedError
		see *livepeer.StreamEventError
		mre *livepeer.MediaRefusedError
		mtl *livepeer.MediaTooLargeError
		mfe *livepeer.MediaFetchError
		sie *livepeer.StreamIdleError
		ipe *livepeer.InvalidParamError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before the gateway answered")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case errors.As(err, &ipe):
		// Validation normally refuses such values first; this is the encoder's own
		// refusal to send them, and nothing was sent.
		return e.InvalidRequest([]FieldViolation{{Field: ipe.Field, Description: ipe.Reason}})
	case errors.As(err, &se):
		return e.upstreamStatus(se)
	case errors.As(err, &te):
		meta := map[string]string{"pipeline": te.Pipeline}
		if te.Timeout {
			return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_TIMEOUT,
				fmt.Sprintf("the gateway did not finish %s within genservice's timeout for it; set a longer deadline or retry later", te.Pipeline), meta)
		}
		return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_UNREACHABLE,
			"genservice could not reach the Livepeer gateway; retry later", meta,
			&errdetails.RetryInfo{RetryDelay: durationpb.New(defaultRetryDelay)})
	case errors.As(err, &bre):
		return e.New(codes.Internal, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_BAD_RESPONSE,
			"the gateway answered "+bre.Pipeline+" with an unusable response: "+bre.Reason,
			map[string]string{"pipeline": bre.Pipeline})
	case errors.As(err, &mre):
		return e.New(codes.FailedPrecondition, generationv1.ErrorReason_ERROR_REASON_MEDIA_FETCH_REFUSED,
			"inline_media: genservice does not fetch from this result URL ("+mre.Reason+"); fetch the URL yourself or ask the operator to allow the host with --media-allow-host",
			map[string]string{"host": mre.Host})
	case errors.As(err, &mtl):
		return e.New(codes.ResourceExhausted, generationv1.ErrorReason_ERROR_REASON_MEDIA_TOO_LARGE,
			fmt.Sprintf("inline_media: a result is larger than genservice's %d-byte cap; call without inline_media and fetch the URL", mtl.Limit),
			map[string]string{"maxMediaBytes": strconv.FormatInt(mtl.Limit, 10)})
	case errors.As(err, &mfe):
		meta := map[string]string{}
		if mfe.Status != 0 {
			meta["mediaStatus"] = strconv.Itoa(mfe.Status)
		}
		return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_MEDIA_FETCH_FAILED,
			"inline_media: fetching a result failed ("+mfe.Error()+"); retry, or call without inline_media", meta)
	case errors.As(err, &see):
		return e.New(codes.Internal, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_INTERNAL_ERROR,
			"the gateway failed during the stream: "+see.Message,
			map[string]string{"pipeline": see.Pipeline, "upstreamMessage": see.Message})
	case errors.As(err, &sie):
		return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_TIMEOUT,
			"the gateway sent no stream event for "+sie.Idle.String()+"; retry the call",
			map[string]string{"pipeline": sie.Pipeline, "idleTimeout": sie.Idle.String()})
	case errors.As(err, &ste):
		return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_STREAM_TRUNCATED,
			"the gateway ended the stream before its final event; retry the call",
			map[string]string{"pipeline": ste.Pipeline, "events": strconv.Itoa(ste.Events)})
	}
	return e.Internal(requestID)
}

// upstreamStatus maps a non-2xx gateway answer (the HTTP rows of the table).
func (e Errors) upstreamStatus(se *livepeer.StatusError) error {
	meta := map[string]string{
		"pipeline":        se.Pipeline,
		"upstreamStatus":  strconv.Itoa(se.StatusCode),
		"upstreamMessage": se.Message,
	}
	said := ""
	if se.Message != "" {
		said = ": " + se.Message
	}
	code := se.StatusCode
	switch {
	case code == http.StatusUnauthorized:
		meta["keyFingerprint"] = se.KeyFingerprint
		return e.New(codes.Unauthenticated, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_API_KEY_REJECTED,
			"the Livepeer gateway rejected genservice's backend API key (HTTP 401"+said+"); this is a server configuration problem, not the caller's credentials",
			meta, &errdetails.Help{Links: []*errdetails.Help_Link{{
				Description: "Operators: check that LIVEPEER_API_KEY or LIVEPEER_API_KEY_FILE holds a current Livepeer Studio backend API key whose fingerprint (sha256 of the key, first 8 hex digits) matches keyFingerprint, and that the key was not deleted",
				Url:         "https://docs.livepeer.org/api-reference/overview/authentication",
			}}})
	case code == http.StatusForbidden:
		meta["keyFingerprint"] = se.KeyFingerprint
		return e.New(codes.PermissionDenied, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_API_KEY_FORBIDDEN,
			"the Livepeer gateway refused genservice's API key for this operation (HTTP 403"+said+"); operators should configure a backend (non-CORS) API key",
			meta, &errdetails.Help{Links: []*errdetails.Help_Link{{
				Description: "Create a Livepeer Studio API key without CORS access for server-side use",
				Url:         "https://docs.livepeer.org/api-reference/overview/authentication",
			}}})
	case code == http.StatusUnprocessableEntity && se.Pipeline == livepeer.PipelineLLM &&
		strings.Contains(se.Message, "multipart/form-data"):
		// Livepeer Studio still serves llm with its 2024 multipart schema (UPSTREAM.md
		// §3.7), so it refuses the gateway's JSON request. That is not the caller's
		// request being wrong: the configured gateway does not serve this API.
		return e.New(codes.Unimplemented, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_PIPELINE_UNSUPPORTED,
			"the configured gateway does not accept the llm API genservice speaks (HTTP 422"+said+"); Livepeer Studio's llm endpoint still expects its older multipart form: point --gateway-url at a go-livepeer AI gateway for LLM", meta)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge ||
		code == http.StatusUnsupportedMediaType || code == http.StatusUnprocessableEntity:
		var details []protoadapt.MessageV1
		if len(se.Violations) > 0 {
			vs := make([]FieldViolation, len(se.Violations))
			for i, v := range se.Violations {
				vs[i] = FieldViolation{Field: upstreamField(v.Field), Description: v.Message}
			}
			details = append(details, badRequest(vs))
		}
		return e.New(codes.InvalidArgument, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_INVALID_ARGUMENT,
			"the gateway rejected the request (HTTP "+strconv.Itoa(code)+said+")", meta, details...)
	case code == http.StatusNotFound:
		return e.New(codes.Unimplemented, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_PIPELINE_UNSUPPORTED,
			"the configured gateway does not serve the "+se.Pipeline+" pipeline (HTTP 404); Livepeer Studio has no image-to-text or text-to-speech", meta)
	case code == http.StatusTooManyRequests:
		return e.New(codes.ResourceExhausted, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_RATE_LIMITED,
			"the gateway rate-limited genservice's API key (HTTP 429"+said+"); retry after the delay in RetryInfo", meta, retryInfo(se, 0)...)
	case code == http.StatusBadGateway || code == http.StatusServiceUnavailable:
		return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_UNAVAILABLE,
			"the gateway is temporarily unavailable (HTTP "+strconv.Itoa(code)+said+"); retry later", meta, retryInfo(se, defaultRetryDelay)...)
	case code == http.StatusGatewayTimeout || code == http.StatusRequestTimeout:
		return e.New(codes.Unavailable, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_TIMEOUT,
			"the gateway timed out (HTTP "+strconv.Itoa(code)+said+"); retry later", meta, retryInfo(se, defaultRetryDelay)...)
	case code >= 500:
		return e.New(codes.Internal, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_INTERNAL_ERROR,
			"the gateway failed (HTTP "+strconv.Itoa(code)+said+"); genservice does not retry this because the generation may already have run", meta)
	}
	return e.New(codes.FailedPrecondition, generationv1.ErrorReason_ERROR_REASON_UPSTREAM_REJECTED,
		"the gateway refused the request (HTTP "+strconv.Itoa(code)+said+")", meta)
}

// upstreamField turns a gateway field path ("body.prompt") into the request field name
// the caller set ("prompt"): the upstream names are the proto's names.
func upstreamField(f string) string {
	f = strings.TrimPrefix(f, "body.")
	if f == "body" {
		return ""
	}
	return f
}

// defaultRetryDelay is the RetryInfo genservice adds when the gateway kept failing
// (its own retries are spent) without saying when to come back.
const defaultRetryDelay = time.Second

// retryInfo is the gateway's Retry-After as RetryInfo, or fallback when it sent none
// (no detail when fallback is 0).
func retryInfo(se *livepeer.StatusError, fallback time.Duration) []protoadapt.MessageV1 {
	d := fallback
	if se.HasRetryAfter {
		d = max(se.RetryAfter, 0)
	}
	if !se.HasRetryAfter && fallback == 0 {
		return nil
	}
	return []protoadapt.MessageV1{&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}}
}
