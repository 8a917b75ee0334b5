package livepeertest

import (
	"encoding/json"
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

func jsonTypeOK(k kind, v any) bool {
	switch k {
	case kString:
		_, ok := v.(string)
		return ok
	case kBoolean:
		_, ok := v.(bool)
		return ok
	case kNumber:
		_, ok := v.(float64)
		return ok
	case kInteger:
		f, ok := v.(float64)
		// JSON.parse gives 5 for 5.0 too, so ajv calls it an integer.
		return ok && f == math.Trunc(f) && math.Abs(f) <= 1<<53
	}
	return false
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

// formTypeOK checks a multipart text value against its schema type:
// numbers and booleans arrive as text and must parse. With coerce, a
// string field whose text looks like a number or boolean fails the way
// Studio's coercion makes it fail (UPSTREAM.md §4.4).
func formTypeOK(k kind, s string, coerce bool) bool {
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
		if !coerce {
			return true
		}
		if s == "true" || s == "false" {
			return false
		}
		_, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return err != nil || strings.TrimSpace(s) == ""
	}
	return false
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
	// An empty model id is taken literally by the gateway, no orchestrator
	// serves model "", the gateway answers 503 and Studio turns that into
	// 500 (UPSTREAM.md §4.2, §7.5).
	modelField := "model_id"
	if p.name == LLM {
		modelField = "model"
	}
	if v.str(modelField, "") == "" {
		return &reply{500, StudioError("Failed to generate " + p.name)}
	}
	return nil
}

// knownPipeline reports whether name is one of the nine pipelines.
func knownPipeline(name string) bool {
	return slices.Contains(Pipelines, name)
}
