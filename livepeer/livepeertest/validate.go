package livepeertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Validation happens in two layers, like upstream:
//
//  1. Studio's schema check (ajv, additionalProperties false, first error
//     only) answers 422 {"errors":["<stringified ajv error>"]}.
//  2. Semantic checks of the gateway and the runner answer 400 with the
//     gateway's {"error":{"message":...}} body, which Studio passes through.
//
// Both work on a params view so JSON and multipart bodies share the rules.

// params is a validated request body: typed accessors over either the JSON
// object or the multipart text fields.
type params struct {
	obj  map[string]any    // JSON body
	form map[string]string // multipart text fields
}

func (v params) has(name string) bool {
	if v.obj != nil {
		_, ok := v.obj[name]
		return ok
	}
	_, ok := v.form[name]
	return ok
}

func (v params) str(name, def string) string {
	if v.obj != nil {
		if s, ok := v.obj[name].(string); ok {
			return s
		}
		return def
	}
	if s, ok := v.form[name]; ok {
		return s
	}
	return def
}

// int returns an integer field; schema validation has already made sure it
// parses.
func (v params) int(name string, def int64) int64 {
	if v.obj != nil {
		if f, ok := v.obj[name].(float64); ok {
			return int64(f)
		}
		return def
	}
	if s, ok := v.form[name]; ok {
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return n
		}
	}
	return def
}

func (v params) bool(name string, def bool) bool {
	if v.obj != nil {
		if b, ok := v.obj[name].(bool); ok {
			return b
		}
		return def
	}
	switch v.form[name] {
	case "true":
		return true
	case "false":
		return false
	}
	return def
}

// checkSchema is layer 1. It reports the first violation in ajv's order:
// required, then unknown properties, then property types in spec order.
func checkSchema(p *pipeline, rec *Request, coerce bool) *reply {
	if p.json {
		return checkJSON(p, rec.JSON)
	}
	return checkForm(p, rec, coerce)
}

func checkJSON(p *pipeline, obj map[string]any) *reply {
	for _, name := range p.required {
		if _, ok := obj[name]; !ok {
			return requiredError("", name)
		}
	}
	if extra := unknownKeys(obj, p); extra != "" {
		return additionalError("", extra)
	}
	for _, f := range p.fields {
		val, ok := obj[f.name]
		if !ok {
			continue
		}
		if f.kind == kMessages {
			if rep := checkMessages(val); rep != nil {
				return rep
			}
			continue
		}
		if !jsonTypeOK(f.kind, val) {
			return typeError("/"+f.name, "#/properties/"+f.name+"/type", f.kind.typeName())
		}
	}
	return nil
}

// jsonTypeOK is ajv's type check of a JSON body's value: JSON.parse gives 5 for 5.0
// too, so ajv calls it an integer, but one beyond 2^53 has lost its value on the way.
func jsonTypeOK(k kind, v any) bool {
	if !ajvTypeOK(k, v) {
		return false
	}
	f, isNum := v.(float64)
	return k != kInteger || !isNum || math.Abs(f) <= 1<<53
}

// checkMessages validates llm's messages: an array of {role, content}
// strings (LLMMessage).
func checkMessages(v any) *reply {
	arr, ok := v.([]any)
	if !ok {
		return typeError("/messages", "#/properties/messages/type", "array")
	}
	for i, item := range arr {
		path := "/messages/" + strconv.Itoa(i)
		m, ok := item.(map[string]any)
		if !ok {
			return typeError(path, "#/$defs/LLMMessage/type", "object")
		}
		for _, name := range []string{"role", "content"} {
			if _, ok := m[name]; !ok {
				return requiredError(path, name)
			}
		}
		for _, name := range []string{"role", "content"} {
			if _, ok := m[name].(string); !ok {
				return typeError(path+"/"+name, "#/$defs/LLMMessage/properties/"+name+"/type", "string")
			}
		}
	}
	return nil
}

func checkForm(p *pipeline, rec *Request, coerce bool) *reply {
	for _, name := range p.required {
		var ok bool
		if p.fieldKind[name] == kFile {
			_, ok = rec.Files[name]
		} else {
			_, ok = rec.Form[name]
		}
		if !ok {
			return requiredError("", name)
		}
	}
	// A text field named like a file field is as unknown to Studio's
	// schema (where files are not properties of req.body) as any other.
	extra := ""
	for name := range rec.Form {
		if k, ok := p.fieldKind[name]; (!ok || k == kFile) && (extra == "" || name < extra) {
			extra = name
		}
	}
	if extra != "" {
		return additionalError("", extra)
	}
	for _, f := range p.fields {
		s, ok := rec.Form[f.name]
		if !ok || f.kind == kFile {
			continue
		}
		if !formTypeOK(f.kind, s, coerce) {
			return typeError("/"+f.name, "#/properties/"+f.name+"/type", f.kind.typeName())
		}
	}
	return nil
}

// formTypeOK checks a multipart text value against its schema type.
//
// Without coerce, numbers and booleans arrive as text and must parse as
// the gateway parses them (a loose model of "Studio, then the gateway").
// With coerce it is Studio's check exactly (UPSTREAM §12.1): ajv sees the
// value studioCoerce makes of the text, so "7abc" passes as integer 7 and
// a prompt of "4k photo" fails as the number 4; what the gateway then
// makes of the original text is checkGatewayBinding's business.
func formTypeOK(k kind, s string, coerce bool) bool {
	if coerce {
		return ajvTypeOK(k, studioCoerce(s))
	}
	switch k {
	case kInteger:
		_, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return err == nil
	case kNumber:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	case kBoolean:
		return s == "true" || s == "false"
	case kString:
		return true
	}
	return false
}

// checkGatewayBinding is the go-livepeer gateway decoding the multipart
// body Studio forwards, which Studio rebuilds from the original strings,
// not the coerced values (UPSTREAM §12.1). The gateway binds each field
// into its generated Go struct with oapi-codegen's runtime.BindMultipart
// (strconv.ParseInt / ParseFloat / ParseBool on the raw text) and answers
// a failure with 400 and the Go error (UPSTREAM §4.2, "body cannot be
// decoded"), which Studio passes through (4xx, UPSTREAM §4.2). So "7abc"
// for an integer, which Studio's ajv accepted as 7, ends here as a 400.
// Fields are bound in the struct's (alphabetical) order, so the first
// failure in that order is reported.
//
// Only used with coercion (Studio mode or CoerceFormValues): without it
// formTypeOK already demands text the gateway can parse.
func checkGatewayBinding(p *pipeline, form map[string]string) *reply {
	names := make([]string, 0, len(form))
	for name := range form {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		var err error
		switch p.fieldKind[name] {
		case kInteger:
			_, err = strconv.ParseInt(form[name], 10, 64)
		case kNumber:
			_, err = strconv.ParseFloat(form[name], 64)
		case kBoolean:
			_, err = strconv.ParseBool(form[name])
		}
		if err != nil {
			return &reply{400, GatewayError("error binding string parameter: " + err.Error())}
		}
	}
	return nil
}

func unknownKeys(obj map[string]any, p *pipeline) string {
	extra := ""
	for name := range obj {
		if _, ok := p.fieldKind[name]; !ok && (extra == "" || name < extra) {
			extra = name
		}
	}
	return extra
}

func requiredError(path, name string) *reply {
	return &reply{422, StudioError(ajvError(path, "#/required", "required",
		map[string]any{"missingProperty": name}, "must have required property '"+name+"'"))}
}

func additionalError(path, name string) *reply {
	return &reply{422, StudioError(ajvError(path, "#/additionalProperties", "additionalProperties",
		map[string]any{"additionalProperty": name}, "must NOT have additional properties"))}
}

func typeError(path, schemaPath, typ string) *reply {
	return &reply{422, StudioError(ajvError(path, schemaPath, "type",
		map[string]any{"type": typ}, "must be "+typ))}
}

// gatewayBadRequest is a runner 400 relayed by the gateway: it keeps the
// text after "returned 400", hence the leading ": " (UPSTREAM.md §4.2).
func gatewayBadRequest(msg string) *reply {
	return &reply{400, GatewayError(": " + msg)}
}

// checkSemantics is layer 2, run on a body that passed checkSchema.
func checkSemantics(p *pipeline, v params) *reply {
	switch p.name {
	case TextToImage, ImageToImage, Upscale:
		if v.str("prompt", "") == "" {
			return gatewayBadRequest("Prompt must be provided.")
		}
	case ImageToVideo:
		h, w := v.int("height", 576), v.int("width", 1024)
		if h%8 != 0 || w%8 != 0 {
			return gatewayBadRequest(fmt.Sprintf("`height` and `width` have to be divisible by 8 but are %d and %d.", h, w))
		}
	case AudioToText:
		switch rt := v.str("return_timestamps", "true"); strings.ToLower(rt) {
		case "true", "1", "sentence", "false", "0", "word":
		default:
			return gatewayBadRequest("Invalid value for return_timestamps: '" + rt + "'.")
		}
	case SegmentAnything2:
		for _, name := range []string{"point_coords", "point_labels", "box", "mask_input"} {
			if s, ok := v.form[name]; ok {
				var x any
				if err := json.Unmarshal([]byte(s), &x); err != nil {
					return gatewayBadRequest("Error parsing JSON for " + name + ": " + err.Error())
				}
			}
		}
	case TextToSpeech:
		if v.str("text", "") == "" {
			// Checked by the gateway itself, so no ": " prefix.
			return &reply{400, GatewayError("text field is required")}
		}
	case LLM:
		msgs, _ := v.obj["messages"].([]any)
		if !v.has("model") || len(msgs) == 0 || !v.has("stream") || !v.has("max_tokens") {
			return &reply{400, GatewayError("missing required fields")}
		}
	}
	return nil
}

// studioLLMForwarded is what becomes of an llm request that passed
// Studio's validation: Studio registers llm as a multipart route with its
// stale Body_genLLM schema and forwards multipart, but the gateway's LLM
// handler JSON-decodes the body (UPSTREAM §3.7), so it fails with the Go
// decoder's error, a 400 Studio passes through (UPSTREAM §4.2).
func studioLLMForwarded(rec *Request) *reply {
	var v map[string]any
	err := json.NewDecoder(bytes.NewReader(rec.Body)).Decode(&v)
	if err == nil {
		err = errors.New("json: cannot decode multipart body") // not reached: a multipart body starts with "--"
	}
	return &reply{400, GatewayError(err.Error())}
}

// knownPipeline reports whether name is one of the nine pipelines.
func knownPipeline(name string) bool {
	return slices.Contains(Pipelines, name)
}
