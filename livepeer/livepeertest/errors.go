package livepeertest

import (
	"bytes"
	"encoding/json"
)

// UnauthorizedBody is what the simulator answers, with status 401, to a
// request that does not carry exactly "Authorization: Bearer <APIKey>".
//
// This body is the project's contract (DESIGN.md §9); real Studio answers
// 401 with {"errors":[...]} instead (UPSTREAM.md §2.3), which tests can
// script with StudioError.
const UnauthorizedBody = `{"error":"Unauthorized","message":"Invalid API key"}`

// Studio's answers when the gateway behind it fails (UPSTREAM §12.3,
// [ST] controllers/generate.ts and middleware/errorHandler.ts), all with
// status 500:
//
//   - StudioFetchErrorBody: the fetch to the gateway threw (connection
//     refused or dropped, e.g. go-livepeer's no-orchestrator panic, §12.2,
//     or a body cut mid-way): "Internal server error: <error name>", and
//     node-fetch's errors are named FetchError.
//   - StudioTimeoutBody: Studio's own 10-minute gateway timeout
//     ([ST] util.ts fetchWithTimeout) rejects with the bare string
//     "timeout"; a string has no name or message, so errorHandler's
//     `${err.name || err.message}` renders "undefined". Read from the
//     source, not observed.
//   - StudioFailedBody: the gateway answered >= 500.
const (
	StudioFetchErrorBody = `{"errors":["Internal server error: FetchError"]}`
	StudioTimeoutBody    = `{"errors":["Internal server error: undefined"]}`
)

// StudioFailedBody is Studio's 500 body when the gateway answered >= 500:
// {"errors":["Failed to generate <pipeline>"]}. [ST] generate.ts writes
// `Failed to generate ${type}` with type the route name ("text-to-image",
// "llm", ...), so the noun is the pipeline name as it appears in the path
// (UPSTREAM §4.2; §12.3's "Failed to generate image" is an illustration,
// not the literal text).
func StudioFailedBody(pipeline string) string {
	return StudioError("Failed to generate " + pipeline)
}

// Violation is one entry of a runner (FastAPI) validation error.
type Violation struct {
	Loc  []any
	Msg  string
	Type string
}

// StudioError returns Livepeer Studio's error body: {"errors":[msgs...]}.
func StudioError(msgs ...string) string {
	if msgs == nil {
		msgs = []string{}
	}
	return marshal(struct {
		Errors []string `json:"errors"`
	}{msgs})
}

// GatewayError returns a go-livepeer gateway's error body:
// {"error":{"message":msg}}.
func GatewayError(msg string) string {
	type inner struct {
		Message string `json:"message"`
	}
	return marshal(struct {
		Error inner `json:"error"`
	}{inner{msg}})
}

// RunnerError returns an ai-runner HTTPError body: {"detail":{"msg":msg}}.
func RunnerError(msg string) string {
	type inner struct {
		Msg string `json:"msg"`
	}
	return marshal(struct {
		Detail inner `json:"detail"`
	}{inner{msg}})
}

// ValidationError returns an ai-runner HTTPValidationError body:
// {"detail":[{"loc":[...],"msg":...,"type":...}, ...]}.
func ValidationError(violations ...Violation) string {
	type entry struct {
		Loc  []any  `json:"loc"`
		Msg  string `json:"msg"`
		Type string `json:"type"`
	}
	out := make([]entry, 0, len(violations))
	for _, v := range violations {
		loc := v.Loc
		if loc == nil {
			loc = []any{}
		}
		out = append(out, entry{loc, v.Msg, v.Type})
	}
	return marshal(struct {
		Detail []entry `json:"detail"`
	}{out})
}

// ajvError renders one schema failure the way Studio reports it: each entry
// of its {"errors":[...]} array is a JSON-stringified ajv error object
// (UPSTREAM.md §4.2), so clients see e.g.
// {"instancePath":"/height",...,"message":"must be integer"}.
func ajvError(instancePath, schemaPath, keyword string, params map[string]any, message string) string {
	return marshal(struct {
		InstancePath string         `json:"instancePath"`
		SchemaPath   string         `json:"schemaPath"`
		Keyword      string         `json:"keyword"`
		Params       map[string]any `json:"params"`
		Message      string         `json:"message"`
	}{instancePath, schemaPath, keyword, params, message})
}

// marshal encodes v without HTML escaping (error texts quote '<' and '&'
// as they are) and without the trailing newline json.Encoder adds.
func marshal(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only plain structs, strings and numbers are passed in.
		panic("livepeertest: marshal: " + err.Error())
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}
