package livepeertest

import (
	"slices"

	pipelines "genservice/livepeer/pipeline"
)

// The nine batch pipelines and their request schemas, transcribed from the
// gateway OpenAPI spec (shared/livepeer/gateway.openapi.yaml). Field order
// follows the spec so that validation reports the same first error on every
// run, like ajv does.
//
// llm follows the gateway (JSON messages/choices), not Studio's stale
// multipart Body_genLLM schema (UPSTREAM.md §3.7), and model_id is required
// as in the gateway spec although Studio would inject a default.

// Pipeline names, as they appear in the URL path (genservice's pipeline table).
const (
	TextToImage      = pipelines.TextToImage
	ImageToImage     = pipelines.ImageToImage
	ImageToVideo     = pipelines.ImageToVideo
	Upscale          = pipelines.Upscale
	AudioToText      = pipelines.AudioToText
	SegmentAnything2 = pipelines.SegmentAnything2
	LLM              = pipelines.LLM
	ImageToText      = pipelines.ImageToText
	TextToSpeech     = pipelines.TextToSpeech
)

// Pipelines lists every pipeline the simulator knows, in spec order.
var Pipelines = pipelines.Names()

// StudioPipelines are the pipelines Livepeer Studio serves (UPSTREAM.md
// §2.2); pass it as Config.Pipelines to simulate Studio exactly.
var StudioPipelines = pipelines.StudioNames()

type kind uint8

const (
	kString kind = iota
	kInteger
	kNumber
	kBoolean
	kFile     // multipart file part
	kMessages // llm: array of {role, content}
)

// typeName is the JSON-schema type ajv names in "must be <type>".
func (k kind) typeName() string {
	switch k {
	case kInteger:
		return "integer"
	case kNumber:
		return "number"
	case kBoolean:
		return "boolean"
	case kMessages:
		return "array"
	default:
		return "string"
	}
}

type field struct {
	name string
	kind kind
}

type pipeline struct {
	name      string
	json      bool // application/json body; otherwise multipart/form-data
	fields    []field
	required  []string
	fieldKind map[string]kind
}

func newPipeline(name string, json bool, required []string, fields ...field) *pipeline {
	p := &pipeline{name: name, json: json, fields: fields, required: required, fieldKind: make(map[string]kind, len(fields))}
	for _, f := range fields {
		p.fieldKind[f.name] = f.kind
	}
	return p
}

var pipelineSpecs = map[string]*pipeline{}

// studioSpecs are the pipelines as Studio validates them: model_id is not
// required, because Studio injects its default model when it is absent
// (UPSTREAM §3, §6); llm is studioLLMSpec.
var studioSpecs = map[string]*pipeline{}

// studioLLMSpec is Studio's stored multipart Body_genLLM schema, which
// predates the runner's messages format (UPSTREAM §3.7). A request that
// passes it still fails at the gateway, see studioLLMForwarded.
var studioLLMSpec = newPipeline(LLM, false, []string{"prompt"},
	field{"prompt", kString}, field{"model_id", kString}, field{"system_msg", kString},
	field{"temperature", kNumber}, field{"max_tokens", kInteger}, field{"history", kString},
	field{"stream", kBoolean})

func init() {
	for _, p := range []*pipeline{
		newPipeline(TextToImage, isJSON(TextToImage), []string{"prompt", "model_id"},
			field{"model_id", kString}, field{"loras", kString}, field{"prompt", kString},
			field{"height", kInteger}, field{"width", kInteger}, field{"guidance_scale", kNumber},
			field{"negative_prompt", kString}, field{"safety_check", kBoolean}, field{"seed", kInteger},
			field{"num_inference_steps", kInteger}, field{"num_images_per_prompt", kInteger}),
		newPipeline(ImageToImage, isJSON(ImageToImage), []string{"prompt", "image", "model_id"},
			field{"prompt", kString}, field{"image", kFile}, field{"model_id", kString},
			field{"loras", kString}, field{"strength", kNumber}, field{"guidance_scale", kNumber},
			field{"image_guidance_scale", kNumber}, field{"negative_prompt", kString},
			field{"safety_check", kBoolean}, field{"seed", kInteger},
			field{"num_inference_steps", kInteger}, field{"num_images_per_prompt", kInteger}),
		newPipeline(ImageToVideo, isJSON(ImageToVideo), []string{"image", "model_id"},
			field{"image", kFile}, field{"model_id", kString}, field{"height", kInteger},
			field{"width", kInteger}, field{"fps", kInteger}, field{"motion_bucket_id", kInteger},
			field{"noise_aug_strength", kNumber}, field{"safety_check", kBoolean},
			field{"seed", kInteger}, field{"num_inference_steps", kInteger}),
		newPipeline(Upscale, isJSON(Upscale), []string{"prompt", "image", "model_id"},
			field{"prompt", kString}, field{"image", kFile}, field{"model_id", kString},
			field{"safety_check", kBoolean}, field{"seed", kInteger}, field{"num_inference_steps", kInteger}),
		newPipeline(AudioToText, isJSON(AudioToText), []string{"audio", "model_id"},
			field{"audio", kFile}, field{"model_id", kString}, field{"return_timestamps", kString}),
		newPipeline(SegmentAnything2, isJSON(SegmentAnything2), []string{"image", "model_id"},
			field{"image", kFile}, field{"model_id", kString}, field{"point_coords", kString},
			field{"point_labels", kString}, field{"box", kString}, field{"mask_input", kString},
			field{"multimask_output", kBoolean}, field{"return_logits", kBoolean},
			field{"normalize_coords", kBoolean}),
		newPipeline(LLM, isJSON(LLM), []string{"messages"},
			field{"messages", kMessages}, field{"model", kString}, field{"temperature", kNumber},
			field{"max_tokens", kInteger}, field{"top_p", kNumber}, field{"top_k", kInteger},
			field{"stream", kBoolean}),
		newPipeline(ImageToText, isJSON(ImageToText), []string{"image", "model_id"},
			field{"image", kFile}, field{"prompt", kString}, field{"model_id", kString}),
		newPipeline(TextToSpeech, isJSON(TextToSpeech), []string{"model_id"},
			field{"model_id", kString}, field{"text", kString}, field{"description", kString}),
	} {
		pipelineSpecs[p.name] = p
		q := *p
		q.required = slices.DeleteFunc(slices.Clone(p.required), func(n string) bool { return n == "model_id" })
		studioSpecs[p.name] = &q
	}
	studioSpecs[LLM] = studioLLMSpec
}

// isJSON reads the request encoding from genservice's pipeline table.
func isJSON(name string) bool {
	p, _ := pipelines.Get(name)
	return p.JSON
}
