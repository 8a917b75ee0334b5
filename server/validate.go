package server

import (
	"fmt"
	"maps"
	"math"
	"mime"
	"slices"
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
	// maxLoras bounds the number of LoRA adapters (our own bound): the runner loads
	// each one onto the GPU before generating, and LoRAs are combined a few at a time;
	// dozens would only make the call slow and likely fail upstream.
	maxLoras = 16
	// maxLoraName bounds a LoRA adapter name, a Hugging Face repository id: the Hub
	// allows 96 characters for each of owner and name.
	maxLoraName = 256
	// maxPoints bounds point_coords (our own bound): SAM2 encodes each point as a
	// prompt token; a few, or a few dozen, pick an object, and thousands are no prompt.
	maxPoints = 1024
	// maskInputSide: SAM2 takes mask_input as a 256×256 low-resolution mask, the size
	// of the logits it returns (UPSTREAM.md §3.6); another size fails in the runner.
	maskInputSide = 256
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

// finite checks that a number a request carries into JSON is finite: JSON has no NaN or
// infinity, and the gateway's parser would refuse the text.
func (v *violations) finite(field string, x float64) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		v.add(field, fmt.Sprintf("must be a finite number (got %v)", x))
		return false
	}
	return true
}

// loras checks the LoRA map. Keys are checked in sorted order, so the violations
// come out the same for the same request.
func (v *violations) loras(l map[string]float64) {
	if len(l) > maxLoras {
		v.add("loras", fmt.Sprintf("must name at most %d LoRA adapters (got %d)", maxLoras, len(l)))
	}
	for _, name := range slices.Sorted(maps.Keys(l)) {
		switch {
		case strings.TrimSpace(name) == "":
			v.add("loras", "adapter names must not be empty")
		case len(name) > maxLoraName:
			v.add("loras", fmt.Sprintf("adapter names must be at most %d bytes (got one of %d)", maxLoraName, len(name)))
		default:
			v.finite(fmt.Sprintf("loras[%q]", name), l[name])
		}
	}
}

func validateTextToImage(r *generationv1.TextToImageRequest) violations {
	var v violations
	v.required("prompt", r.GetPrompt())
	v.loras(r.GetLoras())
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
	v.loras(r.GetLoras())
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

func validateAudioToText(r *generationv1.AudioToTextRequest) violations {
	var v violations
	v.file("audio", r.GetAudio())
	// An open enum can carry a number this version does not know.
	if _, ok := timestamps[r.GetReturnTimestamps()]; !ok {
		v.add("return_timestamps", fmt.Sprintf("must be RETURN_TIMESTAMPS_SENTENCE, RETURN_TIMESTAMPS_WORD, RETURN_TIMESTAMPS_NONE or unset (got %d)", r.GetReturnTimestamps()))
	}
	return v
}

func validateSegmentAnything2(r *generationv1.SegmentAnything2Request) violations {
	var v violations
	v.file("image", r.GetImage())
	points, labels := r.GetPointCoords(), r.GetPointLabels()
	if len(points) > maxPoints {
		v.add("point_coords", fmt.Sprintf("must have at most %d points (got %d)", maxPoints, len(points)))
	} else {
		for i, p := range points {
			v.finite("point_coords["+itoa(i)+"].x", p.GetX())
			v.finite("point_coords["+itoa(i)+"].y", p.GetY())
		}
	}
	// The runner pairs points and labels by position.
	if len(labels) != len(points) {
		v.add("point_labels", fmt.Sprintf("must have one label per point_coords entry (got %d labels for %d points)", len(labels), len(points)))
	} else {
		for i, l := range labels {
			if l != 0 && l != 1 {
				v.add("point_labels["+itoa(i)+"]", fmt.Sprintf("must be 1 (foreground) or 0 (background) (got %d)", l))
			}
		}
	}
	if b := r.GetBox(); b != nil {
		ok := v.finite("box.x1", b.GetX1())
		ok = v.finite("box.y1", b.GetY1()) && ok
		ok = v.finite("box.x2", b.GetX2()) && ok
		ok = v.finite("box.y2", b.GetY2()) && ok
		if ok && (b.GetX1() > b.GetX2() || b.GetY1() > b.GetY2()) {
			v.add("box", "must go from its top-left corner (x1, y1) to its bottom-right corner (x2, y2): x1 <= x2 and y1 <= y2")
		}
	}
	if m := r.GetMaskInput(); m != nil {
		v.maskInput(m)
	}
	return v
}

func (v *violations) maskInput(m *generationv1.Mask) {
	h, w, n := m.GetHeight(), m.GetWidth(), len(m.GetValues())
	if h != maskInputSide || w != maskInputSide {
		v.add("mask_input", fmt.Sprintf("must be %d×%d, the size of the logits SAM2 returns (got height %d, width %d)", maskInputSide, maskInputSide, h, w))
	}
	if int64(h)*int64(w) != int64(n) {
		v.add("mask_input.values", fmt.Sprintf("must hold height×width values (got %d for %d×%d)", n, h, w))
	}
	// One violation for the first bad value is enough to act on.
	for i, x := range m.GetValues() {
		if !v.finite("mask_input.values["+itoa(i)+"]", float64(x)) {
			break
		}
	}
}

func validateLlm(r *generationv1.LlmRequest) violations {
	var v violations
	if len(r.GetMessages()) == 0 {
		v.add("messages", "is required: at least one message")
	}
	for i, m := range r.GetMessages() {
		if _, ok := llmRoles[m.GetRole()]; !ok {
			v.add("messages["+itoa(i)+"].role", fmt.Sprintf("must be LLM_ROLE_SYSTEM, LLM_ROLE_USER or LLM_ROLE_ASSISTANT (got %s)", roleName(m.GetRole())))
		}
	}
	// The ranges the runner enforces (UPSTREAM.md §12.6): temperature 0–2, top_p 0–1
	// inclusive, max_tokens at least 1.
	v.floatRange("temperature", r.Temperature, 0, maxTemperature)
	v.intRange("max_tokens", r.MaxTokens, 1, maxLLMTokens)
	v.floatRange("top_p", r.TopP, 0, 1)
	// top_k: -1 disables it; there is no upper bound because a top_k larger than the
	// model's vocabulary simply keeps every token.
	if topK := r.TopK; topK != nil && *topK != -1 && *topK < 1 {
		v.add("top_k", fmt.Sprintf("must be -1 (disabled) or at least 1 when set (got %d)", *topK))
	}
	return v
}

// roleName is the enum value's name, or its number when this version does not know it.
func roleName(r generationv1.LlmRole) string {
	if name, ok := generationv1.LlmRole_name[int32(r)]; ok {
		return name
	}
	return strconv.Itoa(int(r))
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
