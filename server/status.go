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
	"genservice/livepeer/pipeline"
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

// TooManyWatchers is the status for a health Watch from a peer without a verified
// identity when such peers already hold all the watchers they may. A certificate (or a
// Check instead of a Watch) gets through, hence UNAUTHENTICATED and this reason.
func (e Errors) TooManyWatchers(limit int) error {
	return e.New(codes.Unauthenticated, generationv1.ErrorReason_ERROR_REASON_CLIENT_CERTIFICATE_REQUIRED,
		fmt.Sprintf("too many health watchers without a client certificate (limit %d): use Check, or connect with a certificate", limit),
		map[string]string{"method": "/grpc.health.v1.Health/Watch", "maxWatchers": strconv.Itoa(limit)})
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

// Upstream maps an error from the livepeer client to a status: the client classified it
// (livepeer.Kind) and upstreamRows says what each kind becomes. Context errors become
// DEADLINE_EXCEEDED or CANCELLED; anything unrecognised becomes INTERNAL_ERROR.
func (e Errors) Upstream(err error, requestID string) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before the gateway answered")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	}
	f, ok := factsOf(err)
	row, known := upstreamRows[f.kind]
	if !ok || !known {
		return e.Internal(requestID)
	}
	var details []protoadapt.MessageV1
	// Field errors, the gateway's or genservice's own, go into BadRequest.
	if len(f.violations) > 0 && row.code == codes.InvalidArgument {
		vs := make([]FieldViolation, len(f.violations))
		for i, v := range f.violations {
			vs[i] = FieldViolation{Field: upstreamField(v.Field), Description: v.Message}
		}
		details = append(details, badRequest(vs))
	}
	switch {
	case f.hasRetryAfter:
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(max(f.retryAfter, 0))})
	case row.retry > 0:
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(row.retry)})
	}
	if row.help != "" {
		details = append(details, &errdetails.Help{Links: []*errdetails.Help_Link{{Description: row.help, Url: authDocs}}})
	}
	if !row.keyFingerprint {
		delete(f.meta, "keyFingerprint")
	}
	return e.New(row.code, row.reason, row.message(f), f.meta, details...)
}

// upstreamRow is one row of DESIGN §7's table for an upstream outcome.
type upstreamRow struct {
	code   codes.Code
	reason generationv1.ErrorReason
	// message is one sentence that says what happened and what to do.
	message func(f facts) string
	// retry is the RetryInfo delay when the gateway sent no Retry-After (0: no RetryInfo).
	retry time.Duration
	// help, if set, is a Help link's description (operators' checklist).
	help string
	// keyFingerprint: the metadata names the key that was used.
	keyFingerprint bool
}

// defaultRetryDelay is the RetryInfo genservice adds when the gateway kept failing
// (its own retries are spent) without saying when to come back.
const defaultRetryDelay = time.Second

const authDocs = "https://docs.livepeer.org/api-reference/overview/authentication"

// upstreamRows is the table. Every livepeer.Kind has a row (TestUpstreamRows).
var upstreamRows = map[livepeer.Kind]upstreamRow{
	livepeer.KindKeyRejected: {
		code: codes.Unauthenticated, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_API_KEY_REJECTED, keyFingerprint: true,
		message: func(f facts) string {
			return "the Livepeer gateway rejected genservice's backend API key (HTTP 401" + f.said + "); this is a server configuration problem, not the caller's credentials"
		},
		help: "Operators: check that LIVEPEER_API_KEY or LIVEPEER_API_KEY_FILE holds a current Livepeer Studio backend API key whose fingerprint (sha256 of the key, first 8 hex digits) matches keyFingerprint, and that the key was not deleted",
	},
	livepeer.KindKeyForbidden: {
		// Studio answers 403 for several reasons (UPSTREAM §12.5): the message carries
		// its words and the Help the checklist, without asserting one of them.
		code: codes.PermissionDenied, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_API_KEY_FORBIDDEN, keyFingerprint: true,
		message: func(f facts) string {
			return "the Livepeer gateway refused genservice's API key for this operation (HTTP 403" + f.said + "); this is the server's account or key, not the caller: operators, see the checklist in Help"
		},
		help: "Operators: check that the key is a backend API key (not CORS-enabled), that the Livepeer Studio account is active (not suspended) and its e-mail verified, and that the key's allowed origins do not exclude server-side use",
	},
	livepeer.KindInvalidArgument: {
		code: codes.InvalidArgument, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_INVALID_ARGUMENT,
		message: func(f facts) string {
			return "the gateway rejected the request (HTTP " + strconv.Itoa(f.httpStatus) + f.said + ")"
		},
	},
	livepeer.KindPipelineUnsupported: {
		code: codes.Unimplemented, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_PIPELINE_UNSUPPORTED,
		message: func(f facts) string {
			if f.httpStatus == http.StatusUnprocessableEntity {
				return "the configured gateway does not accept the llm API genservice speaks (HTTP 422" + f.said + "); Livepeer Studio's llm endpoint still expects its older multipart form: point --gateway-url at a go-livepeer AI gateway for LLM"
			}
			return "the configured gateway does not serve the " + f.pipeline + " pipeline (HTTP 404); Livepeer Studio has no " + strings.Join(pipeline.NotOnStudio(), " or ")
		},
	},
	livepeer.KindRateLimited: {
		code: codes.ResourceExhausted, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_RATE_LIMITED,
		message: func(f facts) string {
			return "the gateway rate-limited genservice's API key (HTTP 429" + f.said + "); retry after the delay in RetryInfo"
		},
	},
	livepeer.KindUnavailable: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_UNAVAILABLE, retry: defaultRetryDelay,
		message: func(f facts) string {
			return "the gateway is temporarily unavailable (HTTP " + strconv.Itoa(f.httpStatus) + f.said + "); retry later"
		},
	},
	livepeer.KindGenerationUnavailable: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_UNAVAILABLE, retry: defaultRetryDelay,
		message: func(f facts) string {
			return "Livepeer Studio could not get the generation done (HTTP 500" + f.said + "): the AI gateway behind it failed or was unreachable, and nothing was generated; retry later (genservice does not retry it itself: each attempt counts against the account's rate limit)"
		},
	},
	livepeer.KindTimeout: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_TIMEOUT, retry: defaultRetryDelay,
		message: func(f facts) string {
			if f.httpStatus == 0 {
				return "the gateway did not finish " + f.pipeline + " within genservice's timeout for it; set a longer deadline or retry later"
			}
			return "the gateway timed out (HTTP " + strconv.Itoa(f.httpStatus) + f.said + "); retry later"
		},
	},
	livepeer.KindUnreachable: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_UNREACHABLE, retry: defaultRetryDelay,
		message: func(facts) string {
			return "genservice could not reach the Livepeer gateway (connect, DNS or TLS failed before the request was sent); retry later"
		},
	},
	livepeer.KindConnectionDropped: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_CONNECTION_DROPPED, retry: defaultRetryDelay,
		message: func(f facts) string {
			return "the gateway received the " + f.pipeline + " request and closed the connection without answering; a go-livepeer gateway does this when no orchestrator serves the model (check model_id and the gateway's orchestrators); genservice does not retry it"
		},
	},
	livepeer.KindInternal: {
		code: codes.Internal, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_INTERNAL_ERROR,
		message: func(f facts) string {
			msg := "the gateway failed (HTTP " + strconv.Itoa(f.httpStatus) + f.said + "); genservice does not retry this because the generation may already have run"
			if f.pipeline == livepeer.PipelineLLM && f.httpStatus == http.StatusInternalServerError {
				// go-livepeer's LLM handler has no BadRequest branch (UPSTREAM §12.4).
				msg += "; through a go-livepeer gateway, a runner's 400 on llm (for example a model_id the runner does not serve) also arrives as this 500"
			}
			return msg
		},
	},
	livepeer.KindRejected: {
		code: codes.FailedPrecondition, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_REJECTED,
		message: func(f facts) string {
			return "the gateway refused the request (HTTP " + strconv.Itoa(f.httpStatus) + f.said + ")"
		},
	},
	livepeer.KindBadResponse: {
		code: codes.Internal, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_BAD_RESPONSE,
		message: func(f facts) string {
			return "the gateway answered " + f.pipeline + " with an unusable response: " + f.detail
		},
	},
	livepeer.KindStreamTruncated: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_STREAM_TRUNCATED,
		message: func(facts) string {
			// go-livepeer drops a runner's mid-stream error event and just ends the
			// stream (UPSTREAM §12.4), so that is the usual cause.
			return "the gateway ended the stream before its final event, usually because the model failed mid-generation (a go-livepeer gateway drops the runner's error event); retry the call"
		},
	},
	livepeer.KindStreamError: {
		code: codes.Internal, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_INTERNAL_ERROR,
		message: func(f facts) string { return "the gateway failed during the stream: " + f.message },
	},
	livepeer.KindStreamIdle: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_UPSTREAM_TIMEOUT, retry: defaultRetryDelay,
		message: func(f facts) string {
			return "the gateway sent no stream event for " + f.meta["idleTimeout"] + "; retry the call"
		},
	},
	livepeer.KindMediaRefused: {
		code: codes.FailedPrecondition, reason: generationv1.ErrorReason_ERROR_REASON_MEDIA_FETCH_REFUSED,
		message: func(f facts) string {
			return "inline_media: genservice does not fetch from this result URL (" + f.detail + "); fetch the URL yourself or ask the operator to allow the host with --media-allow-host"
		},
	},
	livepeer.KindMediaTooLarge: {
		code: codes.ResourceExhausted, reason: generationv1.ErrorReason_ERROR_REASON_MEDIA_TOO_LARGE,
		message: func(f facts) string {
			return "inline_media: a result is larger than genservice's " + f.meta["maxMediaBytes"] + "-byte cap; call without inline_media and fetch the URL"
		},
	},
	livepeer.KindMediaFetchFailed: {
		code: codes.Unavailable, reason: generationv1.ErrorReason_ERROR_REASON_MEDIA_FETCH_FAILED,
		message: func(f facts) string {
			return "inline_media: fetching a result failed (" + f.detail + "); retry, or call without inline_media"
		},
	},
	livepeer.KindInvalidParam: {
		// Validation normally refuses such values first; this is the encoder's own refusal
		// to send them, and nothing was sent.
		code: codes.InvalidArgument, reason: generationv1.ErrorReason_ERROR_REASON_INVALID_REQUEST,
		message: func(f facts) string {
			if field := f.violations[0].Field; field != "" {
				return "invalid request: " + field + ": " + f.detail
			}
			return "invalid request: " + f.detail
		},
	},
}

// facts are what a row may say about a failure, read once from the livepeer error.
type facts struct {
	kind       livepeer.Kind
	pipeline   string
	httpStatus int
	// message is the upstream's own text (sanitized, redacted, cut); said is ": "+message
	// or "".
	message, said string
	// detail is genservice's own description (a bad response's reason, a media problem).
	detail        string
	violations    []livepeer.Violation
	retryAfter    time.Duration
	hasRetryAfter bool
	meta          map[string]string
}

// factsOf reads the facts of any livepeer error; false for other errors.
func factsOf(err error) (facts, bool) {
	f := facts{kind: livepeer.KindOf(err), meta: map[string]string{}}
	var (
		se  *livepeer.StatusError
		te  *livepeer.TransportError
		bre *livepeer.BadResponseError
		ste *livepeer.StreamTruncatedError
		see *livepeer.StreamEventError
		sie *livepeer.StreamIdleError
		mre *livepeer.MediaRefusedError
		mtl *livepeer.MediaTooLargeError
		mfe *livepeer.MediaFetchError
		ipe *livepeer.InvalidParamError
	)
	switch {
	case errors.As(err, &se):
		f.pipeline, f.httpStatus, f.message = se.Pipeline, se.StatusCode, se.Message
		f.violations, f.retryAfter, f.hasRetryAfter = se.Violations, se.RetryAfter, se.HasRetryAfter
		f.meta["upstreamStatus"] = strconv.Itoa(se.StatusCode)
		f.meta["upstreamMessage"] = se.Message
		f.meta["keyFingerprint"] = se.KeyFingerprint
	case errors.As(err, &te):
		f.pipeline = te.Pipeline
	case errors.As(err, &bre):
		f.pipeline, f.detail = bre.Pipeline, bre.Reason
	case errors.As(err, &ste):
		f.pipeline = ste.Pipeline
		f.meta["events"] = strconv.Itoa(ste.Events)
	case errors.As(err, &see):
		f.pipeline, f.message = see.Pipeline, see.Message
		f.meta["upstreamMessage"] = see.Message
	case errors.As(err, &sie):
		f.pipeline = sie.Pipeline
		f.meta["idleTimeout"] = sie.Idle.String()
	case errors.As(err, &mre):
		f.detail = mre.Reason
		f.meta["host"] = mre.Host
	case errors.As(err, &mtl):
		f.meta["maxMediaBytes"] = strconv.FormatInt(mtl.Limit, 10)
	case errors.As(err, &mfe):
		f.detail = mfe.Error()
		if mfe.Status != 0 {
			f.meta["mediaStatus"] = strconv.Itoa(mfe.Status)
		}
	case errors.As(err, &ipe):
		f.detail = ipe.Reason
		f.violations = []livepeer.Violation{{Field: ipe.Field, Message: ipe.Reason}}
	default:
		return facts{}, false
	}
	if f.pipeline != "" {
		f.meta["pipeline"] = f.pipeline
	}
	if f.message != "" {
		f.said = ": " + f.message
	}
	return f, true
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
