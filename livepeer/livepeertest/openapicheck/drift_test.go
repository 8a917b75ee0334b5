package openapicheck_test

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"google.golang.org/protobuf/reflect/protoreflect"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer/livepeertest/openapicheck"
)

// The drift test: the gateway spec (../shared/livepeer/gateway.openapi.yaml
// beside the repository, found by openapicheck.SpecPath) and genservice's
// proto request messages must describe the same pipelines and the same
// request fields, so that a newer spec dropped in shows at once what
// changed. Differences genservice makes on purpose are listed below, each
// with its reason; anything else fails with the exact list of differences.

// pipelineMessages maps each batch pipeline (the spec path without its
// leading "/") to the proto request messages that carry its fields.
var pipelineMessages = map[string][]protoreflect.MessageDescriptor{
	"text-to-image":      {(&generationv1.TextToImageRequest{}).ProtoReflect().Descriptor()},
	"image-to-image":     {(&generationv1.ImageToImageRequest{}).ProtoReflect().Descriptor()},
	"image-to-video":     {(&generationv1.ImageToVideoRequest{}).ProtoReflect().Descriptor()},
	"upscale":            {(&generationv1.UpscaleRequest{}).ProtoReflect().Descriptor()},
	"audio-to-text":      {(&generationv1.AudioToTextRequest{}).ProtoReflect().Descriptor()},
	"segment-anything-2": {(&generationv1.SegmentAnything2Request{}).ProtoReflect().Descriptor()},
	// One pipeline, two RPCs (Llm and the server-streaming LlmStream) that
	// take the same LlmRequest.
	"llm":            {(&generationv1.LlmRequest{}).ProtoReflect().Descriptor()},
	"image-to-text":  {(&generationv1.ImageToTextRequest{}).ProtoReflect().Descriptor()},
	"text-to-speech": {(&generationv1.TextToSpeechRequest{}).ProtoReflect().Descriptor()},
}

// ignoredPaths are spec paths that are not batch pipelines genservice
// fronts. live-video-to-video is a streaming media protocol served by
// orchestrators, not by the gateway, and out of scope for a unary gRPC
// facade (UPSTREAM §3.10).
var ignoredPaths = map[string]bool{
	"/live-video-to-video": true,
}

// protoOnly are proto request fields with no spec counterpart, by pipeline.
var protoOnly = map[string][]string{
	// inline_media asks genservice to fetch the result media itself and
	// return the bytes; it is never sent upstream.
	"text-to-image":  {"inline_media"},
	"image-to-image": {"inline_media"},
	"image-to-video": {"inline_media"},
	"upscale":        {"inline_media"},
	"text-to-speech": {"inline_media"},
}

// specOnly are spec request fields the proto deliberately omits, by
// pipeline.
var specOnly = map[string][]string{
	// genservice sets stream itself: false for Llm, true for LlmStream.
	"llm": {"stream"},
}

// fieldSet is one side's request fields per pipeline: name → whether the
// field is a file (spec: type string, format binary; proto: an InputFile
// message).
type fieldSet map[string]map[string]bool

// specFields reads the request-body fields of every path of doc except
// ignoredPaths; any other path counts as a pipeline.
func specFields(doc *openapi3.T) (fieldSet, error) {
	out := fieldSet{}
	for path, item := range doc.Paths.Map() {
		if ignoredPaths[path] {
			continue
		}
		name := strings.TrimPrefix(path, "/")
		out[name] = map[string]bool{}
		if item.Post == nil || item.Post.RequestBody == nil || item.Post.RequestBody.Value == nil {
			return nil, fmt.Errorf("spec path %s has no POST request body", path)
		}
		for _, mt := range item.Post.RequestBody.Value.Content {
			if mt.Schema == nil || mt.Schema.Value == nil {
				continue
			}
			for prop, ref := range mt.Schema.Value.Properties {
				s := ref.Value
				out[name][prop] = s != nil && s.Type.Is("string") && s.Format == "binary"
			}
		}
	}
	return out, nil
}

// protoFields reads pipelineMessages.
func protoFields() fieldSet {
	const inputFile = "livepeer.generation.v1.InputFile"
	out := fieldSet{}
	for name, msgs := range pipelineMessages {
		out[name] = map[string]bool{}
		for _, md := range msgs {
			fds := md.Fields()
			for i := range fds.Len() {
				fd := fds.Get(i)
				isFile := fd.Message() != nil && fd.Message().FullName() == inputFile
				out[name][string(fd.Name())] = isFile
			}
		}
	}
	return out
}

// messageFieldMismatch reports fields that differ between the messages of
// one pipeline, should a pipeline ever be carried by more than one request
// message again (llm once had a separate stream request that had to stay
// its twin).
func messageFieldMismatch() []string {
	var out []string
	for name, msgs := range pipelineMessages {
		var first []string
		for i, md := range msgs {
			var names []string
			fds := md.Fields()
			for j := range fds.Len() {
				names = append(names, string(fds.Get(j).Name()))
			}
			slices.Sort(names)
			if i == 0 {
				first = names
			} else if !slices.Equal(first, names) {
				out = append(out, fmt.Sprintf("%s: %s has fields %v but %s has %v", name, msgs[0].Name(), first, md.Name(), names))
			}
		}
	}
	return out
}

// drift lists every difference between spec and proto that the
// allowlists do not explain, one line each, sorted.
func drift(spec, proto fieldSet) []string {
	var out []string
	for name, fields := range spec {
		pf, ok := proto[name]
		if !ok {
			out = append(out, fmt.Sprintf("pipeline %s: in the spec, no proto request message", name))
			continue
		}
		for f, isFile := range fields {
			pIsFile, ok := pf[f]
			switch {
			case !ok && !slices.Contains(specOnly[name], f):
				out = append(out, fmt.Sprintf("%s: spec field %s has no proto field", name, f))
			case ok && isFile != pIsFile:
				out = append(out, fmt.Sprintf("%s: field %s is a file on one side only (spec %v, proto %v)", name, f, isFile, pIsFile))
			case ok && slices.Contains(specOnly[name], f):
				out = append(out, fmt.Sprintf("%s: field %s is allowlisted as spec-only but the proto has it", name, f))
			}
		}
	}
	for name, fields := range proto {
		sf, ok := spec[name]
		if !ok {
			out = append(out, fmt.Sprintf("pipeline %s: has proto request messages, not in the spec", name))
			continue
		}
		for f := range fields {
			_, inSpec := sf[f]
			switch {
			case !inSpec && !slices.Contains(protoOnly[name], f):
				out = append(out, fmt.Sprintf("%s: proto field %s has no spec field", name, f))
			case inSpec && slices.Contains(protoOnly[name], f):
				out = append(out, fmt.Sprintf("%s: field %s is allowlisted as proto-only but the spec has it", name, f))
			}
		}
	}
	// An allowlist entry that no longer applies is drift too: caught
	// above when the field appears on the other side, here when it
	// vanished from its own side (a vanished pipeline is reported above).
	for name, fs := range specOnly {
		for _, f := range fs {
			if _, ok := spec[name][f]; !ok && spec[name] != nil {
				out = append(out, fmt.Sprintf("%s: allowlisted spec-only field %s is not in the spec", name, f))
			}
		}
	}
	for name, fs := range protoOnly {
		for _, f := range fs {
			if _, ok := proto[name][f]; !ok && proto[name] != nil {
				out = append(out, fmt.Sprintf("%s: allowlisted proto-only field %s is not in the proto", name, f))
			}
		}
	}
	sort.Strings(out)
	return out
}

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	path, err := openapicheck.SpecPath()
	if err != nil {
		// Same rule as openapicheck.ForTest: skip in a clone without the
		// spec, fail in CI.
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (required when CI=true)", err)
		}
		t.Skipf("%v", err)
	}
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return doc
}

// TestSpecProtoDrift fails when the gateway spec and the proto request
// messages disagree on pipelines or fields beyond the allowlists.
func TestSpecProtoDrift(t *testing.T) {
	spec, err := specFields(loadSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := append(drift(spec, protoFields()), messageFieldMismatch()...); len(d) > 0 {
		t.Fatalf("the gateway spec and the proto request messages differ (update the proto, or allowlist with a reason in %s):\n  %s",
			"drift_test.go", strings.Join(d, "\n  "))
	}
}

// TestDriftDetects shows the drift check failing, with the exact
// differences, on a spec that gained a pipeline and a field and lost one.
func TestDriftDetects(t *testing.T) {
	const fake = `
openapi: 3.1.0
info: {title: fake, version: "1"}
paths:
  /upscale:
    post:
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              properties:
                prompt: {type: string}
                image: {type: string}
                model_id: {type: string}
                safety_check: {type: boolean}
                seed: {type: integer}
                num_inference_steps: {type: integer}
                guidance_scale: {type: number}
      responses: {"200": {description: ok}}
  /text-to-3d:
    post:
      requestBody:
        content:
          application/json:
            schema: {type: object, properties: {prompt: {type: string}}}
      responses: {"200": {description: ok}}
  /live-video-to-video:
    post:
      requestBody:
        content:
          application/json:
            schema: {type: object, properties: {subscribe_url: {type: string}}}
      responses: {"200": {description: ok}}
`
	doc, err := openapi3.NewLoader().LoadFromData([]byte(fake))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := specFields(doc)
	if err != nil {
		t.Fatal(err)
	}
	proto := protoFields()
	// The fake spec has only upscale of the real pipelines; keep upscale
	// and llm on the proto side (llm shows a pipeline the spec lost) and
	// drop upscale's seed, as if the proto had lost it.
	for name := range proto {
		if name != "upscale" && name != "llm" {
			delete(proto, name)
		}
	}
	delete(proto["upscale"], "seed")
	got := drift(spec, proto)
	want := []string{
		"pipeline llm: has proto request messages, not in the spec",
		"pipeline text-to-3d: in the spec, no proto request message",
		"upscale: field image is a file on one side only (spec false, proto true)",
		"upscale: spec field guidance_scale has no proto field",
		"upscale: spec field seed has no proto field",
	}
	if d := drift(spec, fieldSet{"upscale": {"prompt": false, "image": false, "model_id": false, "safety_check": false,
		"seed": false, "num_inference_steps": false, "guidance_scale": false, "extra": false}}); !slices.Equal(d, []string{
		"pipeline text-to-3d: in the spec, no proto request message",
		"upscale: allowlisted proto-only field inline_media is not in the proto",
		"upscale: proto field extra has no spec field",
	}) {
		t.Errorf("proto-side drift = %q", d)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("drift =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
