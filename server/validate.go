package server

import (
	"encoding/json"
	"strings"

	generationv1 "genservice/gen/livepeer/generation/v1"
)

// violations collects field errors for one request; checks read like the rules in the
// proto comments.
type violations []FieldViolation

func (v *violations) add(field, desc string) { *v = append(*v, FieldViolation{field, desc}) }

func (v *violations) required(field, value string) {
	if strings.TrimSpace(value) == "" {
		v.add(field, "is required and must not be empty")
	}
}

func (v *violations) file(field string, f *generationv1.InputFile) {
	if f == nil || len(f.GetContent()) == 0 {
		v.add(field+".content", "is required: the file's bytes")
	}
}

func (v *violations) positive(field string, x *int32) {
	if x != nil && *x <= 0 {
		v.add(field, "must be greater than 0 when set")
	}
}

func (v *violations) nonNegative(field string, x *float64) {
	if x != nil && *x < 0 {
		v.add(field, "must not be negative when set")
	}
}

func (v *violations) unit(field string, x *float64) {
	if x != nil && (*x < 0 || *x > 1) {
		v.add(field, "must be between 0 and 1 when set")
	}
}

func (v *violations) jsonArray(field string, s *string) {
	if s == nil {
		return
	}
	var arr []any
	if err := json.Unmarshal([]byte(*s), &arr); err != nil {
		v.add(field, "must be a JSON array, e.g. [[120, 80]]")
	}
}

func validateTextToImage(r *generationv1.TextToImageRequest) violations {
	var v violations
	v.required("prompt", r.GetPrompt())
	v.positive("height", r.Height)
	v.positive("width", r.Width)
	v.nonNegative("guidance_scale", r.GuidanceScale)
	v.positive("num_inference_steps", r.NumInferenceSteps)
	v.positive("num_images_per_prompt", r.NumImagesPerPrompt)
	return v
}

func validateImageToImage(r *generationv1.ImageToImageRequest) violations {
	var v violations
	v.required("prompt", r.GetPrompt())
	v.file("image", r.GetImage())
	v.unit("strength", r.Strength)
	v.nonNegative("guidance_scale", r.GuidanceScale)
	v.nonNegative("image_guidance_scale", r.ImageGuidanceScale)
	v.positive("num_inference_steps", r.NumInferenceSteps)
	v.positive("num_images_per_prompt", r.NumImagesPerPrompt)
	return v
}

func validateImageToVideo(r *generationv1.ImageToVideoRequest) violations {
	var v violations
	v.file("image", r.GetImage())
	for _, d := range []struct {
		name string
		val  *int32
	}{{"height", r.Height}, {"width", r.Width}} {
		v.positive(d.name, d.val)
		if d.val != nil && *d.val > 0 && *d.val%8 != 0 {
			v.add(d.name, "must be divisible by 8")
		}
	}
	v.positive("fps", r.Fps)
	v.nonNegative("noise_aug_strength", r.NoiseAugStrength)
	v.positive("num_inference_steps", r.NumInferenceSteps)
	return v
}

func validateUpscale(r *generationv1.UpscaleRequest) violations {
	var v violations
	v.required("prompt", r.GetPrompt())
	v.file("image", r.GetImage())
	v.positive("num_inference_steps", r.NumInferenceSteps)
	return v
}

var returnTimestamps = map[string]bool{"sentence": true, "word": true, "true": true, "false": true, "1": true, "0": true}

func validateAudioToText(r *generationv1.AudioToTextRequest) violations {
	var v violations
	v.file("audio", r.GetAudio())
	if r.ReturnTimestamps != nil && !returnTimestamps[*r.ReturnTimestamps] {
		v.add("return_timestamps", `must be "sentence", "word", "true" or "false"`)
	}
	return v
}

func validateSegmentAnything2(r *generationv1.SegmentAnything2Request) violations {
	var v violations
	v.file("image", r.GetImage())
	v.jsonArray("point_coords", r.PointCoords)
	v.jsonArray("point_labels", r.PointLabels)
	v.jsonArray("box", r.Box)
	v.jsonArray("mask_input", r.MaskInput)
	return v
}

var llmRoles = map[string]bool{"system": true, "user": true, "assistant": true}

func validateLLM(messages []*generationv1.LLMMessage, maxTokens *int32, topP *float64) violations {
	var v violations
	if len(messages) == 0 {
		v.add("messages", "is required: at least one message")
	}
	for i, m := range messages {
		if !llmRoles[m.GetRole()] {
			v.add("messages["+itoa(i)+"].role", `must be "system", "user" or "assistant"`)
		}
	}
	v.positive("max_tokens", maxTokens)
	if topP != nil && (*topP <= 0 || *topP > 1) {
		v.add("top_p", "must be in (0, 1] when set")
	}
	return v
}

func validateImageToText(r *generationv1.ImageToTextRequest) violations {
	var v violations
	v.file("image", r.GetImage())
	return v
}

func validateTextToSpeech(r *generationv1.TextToSpeechRequest) violations {
	var v violations
	v.required("text", r.GetText())
	return v
}
