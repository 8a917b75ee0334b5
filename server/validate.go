package server

import (
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

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

// Bounds of the numeric request fields. The gateway's OpenAPI spec gives types and
// defaults but no ranges, so each bound is either the upstream's own limit (with the
// UPSTREAM.md section it comes from) or our own sanity bound, set well above the
// defaults and what the models are made for: no sensible request is refused, while
// absurd ones (width 100000, a million images) never occupy a paid GPU for minutes or
// wedge a runner with an out-of-memory error (UPSTREAM.md §9, item 2). Generation time
// grows linearly with steps, resolution and image count (UPSTREAM.md §8).
const (
	// maxPixels bounds height and width (our own bound): twice the largest default
	// side (1024 for text-to-image and image-to-video); SDXL and SVD are trained around
	// one megapixel, and a 24 GB GPU (UPSTREAM.md §8) runs out of memory well before
	// 4096×4096.
	maxPixels = 2048
	// pixelStep: the diffusion pipelines work on a latent eight times smaller, and
	// refuse other sizes ("`height` and `width` have to be divisible by 8",
	// UPSTREAM.md §3.3, the diffusers check every image pipeline of the runner shares).
	pixelStep = 8
	// maxSteps bounds num_inference_steps (our own bound): five times the largest
	// default (100 for image-to-image); quality stops improving long before.
	maxSteps = 500
	// maxImages bounds num_images_per_prompt (our own bound): the runner generates the
	// images one after another (UPSTREAM.md §3.1), so ten already takes ten times as
	// long, and each result is stored and, with inline_media, fetched into the response.
	maxImages = 10
	// maxGuidance bounds guidance_scale and image_guidance_scale (our own bound): the
	// defaults are 7.5 and 1.5; far above 20 the image saturates into noise.
	maxGuidance = 30
	// maxFPS bounds fps (our own bound): SVD makes a couple of dozen frames, so the
	// default 6 gives a few seconds of video; above 60 it lasts a fraction of a second.
	maxFPS = 60
	// maxMotionBucket: Stable Video Diffusion's motion conditioning is a bucket id from
	// 0 to 255 (the default 127 is the middle); larger values are outside what it was
	// trained on.
	maxMotionBucket = 255
	// maxSeed is the largest integer Livepeer Studio carries exactly: it parses JSON
	// bodies in Node.js and rebuilds them (UPSTREAM.md §6), so a larger seed would reach
	// the runner as a different number and the result could not be reproduced. The
	// runner's own random seeds are 32-bit (UPSTREAM.md §3.1).
	maxSeed = 1<<53 - 1
	// maxTemperature: the runner accepts temperature 0 to 2 (UPSTREAM.md §12.6).
	maxTemperature = 2
	// maxLLMTokens bounds max_tokens: the runner's context is 8192 tokens
	// (MAX_MODEL_LEN, UPSTREAM.md §3.7, §5) and the gateway prices a request by
	// max_tokens, so more can never be generated and would only be paid for.
	maxLLMTokens = 8192
	// maxContentTypeLen bounds InputFile.content_type: RFC 6838 limits type and subtype
	// names to 127 characters each.
	maxContentTypeLen = 255
	// maxFilenameLen bounds InputFile.filename: the common file-system limit for one
	// name.
	maxFilenameLen = 255
)

func (v *violations) file(field string, f *generationv1.InputFile) {
	if f == nil || len(f.GetContent()) == 0 {
		v.add(field+".content", "is required: the file's bytes")
	}
	if ct := f.GetContentType(); ct != "" && !validContentType(ct) {
		v.add(field+".content_type", fmt.Sprintf(`must be a MIME type such as "image/png": type/subtype with optional parameters, printable ASCII only (no CR, LF or other control characters), at most %d bytes`, maxContentTypeLen))
	}
	if name := f.GetFilename(); name != "" && !validFilename(name) {
		v.add(field+".filename", fmt.Sprintf(`must be a plain file name such as "photo.png": valid UTF-8, no control characters (CR, LF, ...), no "/" or "\", not "." or "..", at most %d bytes`, maxFilenameLen))
	}
}

// validContentType: the value is written verbatim as the part's Content-Type header,
// so anything but a well-formed media type in printable ASCII could end the header line
// and inject headers (CR/LF) or confuse the gateway's multipart parser.
func validContentType(ct string) bool {
	if len(ct) > maxContentTypeLen {
		return false
	}
	for i := 0; i < len(ct); i++ {
		if ct[i] < 0x20 || ct[i] > 0x7e {
			return false
		}
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && strings.Contains(mt, "/")
}

// validFilename: the name goes into the part's Content-Disposition header as a quoted
// string. Quotes are escaped there, but control characters would break the header, and a
// path is not a file name: multer (Livepeer Studio) keeps only the last path element, so
// "a/b.png" would silently arrive as "b.png".
func validFilename(name string) bool {
	return len(name) <= maxFilenameLen && utf8.ValidString(name) &&
		!strings.ContainsFunc(name, unicode.IsControl) &&
		!strings.ContainsAny(name, `/\`) && name != "." && name != ".."
}

// intRange checks lo <= x <= hi for a set field.
func (v *violations) intRange(field string, x *int32, lo, hi int32) {
	if x != nil && (*x < lo || *x > hi) {
		v.add(field, fmt.Sprintf("must be from %d to %d when set (got %d)", lo, hi, *x))
	}
}

// pixels checks a height or width: a multiple of pixelStep up to maxPixels.
func (v *violations) pixels(field string, x *int32) {
	if x != nil && (*x < pixelStep || *x > maxPixels || *x%pixelStep != 0) {
		v.add(field, fmt.Sprintf("must be a multiple of %d from %d to %d when set (got %d)", pixelStep, pixelStep, maxPixels, *x))
	}
}

// floatRange checks lo <= x <= hi (lo < x when loOpen) for a set field. NaN and ±Inf
// fail every range: JSON cannot carry them at all, and a multipart field would carry
// the text "NaN" to a model.
func (v *violations) floatRange(field string, x *float64, lo, hi float64) {
	if x == nil {
		return
	}
	rng := "from " + strconv.FormatFloat(lo, 'g', -1, 64) + " to " + strconv.FormatFloat(hi, 'g', -1, 64)
	switch {
	case math.IsNaN(*x) || math.IsInf(*x, 0):
		v.add(field, fmt.Sprintf("must be a finite number %s when set (got %v)", rng, *x))
	case *x < lo || *x > hi:
		v.add(field, fmt.Sprintf("must be %s when set (got %g)", rng, *x))
	}
}

// seed checks a seed against 0..maxSeed.
func (v *violations) seed(field string, x *int64) {
	if x != nil && (*x < 0 || *x > maxSeed) {
		v.add(field, fmt.Sprintf("must be from 0 to %d when set (got %d)", int64(maxSeed), *x))
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
	v.pixels("height", r.Height)
	v.pixels("width", r.Width)
	v.floatRange("guidance_scale", r.GuidanceScale, 0, maxGuidance)
	v.seed("seed", r.Seed)
	v.intRange("num_inference_steps", r.NumInferenceSteps, 1, maxSteps)
	v.intRange("num_images_per_prompt", r.NumImagesPerPrompt, 1, maxImages)
	return v
}

func validateImageToImage(r *generationv1.ImageToImageRequest) violations {
	var v violations
	v.required("prompt", r.GetPrompt())
	v.file("image", r.GetImage())
	// strength: "Degree of transformation ... (0 to 1)" in the gateway spec.
	v.floatRange("strength", r.Strength, 0, 1)
	v.floatRange("guidance_scale", r.GuidanceScale, 0, maxGuidance)
	v.floatRange("image_guidance_scale", r.ImageGuidanceScale, 0, maxGuidance)
	v.seed("seed", r.Seed)
	v.intRange("num_inference_steps", r.NumInferenceSteps, 1, maxSteps)
	v.intRange("num_images_per_prompt", r.NumImagesPerPrompt, 1, maxImages)
	return v
}

func validateImageToVideo(r *generationv1.ImageToVideoRequest) violations {
	var v violations
	v.file("image", r.GetImage())
	v.pixels("height", r.Height)
	v.pixels("width", r.Width)
	v.intRange("fps", r.Fps, 1, maxFPS)
	v.intRange("motion_bucket_id", r.MotionBucketId, 0, maxMotionBucket)
	// noise_aug_strength is the standard deviation of noise added to an image whose
	// pixels span -1 to 1 (default 0.02): at 1 the noise is as strong as the image, so
	// larger values (our own bound) only destroy the input.
	v.floatRange("noise_aug_strength", r.NoiseAugStrength, 0, 1)
	v.seed("seed", r.Seed)
	v.intRange("num_inference_steps", r.NumInferenceSteps, 1, maxSteps)
	return v
}

func validateUpscale(r *generationv1.UpscaleRequest) violations {
	var v violations
	v.required("prompt", r.GetPrompt())
	v.file("image", r.GetImage())
	v.seed("seed", r.Seed)
	v.intRange("num_inference_steps", r.NumInferenceSteps, 1, maxSteps)
	return v
}

var returnTimestamps = map[string]bool{"sentence": true, "word": true, "true": true, "false": true, "1": true, "0": true}

func validateAudioToText(r *generationv1.AudioToTextRequest) violations {
	var v violations
	v.file("audio", r.GetAudio())
	// Any letter case: genservice spells the value for the gateway (livepeer.gatewayTimestamps).
	if r.ReturnTimestamps != nil && !returnTimestamps[strings.ToLower(*r.ReturnTimestamps)] {
		v.add("return_timestamps", `must be "sentence", "word", "true" or "false" (any letter case; "1" and "0" also work)`)
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

func validateLLM(messages []*generationv1.LLMMessage, temperature *float64, maxTokens *int32, topP *float64, topK *int32) violations {
	var v violations
	if len(messages) == 0 {
		v.add("messages", "is required: at least one message")
	}
	for i, m := range messages {
		if !llmRoles[m.GetRole()] {
			v.add("messages["+itoa(i)+"].role", `must be "system", "user" or "assistant"`)
		}
	}
	// The ranges the runner enforces (UPSTREAM.md §12.6): temperature 0–2, top_p 0–1
	// inclusive, max_tokens at least 1.
	v.floatRange("temperature", temperature, 0, maxTemperature)
	v.intRange("max_tokens", maxTokens, 1, maxLLMTokens)
	v.floatRange("top_p", topP, 0, 1)
	// top_k: -1 disables it; there is no upper bound because a top_k larger than the
	// model's vocabulary simply keeps every token.
	if topK != nil && *topK != -1 && *topK < 1 {
		v.add("top_k", fmt.Sprintf("must be -1 (disabled) or at least 1 when set (got %d)", *topK))
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
