package livepeer

import (
	"genservice/livepeer/pipeline"

	"errors"
	"fmt"
)

// Pipeline names, as they appear in gateway paths (from the pipeline table).
const (
	PipelineTextToImage      = pipeline.TextToImage
	PipelineImageToImage     = pipeline.ImageToImage
	PipelineImageToVideo     = pipeline.ImageToVideo
	PipelineUpscale          = pipeline.Upscale
	PipelineAudioToText      = pipeline.AudioToText
	PipelineSegmentAnything2 = pipeline.SegmentAnything2
	PipelineLLM              = pipeline.LLM
	PipelineImageToText      = pipeline.ImageToText
	PipelineTextToSpeech     = pipeline.TextToSpeech
)

// Pipelines lists every batch pipeline genservice serves.
var Pipelines = pipeline.Names()

// DefaultModels is each pipeline's default model, from the pipeline table.
var DefaultModels = func() map[string]string {
	m := map[string]string{}
	for _, p := range pipeline.All() {
		m[p.Name] = p.DefaultModel
	}
	return m
}()

// File is an uploaded media file. Content is referenced, not copied, when the request
// body is built.
type File struct {
	Filename    string
	ContentType string
	Content     []byte
}

// TextToImageParams is the gateway's TextToImageParams (JSON). Pointer fields are
// optional: nil leaves the gateway's default.
type TextToImageParams struct {
	ModelID            string   `json:"model_id"`
	Prompt             string   `json:"prompt"`
	Loras              Loras    `json:"loras,omitempty"`
	Height             *int32   `json:"height,omitempty"`
	Width              *int32   `json:"width,omitempty"`
	GuidanceScale      *float64 `json:"guidance_scale,omitempty"`
	NegativePrompt     *string  `json:"negative_prompt,omitempty"`
	SafetyCheck        *bool    `json:"safety_check,omitempty"`
	Seed               *int64   `json:"seed,omitempty"`
	NumInferenceSteps  *int32   `json:"num_inference_steps,omitempty"`
	NumImagesPerPrompt *int32   `json:"num_images_per_prompt,omitempty"`
}

// ImageToImageParams is the gateway's Body_genImageToImage (multipart).
type ImageToImageParams struct {
	ModelID            string
	Prompt             string
	Image              File
	Loras              Loras
	Strength           *float64
	GuidanceScale      *float64
	ImageGuidanceScale *float64
	NegativePrompt     *string
	SafetyCheck        *bool
	Seed               *int64
	NumInferenceSteps  *int32
	NumImagesPerPrompt *int32
}

func (p *ImageToImageParams) form() *form {
	f := &form{}
	f.str("model_id", p.ModelID)
	f.str("prompt", p.Prompt)
	f.loras("loras", p.Loras)
	f.optFloat("strength", p.Strength)
	f.optFloat("guidance_scale", p.GuidanceScale)
	f.optFloat("image_guidance_scale", p.ImageGuidanceScale)
	f.optStr("negative_prompt", p.NegativePrompt)
	f.optBool("safety_check", p.SafetyCheck)
	f.optInt("seed", p.Seed)
	f.optInt32("num_inference_steps", p.NumInferenceSteps)
	f.optInt32("num_images_per_prompt", p.NumImagesPerPrompt)
	f.file("image", p.Image)
	return f
}

// ImageToVideoParams is the gateway's Body_genImageToVideo (multipart).
type ImageToVideoParams struct {
	ModelID           string
	Image             File
	Height            *int32
	Width             *int32
	FPS               *int32
	MotionBucketID    *int32
	NoiseAugStrength  *float64
	SafetyCheck       *bool
	Seed              *int64
	NumInferenceSteps *int32
}

func (p *ImageToVideoParams) form() *form {
	f := &form{}
	f.str("model_id", p.ModelID)
	f.optInt32("height", p.Height)
	f.optInt32("width", p.Width)
	f.optInt32("fps", p.FPS)
	f.optInt32("motion_bucket_id", p.MotionBucketID)
	f.optFloat("noise_aug_strength", p.NoiseAugStrength)
	f.optBool("safety_check", p.SafetyCheck)
	f.optInt("seed", p.Seed)
	f.optInt32("num_inference_steps", p.NumInferenceSteps)
	f.file("image", p.Image)
	return f
}

// UpscaleParams is the gateway's Body_genUpscale (multipart).
type UpscaleParams struct {
	ModelID           string
	Prompt            string
	Image             File
	SafetyCheck       *bool
	Seed              *int64
	NumInferenceSteps *int32
}

func (p *UpscaleParams) form() *form {
	f := &form{}
	f.str("model_id", p.ModelID)
	f.str("prompt", p.Prompt)
	f.optBool("safety_check", p.SafetyCheck)
	f.optInt("seed", p.Seed)
	f.optInt32("num_inference_steps", p.NumInferenceSteps)
	f.file("image", p.Image)
	return f
}

// AudioToTextParams is the gateway's Body_genAudioToText (multipart).
type AudioToTextParams struct {
	ModelID          string
	Audio            File
	ReturnTimestamps Timestamps
}

func (p *AudioToTextParams) form() *form {
	f := &form{}
	f.str("model_id", p.ModelID)
	if v, ok := gatewayTimestamps(p.ReturnTimestamps); ok {
		f.str("return_timestamps", v)
	} else if p.ReturnTimestamps != TimestampsDefault {
		f.fail("return_timestamps", "is not a known timestamps setting")
	}
	f.file("audio", p.Audio)
	return f
}

// SegmentAnything2Params is the gateway's Body_genSegmentAnything2 (multipart).
type SegmentAnything2Params struct {
	ModelID         string
	Image           File
	PointCoords     []Point
	PointLabels     []int32
	Box             *Box
	MaskInput       *Mask
	MultimaskOutput *bool
	ReturnLogits    *bool
	NormalizeCoords *bool
}

func (p *SegmentAnything2Params) form() *form {
	f := &form{}
	f.str("model_id", p.ModelID)
	f.points("point_coords", p.PointCoords)
	f.labels("point_labels", p.PointLabels)
	f.box("box", p.Box)
	f.maskInput("mask_input", p.MaskInput)
	f.optBool("multimask_output", p.MultimaskOutput)
	f.optBool("return_logits", p.ReturnLogits)
	f.optBool("normalize_coords", p.NormalizeCoords)
	f.file("image", p.Image)
	return f
}

// ImageToTextParams is the gateway's Body_genImageToText (multipart).
type ImageToTextParams struct {
	ModelID string
	Image   File
	Prompt  *string
}

func (p *ImageToTextParams) form() *form {
	f := &form{}
	f.str("model_id", p.ModelID)
	f.optStr("prompt", p.Prompt)
	f.file("image", p.Image)
	return f
}

// LLMMessage is one chat message.
type LLMMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// LLMRequest is the gateway's LLMRequest (JSON). Model, MaxTokens and Stream are always
// sent: a go-livepeer gateway answers 400 "missing required fields" without them.
type LLMRequest struct {
	Messages    []LLMMessage `json:"messages"`
	Model       string       `json:"model"`
	Temperature *float64     `json:"temperature,omitempty"`
	MaxTokens   int32        `json:"max_tokens"`
	TopP        *float64     `json:"top_p,omitempty"`
	TopK        *int32       `json:"top_k,omitempty"`
	Stream      bool         `json:"stream"`
}

// DefaultLLMMaxTokens is the gateway's default max_tokens, sent when the caller sets none.
const DefaultLLMMaxTokens = 256

// TextToSpeechParams is the gateway's TextToSpeechParams (JSON).
type TextToSpeechParams struct {
	ModelID     string  `json:"model_id"`
	Text        string  `json:"text"`
	Description *string `json:"description,omitempty"`
}

// Media is one generated image or video.
type Media struct {
	URL  string `json:"url"`
	Seed int64  `json:"seed"`
	NSFW bool   `json:"nsfw"`
}

// ImageResponse is the gateway's ImageResponse and VideoResponse.
type ImageResponse struct {
	Images []Media `json:"images"`
}

func (r *ImageResponse) check() error {
	if r.Images == nil {
		return errors.New(`missing "images"`)
	}
	for i, m := range r.Images {
		if m.URL == "" {
			return fmt.Errorf("images[%d] has no url", i)
		}
	}
	return nil
}

// MediaURL is a result known only by its URL.
type MediaURL struct {
	URL string `json:"url"`
}

// AudioResponse is the gateway's AudioResponse.
type AudioResponse struct {
	Audio *MediaURL `json:"audio"`
}

func (r *AudioResponse) check() error {
	if r.Audio == nil || r.Audio.URL == "" {
		return errors.New(`missing "audio.url"`)
	}
	return nil
}

// Chunk is a timed segment of a transcription. Timestamp is [start, end] in seconds;
// either may be null.
type Chunk struct {
	Text      string     `json:"text"`
	Timestamp []*float64 `json:"timestamp"`
}

// TextResponse is the gateway's TextResponse.
type TextResponse struct {
	Text   *string `json:"text"`
	Chunks []Chunk `json:"chunks"`
}

func (r *TextResponse) check() error {
	if r.Text == nil {
		return errors.New(`missing "text"`)
	}
	return nil
}

// MasksResponse is the gateway's MasksResponse; the arrays arrive as text.
type MasksResponse struct {
	Masks  *string `json:"masks"`
	Scores *string `json:"scores"`
	Logits *string `json:"logits"`
}

func (r *MasksResponse) check() error {
	if r.Masks == nil || r.Scores == nil || r.Logits == nil {
		return errors.New(`missing "masks", "scores" or "logits"`)
	}
	return nil
}

// ImageToTextResponse is the gateway's ImageToTextResponse.
type ImageToTextResponse struct {
	Text *string `json:"text"`
}

func (r *ImageToTextResponse) check() error {
	if r.Text == nil {
		return errors.New(`missing "text"`)
	}
	return nil
}

// LLMTokenUsage counts tokens.
type LLMTokenUsage struct {
	PromptTokens     int32 `json:"prompt_tokens"`
	CompletionTokens int32 `json:"completion_tokens"`
	TotalTokens      int32 `json:"total_tokens"`
}

// LLMChoice is one completion candidate.
type LLMChoice struct {
	Index        int32       `json:"index"`
	FinishReason string      `json:"finish_reason"`
	Delta        *LLMMessage `json:"delta,omitempty"`
	Message      *LLMMessage `json:"message,omitempty"`
}

// LLMResponse is the gateway's LLMResponse, also used for each streamed event.
type LLMResponse struct {
	ID      string         `json:"id"`
	Model   string         `json:"model"`
	Created int64          `json:"created"`
	Usage   *LLMTokenUsage `json:"usage"`
	Choices []LLMChoice    `json:"choices"`
}

func (r *LLMResponse) check() error {
	if r.Choices == nil {
		return errors.New(`missing "choices"`)
	}
	return nil
}

// Timestamps is AudioToText's return_timestamps setting.
type Timestamps int

// The return_timestamps settings. TimestampsDefault sends nothing, so the gateway's
// default (sentence timestamps) applies.
const (
	TimestampsDefault Timestamps = iota
	TimestampsSentence
	TimestampsWord
	TimestampsNone
)

// gatewayTimestamps spells return_timestamps so that every gateway reads it the same:
// the runner lowercases the value (true, 1 and sentence mean sentence timestamps; false
// and 0 none; word words), while Livepeer Studio turns "true", "false", "1" and "0" into
// a boolean or a number and refuses them (UPSTREAM §12.1). "sentence", "word" and
// "False" pass Studio as strings and mean the same to the runner; "false" would not.
// ok is false for TimestampsDefault (send nothing) and for an unknown setting.
func gatewayTimestamps(t Timestamps) (v string, ok bool) {
	switch t {
	case TimestampsSentence:
		return "sentence", true
	case TimestampsWord:
		return "word", true
	case TimestampsNone:
		return "False", true
	}
	return "", false
}
