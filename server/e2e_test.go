package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/livepeer/livepeertest/openapicheck"
	"genservice/server"
)

func ptr[T any](v T) *T { return &v }

// wantFile is a multipart file part the simulator must have received.
type wantFile struct {
	filename, contentType string
	content               []byte
}

// happyCase is one successful call and everything it must have caused upstream.
type happyCase struct {
	name     string
	pipeline string
	call     func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error)
	// wantJSON is the exact JSON body for JSON pipelines.
	wantJSON string
	// wantForm and wantFiles are the exact multipart text fields and files.
	wantForm  map[string]string
	wantFiles map[string]wantFile
	check     func(t *testing.T, h *harness, resp proto.Message)
}

const transcriptText = " Hello from the Livepeer simulator. This transcript is always the same."

// checkMedia asserts simulator-served result media: absolute URLs on the simulator's
// origin with the extension, consecutive seeds from seed, nsfw false.
func checkMedia(t *testing.T, h *harness, got []*generationv1.Media, n int, seed int64, ext string) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d media, want %d: %v", len(got), n, got)
	}
	for i, m := range got {
		if !strings.HasPrefix(m.GetUrl(), h.sim.Origin()+"/stream/") || !strings.HasSuffix(m.GetUrl(), "."+ext) {
			t.Errorf("media[%d].url = %q, want an absolute %s URL on %s", i, m.GetUrl(), ext, h.sim.Origin())
		}
		if m.GetSeed() != seed+int64(i) {
			t.Errorf("media[%d].seed = %d, want %d", i, m.GetSeed(), seed+int64(i))
		}
		if m.GetNsfw() {
			t.Errorf("media[%d].nsfw = true", i)
		}
	}
}

// checkMasks asserts masks of h×w with the given values, in order.
func checkMasks(t *testing.T, what string, got []*generationv1.Mask, h, w int32, want [][]float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d, want %d: %v", what, len(got), len(want), got)
	}
	for i, m := range got {
		if m.GetHeight() != h || m.GetWidth() != w || !slices.Equal(m.GetValues(), want[i]) {
			t.Errorf("%s[%d] = %v, want %d×%d %v", what, i, m, h, w, want[i])
		}
	}
}

// samMaskInput is a 256×256 mask_input with a few distinct values; samMaskInputJSON is
// the 1×256×256 JSON the gateway must receive for it, written out independently.
func samMaskInput() *generationv1.Mask {
	m := &generationv1.Mask{Height: 256, Width: 256, Values: make([]float32, 256*256)}
	m.Values[0], m.Values[1], m.Values[256], m.Values[256*256-1] = 0.5, -2.25, 3, 1e-7
	return m
}

func samMaskInputJSON() string {
	rows := make([]string, 256)
	for r := range rows {
		cells := make([]string, 256)
		for c := range cells {
			cells[c] = "0"
		}
		switch r {
		case 0:
			cells[0], cells[1] = "0.5", "-2.25"
		case 1:
			cells[0] = "3"
		case 255:
			cells[255] = "1e-7"
		}
		rows[r] = "[" + strings.Join(cells, ",") + "]"
	}
	return "[[" + strings.Join(rows, ",") + "]]"
}

var happyCases = []happyCase{
	{
		name: "TextToImage/minimal", pipeline: livepeer.PipelineTextToImage,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk"})
		},
		wantJSON: `{"model_id":"SG161222/RealVisXL_V4.0_Lightning","prompt":"a lighthouse at dusk"}`,
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.TextToImageResponse).GetImages(), 1, 42, "png")
		},
	},
	{
		name: "TextToImage/all-fields", pipeline: livepeer.PipelineTextToImage,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.TextToImage(ctx, &generationv1.TextToImageRequest{
				ModelId: "ByteDance/SDXL-Lightning", Prompt: "a lighthouse at dusk",
				Loras: map[string]float64{"nerijs/pixel-art-xl": 0.75, "latent-consistency/lcm-lora-sdxl": 1.0}, Height: ptr[int32](512), Width: ptr[int32](768),
				GuidanceScale: ptr(7.5), NegativePrompt: ptr("blurry"), SafetyCheck: ptr(false), Seed: ptr[int64](0),
				NumInferenceSteps: ptr[int32](4), NumImagesPerPrompt: ptr[int32](2),
			})
		},
		// Zero values that the caller set (safety_check false, seed 0) are sent. The LoRA
		// map arrives as the JSON object in a string that the gateway takes, keys sorted.
		wantJSON: `{"model_id":"ByteDance/SDXL-Lightning","prompt":"a lighthouse at dusk","loras":"{\"latent-consistency/lcm-lora-sdxl\":1,\"nerijs/pixel-art-xl\":0.75}",
			"height":512,"width":768,"guidance_scale":7.5,"negative_prompt":"blurry","safety_check":false,"seed":0,
			"num_inference_steps":4,"num_images_per_prompt":2}`,
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.TextToImageResponse).GetImages(), 2, 0, "png")
		},
	},
	{
		name: "ImageToImage/minimal", pipeline: livepeer.PipelineImageToImage,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "make it blue", Image: &generationv1.InputFile{Content: pngBytes}})
		},
		wantForm:  map[string]string{"model_id": "timbrooks/instruct-pix2pix", "prompt": "make it blue"},
		wantFiles: map[string]wantFile{"image": {"image.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.ImageToImageResponse).GetImages(), 1, 42, "png")
		},
	},
	{
		name: "ImageToImage/all-fields", pipeline: livepeer.PipelineImageToImage,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.ImageToImage(ctx, &generationv1.ImageToImageRequest{
				ModelId: "stabilityai/sdxl-turbo", Prompt: "make it blue",
				Image: &generationv1.InputFile{Content: pngBytes, Filename: "cat photo.png", ContentType: "image/png"},
				Loras: map[string]float64{"nerijs/pixel-art-xl": 0.8}, Strength: ptr(0.8), GuidanceScale: ptr(7.5), ImageGuidanceScale: ptr(1.5),
				NegativePrompt: ptr("dark"), SafetyCheck: ptr(true), Seed: ptr[int64](7), NumInferenceSteps: ptr[int32](25),
				NumImagesPerPrompt: ptr[int32](3),
			})
		},
		wantForm: map[string]string{
			"model_id": "stabilityai/sdxl-turbo", "prompt": "make it blue", "loras": `{"nerijs/pixel-art-xl":0.8}`,
			"strength": "0.8", "guidance_scale": "7.5", "image_guidance_scale": "1.5", "negative_prompt": "dark",
			"safety_check": "true", "seed": "7", "num_inference_steps": "25", "num_images_per_prompt": "3",
		},
		wantFiles: map[string]wantFile{"image": {"cat photo.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.ImageToImageResponse).GetImages(), 3, 7, "png")
		},
	},
	{
		name: "ImageToVideo/minimal", pipeline: livepeer.PipelineImageToVideo,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.ImageToVideo(ctx, &generationv1.ImageToVideoRequest{Image: &generationv1.InputFile{Content: pngBytes}})
		},
		wantForm:  map[string]string{"model_id": "stabilityai/stable-video-diffusion-img2vid-xt-1-1"},
		wantFiles: map[string]wantFile{"image": {"image.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.ImageToVideoResponse).GetImages(), 1, 42, "mp4")
		},
	},
	{
		name: "ImageToVideo/all-fields", pipeline: livepeer.PipelineImageToVideo,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.ImageToVideo(ctx, &generationv1.ImageToVideoRequest{
				ModelId: "stabilityai/stable-video-diffusion-img2vid-xt",
				Image:   &generationv1.InputFile{Content: pngBytes, Filename: "frame.png", ContentType: "image/png"},
				Height:  ptr[int32](576), Width: ptr[int32](1024), Fps: ptr[int32](8), MotionBucketId: ptr[int32](127),
				NoiseAugStrength: ptr(0.02), SafetyCheck: ptr(false), Seed: ptr[int64](123), NumInferenceSteps: ptr[int32](25),
			})
		},
		wantForm: map[string]string{
			"model_id": "stabilityai/stable-video-diffusion-img2vid-xt", "height": "576", "width": "1024", "fps": "8",
			"motion_bucket_id": "127", "noise_aug_strength": "0.02", "safety_check": "false", "seed": "123",
			"num_inference_steps": "25",
		},
		wantFiles: map[string]wantFile{"image": {"frame.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.ImageToVideoResponse).GetImages(), 1, 123, "mp4")
		},
	},
	{
		name: "Upscale/minimal", pipeline: livepeer.PipelineUpscale,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.Upscale(ctx, &generationv1.UpscaleRequest{Prompt: "sharper", Image: &generationv1.InputFile{Content: pngBytes}})
		},
		wantForm:  map[string]string{"model_id": "stabilityai/stable-diffusion-x4-upscaler", "prompt": "sharper"},
		wantFiles: map[string]wantFile{"image": {"image.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.UpscaleResponse).GetImages(), 1, 42, "png")
		},
	},
	{
		name: "Upscale/all-fields", pipeline: livepeer.PipelineUpscale,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.Upscale(ctx, &generationv1.UpscaleRequest{
				ModelId: "stabilityai/stable-diffusion-x4-upscaler", Prompt: "sharper",
				Image:       &generationv1.InputFile{Content: pngBytes, Filename: "small.png", ContentType: "image/png"},
				SafetyCheck: ptr(true), Seed: ptr[int64](5), NumInferenceSteps: ptr[int32](10),
			})
		},
		wantForm: map[string]string{
			"model_id": "stabilityai/stable-diffusion-x4-upscaler", "prompt": "sharper", "safety_check": "true",
			"seed": "5", "num_inference_steps": "10",
		},
		wantFiles: map[string]wantFile{"image": {"small.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			checkMedia(t, h, resp.(*generationv1.UpscaleResponse).GetImages(), 1, 5, "png")
		},
	},
	{
		name: "AudioToText/minimal", pipeline: livepeer.PipelineAudioToText,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.AudioToText(ctx, &generationv1.AudioToTextRequest{Audio: &generationv1.InputFile{Content: wavBytes}})
		},
		wantForm:  map[string]string{"model_id": "openai/whisper-large-v3"},
		wantFiles: map[string]wantFile{"audio": {"audio.wav", "audio/wave", wavBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			r := resp.(*generationv1.AudioToTextResponse)
			if r.GetText() != transcriptText {
				t.Errorf("text = %q", r.GetText())
			}
			want := []struct {
				text       string
				start, end float64
			}{{" Hello from the Livepeer simulator.", 0, 1.35}, {" This transcript is always the same.", 1.35, 3.1}}
			if len(r.GetChunks()) != len(want) {
				t.Fatalf("chunks = %v", r.GetChunks())
			}
			for i, w := range want {
				c := r.GetChunks()[i]
				if c.GetText() != w.text || c.GetStartSeconds() != w.start || c.EndSeconds == nil || c.GetEndSeconds() != w.end {
					t.Errorf("chunk %d = %v, want %+v", i, c, w)
				}
			}
		},
	},
	{
		name: "AudioToText/all-fields", pipeline: livepeer.PipelineAudioToText,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.AudioToText(ctx, &generationv1.AudioToTextRequest{
				ModelId: "openai/whisper-large-v3", ReturnTimestamps: generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_WORD,
				Audio: &generationv1.InputFile{Content: wavBytes, Filename: "speech.wav", ContentType: "audio/wav"},
			})
		},
		wantForm:  map[string]string{"model_id": "openai/whisper-large-v3", "return_timestamps": "word"},
		wantFiles: map[string]wantFile{"audio": {"speech.wav", "audio/wav", wavBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			r := resp.(*generationv1.AudioToTextResponse)
			if r.GetText() != transcriptText {
				t.Errorf("text = %q", r.GetText())
			}
			if len(r.GetChunks()) != 11 {
				t.Fatalf("got %d word chunks, want 11: %v", len(r.GetChunks()), r.GetChunks())
			}
			first, last := r.GetChunks()[0], r.GetChunks()[10]
			if first.GetText() != " Hello" || first.GetStartSeconds() != 0 || first.GetEndSeconds() != 0.27 {
				t.Errorf("first word chunk = %v", first)
			}
			if last.GetText() != " same." || last.GetEndSeconds() != 3.1 {
				t.Errorf("last word chunk = %v", last)
			}
		},
	},
	{
		// Spelled "False", not "false": Livepeer Studio would coerce "false" to a boolean
		// and refuse it (UPSTREAM §12.1); the runner lowercases it.
		name: "AudioToText/no-timestamps", pipeline: livepeer.PipelineAudioToText,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.AudioToText(ctx, &generationv1.AudioToTextRequest{
				Audio: &generationv1.InputFile{Content: wavBytes}, ReturnTimestamps: generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_NONE,
			})
		},
		wantForm:  map[string]string{"model_id": "openai/whisper-large-v3", "return_timestamps": "False"},
		wantFiles: map[string]wantFile{"audio": {"audio.wav", "audio/wave", wavBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			r := resp.(*generationv1.AudioToTextResponse)
			if r.GetText() != transcriptText || len(r.GetChunks()) != 0 {
				t.Errorf("response = %v, want the text without chunks", r)
			}
		},
	},
	{
		name: "AudioToText/sentence-timestamps", pipeline: livepeer.PipelineAudioToText,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.AudioToText(ctx, &generationv1.AudioToTextRequest{
				Audio: &generationv1.InputFile{Content: wavBytes}, ReturnTimestamps: generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_SENTENCE,
			})
		},
		wantForm:  map[string]string{"model_id": "openai/whisper-large-v3", "return_timestamps": "sentence"},
		wantFiles: map[string]wantFile{"audio": {"audio.wav", "audio/wave", wavBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			if n := len(resp.(*generationv1.AudioToTextResponse).GetChunks()); n != 2 {
				t.Errorf("got %d chunks, want the 2 sentences", n)
			}
		},
	},
	{
		name: "SegmentAnything2/minimal", pipeline: livepeer.PipelineSegmentAnything2,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.SegmentAnything2(ctx, &generationv1.SegmentAnything2Request{Image: &generationv1.InputFile{Content: pngBytes}})
		},
		wantForm:  map[string]string{"model_id": "facebook/sam2-hiera-large"},
		wantFiles: map[string]wantFile{"image": {"image.png", "image/png", pngBytes}},
		// The simulator answers multimask_output's default, three 2×2 masks, as the
		// runner does: Python-style text, which genservice parses into typed masks.
		check: func(t *testing.T, h *harness, resp proto.Message) {
			r := resp.(*generationv1.SegmentAnything2Response)
			checkMasks(t, "masks", r.GetMasks(), 2, 2, [][]float32{{0, 1, 1, 1}, {0, 0, 1, 1}, {0, 0, 0, 1}})
			checkMasks(t, "logits", r.GetLogits(), 2, 2, [][]float32{{-2.5, 3.1, 2.8, 4}, {-3, -1.2, 2.2, 3.3}, {-4.1, -3.3, -0.5, 2.9}})
			if !slices.Equal(r.GetScores(), []float64{0.9, 0.5, 0.25}) {
				t.Errorf("scores = %v", r.GetScores())
			}
		},
	},
	{
		name: "SegmentAnything2/all-fields", pipeline: livepeer.PipelineSegmentAnything2,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.SegmentAnything2(ctx, &generationv1.SegmentAnything2Request{
				ModelId: "facebook/sam2-hiera-tiny", Image: &generationv1.InputFile{Content: pngBytes, Filename: "scene.png", ContentType: "image/png"},
				PointCoords: []*generationv1.Point{{X: 120, Y: 80}, {X: 30.5, Y: 0}}, PointLabels: []int32{1, 0},
				Box: &generationv1.Box{X1: 10, Y1: 10.25, X2: 200, Y2: 200}, MaskInput: samMaskInput(),
				MultimaskOutput: ptr(false), ReturnLogits: ptr(true), NormalizeCoords: ptr(false),
			})
		},
		// The typed prompts arrive as the JSON text fields the gateway parses.
		wantForm: map[string]string{
			"model_id": "facebook/sam2-hiera-tiny", "point_coords": "[[120,80],[30.5,0]]", "point_labels": "[1,0]",
			"box": "[10,10.25,200,200]", "mask_input": samMaskInputJSON(), "multimask_output": "false", "return_logits": "true",
			"normalize_coords": "false",
		},
		wantFiles: map[string]wantFile{"image": {"scene.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			r := resp.(*generationv1.SegmentAnything2Response)
			checkMasks(t, "masks", r.GetMasks(), 2, 2, [][]float32{{0, 1, 1, 1}})
			checkMasks(t, "logits", r.GetLogits(), 2, 2, [][]float32{{-2.5, 3.1, 2.8, 4}})
			if !slices.Equal(r.GetScores(), []float64{0.9}) {
				t.Errorf("scores = %v", r.GetScores())
			}
		},
	},
	{
		name: "LLM/minimal", pipeline: livepeer.PipelineLLM,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.Llm(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
		},
		// model, max_tokens and stream are always sent (a go-livepeer gateway needs them).
		wantJSON: `{"messages":[{"role":"user","content":"hi"}],"model":"meta-llama/Meta-Llama-3.1-8B-Instruct","max_tokens":256,"stream":false}`,
		check: func(t *testing.T, h *harness, resp proto.Message) {
			r := resp.(*generationv1.LlmResponse)
			reply := "Hello! This is a simulated reply from the Livepeer simulator. You said: hi"
			if !strings.HasPrefix(r.GetId(), "chatcmpl-") || r.GetModel() != "meta-llama/Meta-Llama-3.1-8B-Instruct" || r.GetCreated() <= 0 {
				t.Errorf("id/model/created = %q/%q/%d", r.GetId(), r.GetModel(), r.GetCreated())
			}
			if u := r.GetUsage(); u.GetPromptTokens() != 1 || u.GetCompletionTokens() != 13 || u.GetTotalTokens() != 14 {
				t.Errorf("usage = %v", u)
			}
			if len(r.GetChoices()) != 1 {
				t.Fatalf("choices = %v", r.GetChoices())
			}
			ch := r.GetChoices()[0]
			if ch.GetIndex() != 0 || ch.GetFinishReason() != "stop" || ch.GetMessage().GetRole() != generationv1.LlmRole_LLM_ROLE_ASSISTANT ||
				ch.GetMessage().GetContent() != reply || ch.GetDelta() != nil {
				t.Errorf("choice = %v", ch)
			}
		},
	},
	{
		name: "LLM/all-fields", pipeline: livepeer.PipelineLLM,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.Llm(ctx, &generationv1.LlmRequest{
				Messages: []*generationv1.LlmMessage{
					{Role: generationv1.LlmRole_LLM_ROLE_SYSTEM, Content: "be brief"}, {Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"},
					{Role: generationv1.LlmRole_LLM_ROLE_ASSISTANT, Content: "Hello."}, {Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hello there"},
				},
				Model: "meta-llama/Llama-3.3-70B-Instruct", Temperature: ptr(0.2), MaxTokens: ptr[int32](3), TopP: ptr(0.9), TopK: ptr[int32](40),
			})
		},
		// Each role reaches the gateway as its word. The simulator counts a token per word:
		// six in the prompt.
		wantJSON: `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},
			{"role":"assistant","content":"Hello."},{"role":"user","content":"hello there"}],
			"model":"meta-llama/Llama-3.3-70B-Instruct","temperature":0.2,"max_tokens":3,"top_p":0.9,"top_k":40,"stream":false}`,
		check: func(t *testing.T, h *harness, resp proto.Message) {
			r := resp.(*generationv1.LlmResponse)
			if r.GetModel() != "meta-llama/Llama-3.3-70B-Instruct" {
				t.Errorf("model = %q", r.GetModel())
			}
			if u := r.GetUsage(); u.GetPromptTokens() != 6 || u.GetCompletionTokens() != 3 || u.GetTotalTokens() != 9 {
				t.Errorf("usage = %v", u)
			}
			if ch := r.GetChoices(); len(ch) != 1 || ch[0].GetFinishReason() != "length" || ch[0].GetMessage().GetContent() != "Hello! This is" {
				t.Errorf("choices = %v", ch)
			}
		},
	},
	{
		name: "ImageToText/minimal", pipeline: livepeer.PipelineImageToText,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.ImageToText(ctx, &generationv1.ImageToTextRequest{Image: &generationv1.InputFile{Content: pngBytes}})
		},
		wantForm:  map[string]string{"model_id": "Salesforce/blip-image-captioning-large"},
		wantFiles: map[string]wantFile{"image": {"image.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			if got := resp.(*generationv1.ImageToTextResponse).GetText(); got != "a small test image generated by the Livepeer simulator" {
				t.Errorf("text = %q", got)
			}
		},
	},
	{
		name: "ImageToText/all-fields", pipeline: livepeer.PipelineImageToText,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.ImageToText(ctx, &generationv1.ImageToTextRequest{
				ModelId: "Salesforce/blip-image-captioning-base", Prompt: ptr("what is in the picture?"),
				Image: &generationv1.InputFile{Content: pngBytes, Filename: "pic.png", ContentType: "image/png"},
			})
		},
		wantForm:  map[string]string{"model_id": "Salesforce/blip-image-captioning-base", "prompt": "what is in the picture?"},
		wantFiles: map[string]wantFile{"image": {"pic.png", "image/png", pngBytes}},
		check: func(t *testing.T, h *harness, resp proto.Message) {
			if got := resp.(*generationv1.ImageToTextResponse).GetText(); got == "" {
				t.Error("empty text")
			}
		},
	},
	{
		name: "TextToSpeech/minimal", pipeline: livepeer.PipelineTextToSpeech,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.TextToSpeech(ctx, &generationv1.TextToSpeechRequest{Text: "hello there"})
		},
		wantJSON: `{"model_id":"parler-tts/parler-tts-large-v1","text":"hello there"}`,
		check: func(t *testing.T, h *harness, resp proto.Message) {
			u := resp.(*generationv1.TextToSpeechResponse).GetAudio().GetUrl()
			if !strings.HasPrefix(u, h.sim.Origin()+"/stream/") || !strings.HasSuffix(u, ".wav") {
				t.Errorf("audio.url = %q", u)
			}
		},
	},
	{
		name: "TextToSpeech/all-fields", pipeline: livepeer.PipelineTextToSpeech,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) (proto.Message, error) {
			return c.TextToSpeech(ctx, &generationv1.TextToSpeechRequest{
				ModelId: "parler-tts/parler-tts-mini-v1", Text: "hello there", Description: ptr("A calm, low voice."),
			})
		},
		wantJSON: `{"model_id":"parler-tts/parler-tts-mini-v1","text":"hello there","description":"A calm, low voice."}`,
		check: func(t *testing.T, h *harness, resp proto.Message) {
			if u := resp.(*generationv1.TextToSpeechResponse).GetAudio().GetUrl(); !strings.HasPrefix(u, h.sim.Origin()+"/stream/") {
				t.Errorf("audio.url = %q", u)
			}
		},
	},
}

// TestE2E_HappyPath calls every unary RPC, minimal and with every optional field set,
// and checks both the mapped response and the exact request the gateway received.
func TestE2E_HappyPath(t *testing.T) {
	t.Parallel()
	covered := map[string]bool{}
	for _, tc := range happyCases {
		covered[tc.pipeline] = true
	}
	for _, r := range unaryRPCs {
		if !covered[r.pipeline] {
			t.Errorf("no happy-path case for %s", r.name)
		}
	}
	for _, tc := range happyCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			// Whatever a caller sends that looks like upstream auth must not be forwarded.
			ctx := metadata.AppendToOutgoingContext(ctxTimeout(t, 10*time.Second),
				"authorization", "Bearer caller-supplied-token", "x-api-key", "caller-supplied-key")
			resp, err := tc.call(ctx, h.client)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			tc.check(t, h, resp)

			reqs := h.sim.Requests()
			if len(reqs) != 1 || h.sim.Hits(tc.pipeline) != 1 {
				t.Fatalf("simulator got %d requests (%d hits), want 1", len(reqs), h.sim.Hits(tc.pipeline))
			}
			rec := reqs[0]
			checkUpstreamRequest(t, h, tc, rec)
			t.Run("openapi", func(t *testing.T) {
				if err := openapicheck.ForTest(t).Check(rec); err != nil {
					t.Errorf("request does not match the gateway spec: %v", err)
				}
			})
		})
	}
}

func checkUpstreamRequest(t *testing.T, h *harness, tc happyCase, rec livepeertest.Request) {
	t.Helper()
	if rec.Method != http.MethodPost || rec.Path != "/api/generate/"+tc.pipeline {
		t.Errorf("request line = %s %s", rec.Method, rec.Path)
	}
	if got := rec.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+h.key {
		t.Errorf("Authorization headers = %q, want exactly [\"Bearer <key>\"]", got)
	}
	for name, vals := range rec.Header {
		for _, v := range vals {
			if strings.Contains(v, "caller-supplied") {
				t.Errorf("caller metadata was forwarded upstream: %s: %s", name, v)
			}
		}
	}
	if tc.wantJSON != "" {
		if rec.ContentType != "application/json" {
			t.Errorf("content type = %q, want application/json", rec.ContentType)
		}
		var want map[string]any
		if err := json.Unmarshal([]byte(tc.wantJSON), &want); err != nil {
			t.Fatalf("bad wantJSON: %v", err)
		}
		if !reflect.DeepEqual(rec.JSON, want) {
			t.Errorf("JSON body:\n got %s\nwant %s", rec.Body, tc.wantJSON)
		}
		return
	}
	if rec.ContentType != "multipart/form-data" {
		t.Errorf("content type = %q, want multipart/form-data", rec.ContentType)
	}
	if !reflect.DeepEqual(rec.Form, tc.wantForm) {
		t.Errorf("form fields:\n got %v\nwant %v", rec.Form, tc.wantForm)
	}
	if len(rec.Files) != len(tc.wantFiles) {
		t.Errorf("files = %v, want %d", rec.Files, len(tc.wantFiles))
	}
	for name, w := range tc.wantFiles {
		got, ok := rec.Files[name]
		sum := sha256.Sum256(w.content)
		want := livepeertest.File{Filename: w.filename, ContentType: w.contentType, Size: int64(len(w.content)), SHA256: hex.EncodeToString(sum[:])}
		if !ok || got != want {
			t.Errorf("file %q = %+v, want %+v", name, got, want)
		}
	}
}

// TestE2E_RelativeResultURLsMadeAbsolute: a gateway that answers with relative
// /stream/... paths (go-livepeer may) still gives callers absolute, fetchable URLs.
func TestE2E_RelativeResultURLsMadeAbsolute(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSim(func(c *livepeertest.Config) { c.RelativeURLs = true }))
	ctx := ctxTimeout(t, 10*time.Second)
	var urls []string
	for _, r := range unaryRPCs {
		resp, err := r.call(ctx, h.client)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		switch m := resp.(type) {
		case interface{ GetImages() []*generationv1.Media }:
			for _, img := range m.GetImages() {
				urls = append(urls, img.GetUrl())
			}
		case *generationv1.TextToSpeechResponse:
			urls = append(urls, m.GetAudio().GetUrl())
		}
	}
	if len(urls) != 5 {
		t.Fatalf("got %d URLs, want 5 (four image/video pipelines and text-to-speech): %q", len(urls), urls)
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, h.sim.Origin()+"/stream/") {
			t.Errorf("url %q is not absolute on the gateway's origin %s", u, h.sim.Origin())
			continue
		}
		resp, err := h.sim.Client().Get(u)
		if err != nil {
			t.Errorf("GET %s: %v", u, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", u, resp.Status)
		}
	}
}

// TestE2E_ResponseMapping drives unusual but valid gateway answers through the mapping:
// nsfw true, negative and explicit seeds, relative and foreign URLs, a chunk without an
// end timestamp, an LLM answer without usage.
func TestE2E_ResponseMapping(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := ctxTimeout(t, 10*time.Second)

	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Status: 200,
		Body: `{"images":[{"url":"/stream/0a1b2c3d/0.png","seed":7,"nsfw":true},{"url":"https://cdn.example.com/x.png","seed":-1,"nsfw":false}]}`})
	ti, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	want := []*generationv1.Media{
		{Url: h.sim.Origin() + "/stream/0a1b2c3d/0.png", Seed: 7, Nsfw: true},
		{Url: "https://cdn.example.com/x.png", Seed: -1},
	}
	if len(ti.GetImages()) != 2 || !proto.Equal(ti.GetImages()[0], want[0]) || !proto.Equal(ti.GetImages()[1], want[1]) {
		t.Errorf("images = %v, want %v", ti.GetImages(), want)
	}

	h.sim.Script(livepeer.PipelineAudioToText, livepeertest.Step{Status: 200,
		Body: `{"text":"a b","chunks":[{"text":"a","timestamp":[0.5,null]},{"text":"b","timestamp":[1.25,2.5]}]}`})
	at, err := h.client.AudioToText(ctx, &generationv1.AudioToTextRequest{Audio: &generationv1.InputFile{Content: wavBytes}})
	if err != nil {
		t.Fatal(err)
	}
	if c := at.GetChunks(); len(c) != 2 || c[0].GetStartSeconds() != 0.5 || c[0].EndSeconds != nil ||
		c[1].GetStartSeconds() != 1.25 || c[1].EndSeconds == nil || c[1].GetEndSeconds() != 2.5 {
		t.Errorf("chunks = %v", c)
	}

	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Status: 200,
		Body: `{"id":"x1","model":"m","created":5,"choices":[{"index":1,"finish_reason":"stop","message":{"role":"assistant","content":"ok"}}]}`})
	llm, err := h.client.Llm(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if llm.Usage != nil || len(llm.GetChoices()) != 1 || llm.GetChoices()[0].GetIndex() != 1 || llm.GetId() != "x1" || llm.GetCreated() != 5 {
		t.Errorf("llm = %v", llm)
	}

	// A role the contract does not name comes back unspecified, with its content.
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Status: 200,
		Body: `{"id":"x2","model":"m","created":5,"choices":[{"index":0,"finish_reason":"stop","message":{"role":"tool","content":"42"}},` +
			`{"index":1,"finish_reason":"stop","message":{"role":"system","content":"s"}},{"index":2,"finish_reason":"stop","message":{"role":"user","content":"u"}}]}`})
	llm, err = h.client.Llm(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	wantRoles := []generationv1.LlmRole{generationv1.LlmRole_LLM_ROLE_UNSPECIFIED, generationv1.LlmRole_LLM_ROLE_SYSTEM, generationv1.LlmRole_LLM_ROLE_USER}
	if ch := llm.GetChoices(); len(ch) != 3 || ch[0].GetMessage().GetContent() != "42" {
		t.Errorf("llm choices = %v", ch)
	} else {
		for i, want := range wantRoles {
			if got := ch[i].GetMessage().GetRole(); got != want {
				t.Errorf("choice %d role = %v, want %v", i, got, want)
			}
		}
	}

	// Python's spellings of NaN and infinity, and a boolean mask (True/False, as the
	// runner writes masks without return_logits), parse; N×H×W becomes N masks of H×W.
	h.sim.Script(livepeer.PipelineSegmentAnything2, livepeertest.Step{Status: 200,
		Body: `{"masks":"[[[True, False, True]], [[False, False, True]]]","scores":"[0.75, nan]","logits":"[[[-inf, 2.5e-05, inf]], [[1.0, -2.0, 3.0]]]"}`})
	sam, err := h.client.SegmentAnything2(ctx, &generationv1.SegmentAnything2Request{Image: image1()})
	if err != nil {
		t.Fatal(err)
	}
	checkMasks(t, "masks", sam.GetMasks(), 1, 3, [][]float32{{1, 0, 1}, {0, 0, 1}})
	if sc := sam.GetScores(); len(sc) != 2 || sc[0] != 0.75 || !math.IsNaN(sc[1]) {
		t.Errorf("scores = %v", sc)
	}
	if lg := sam.GetLogits(); len(lg) != 2 || !math.IsInf(float64(lg[0].GetValues()[0]), -1) || lg[0].GetValues()[1] != 2.5e-05 || !math.IsInf(float64(lg[0].GetValues()[2]), 1) {
		t.Errorf("logits = %v", lg)
	}

	h.sim.Script(livepeer.PipelineTextToSpeech, livepeertest.Step{Status: 200, Body: `{"audio":{"url":"/stream/00000001/0.wav"}}`})
	tts, err := h.client.TextToSpeech(ctx, &generationv1.TextToSpeechRequest{Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if got := tts.GetAudio().GetUrl(); got != h.sim.Origin()+"/stream/00000001/0.wav" {
		t.Errorf("audio url = %q", got)
	}
}

// TestE2E_RetriesThenSucceeds: retryable failures before the first byte (503, 502, 504,
// 429 with a Retry-After that fits, a refused connection) are retried once and the
// caller sees only the success.
func TestE2E_RetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		step livepeertest.Step
	}{
		{"503", livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error")}},
		{"502", livepeertest.Step{Status: 502, Body: "<html><title>502 Bad Gateway</title></html>", ContentType: "text/html"}},
		{"504", livepeertest.Step{Status: 504, Body: livepeertest.StudioError("gateway timeout")}},
		{"429 Retry-After 0", livepeertest.Step{Status: 429, Body: livepeertest.StudioError("Too many AI requests"), Header: http.Header{"Retry-After": {"0"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.sim.Script(livepeer.PipelineTextToImage, tc.step)
			id := rid(t, "1")
			resp, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id), &generationv1.TextToImageRequest{Prompt: "p"})
			if err != nil {
				t.Fatalf("want success after one retry, got %v", err)
			}
			checkMedia(t, h, resp.GetImages(), 1, 42, "png")
			if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 2 {
				t.Errorf("hits = %d, want 2", n)
			}
			line := h.callLine(t, id)
			if a, _ := line.num("attempts"); a != 2 {
				t.Errorf("log attempts = %v, want 2", line["attempts"])
			}
			if s, _ := line.num("upstreamStatus"); s != 200 {
				t.Errorf("log upstreamStatus = %v, want 200", line["upstreamStatus"])
			}
		})
	}
}

// TestE2E_CallLogLines: one "call" line per RPC with the fields operators need; the
// caller's x-request-id is echoed and logged; payloads never are.
func TestE2E_CallLogLines(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const sentinel = "PROMPT-SENTINEL-31415926"
	ctx := ctxTimeout(t, 10*time.Second)
	fp := fingerprint(t, h.key)

	// 1. success, with the caller's request id.
	var hdr metadata.MD
	_, err := h.client.TextToImage(withRequestID(ctx, "req-ok-1"), &generationv1.TextToImageRequest{Prompt: "draw " + sentinel}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "req-ok-1" {
		t.Errorf("response x-request-id = %q, want [req-ok-1]", got)
	}
	ok := h.callLine(t, "req-ok-1")
	wantStr := map[string]string{"msg": "call", "level": "INFO", "method": generationv1.GenerationService_TextToImage_FullMethodName,
		"code": "OK", "principal": defaultPrincipal, "pipeline": "text-to-image", "keyFingerprint": fp}
	for k, v := range wantStr {
		if ok.str(k) != v {
			t.Errorf("success line %s = %v, want %q", k, ok[k], v)
		}
	}
	for _, k := range []string{"durationMs", "upstreamMs", "overheadMs"} {
		if v, isNum := ok.num(k); !isNum || v < 0 {
			t.Errorf("success line %s = %v, want a non-negative number", k, ok[k])
		}
	}
	if s, _ := ok.num("upstreamStatus"); s != 200 {
		t.Errorf("upstreamStatus = %v", ok["upstreamStatus"])
	}
	if a, _ := ok.num("attempts"); a != 1 {
		t.Errorf("attempts = %v", ok["attempts"])
	}
	if d, _ := ok.num("durationMs"); d < mustNum(t, ok, "upstreamMs") {
		t.Errorf("durationMs %v < upstreamMs %v", d, ok["upstreamMs"])
	}
	if ok.str("peer") == "" {
		t.Error("no peer")
	}

	// 2. our validation error: no upstream fields.
	hdr = nil
	_, err = h.client.TextToImage(withRequestID(ctx, "req-invalid-2"), &generationv1.TextToImageRequest{NegativePrompt: ptr(sentinel)}, grpc.Header(&hdr))
	requireStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST")
	if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "req-invalid-2" {
		t.Errorf("error response x-request-id = %q", got)
	}
	inv := h.callLine(t, "req-invalid-2")
	if inv.str("code") != "InvalidArgument" || inv.str("level") != "WARN" || inv.str("error") == "" {
		t.Errorf("validation line = %v", inv)
	}
	for _, k := range []string{"upstreamStatus", "attempts", "upstreamMs", "overheadMs", "pipeline"} {
		if _, has := inv[k]; has {
			t.Errorf("validation line has upstream field %s: %v", k, inv)
		}
	}

	// 3. upstream failure: upstream fields with the gateway's status.
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Status: 500, Body: livepeertest.RunnerError("LLM pipeline error.")})
	_, err = h.client.Llm(withRequestID(ctx, "req-500-3"), &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: sentinel}}})
	requireStatus(t, err, codes.Internal, "UPSTREAM_INTERNAL_ERROR")
	bad := h.callLine(t, "req-500-3")
	if s, _ := bad.num("upstreamStatus"); s != 500 || bad.str("code") != "Internal" || bad.str("pipeline") != "llm" {
		t.Errorf("upstream failure line = %v", bad)
	}

	// 4. an unusable x-request-id is replaced by a generated one, echoed and logged.
	hdr = nil
	_, err = h.client.TextToSpeech(withRequestID(ctx, "bad id with spaces / and slashes"), &generationv1.TextToSpeechRequest{Text: "x"}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	gen := hdr.Get("x-request-id")
	if len(gen) != 1 || gen[0] == "" || strings.Contains(gen[0], " ") {
		t.Fatalf("generated x-request-id = %q", gen)
	}
	h.callLine(t, gen[0])

	// 5. no x-request-id at all: one is generated and echoed.
	hdr = nil
	if _, err := h.client.TextToSpeech(ctx, &generationv1.TextToSpeechRequest{Text: "y"}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	if got := hdr.Get("x-request-id"); len(got) != 1 || len(got[0]) < 16 {
		t.Errorf("generated x-request-id = %q", got)
	} else {
		h.callLine(t, got[0])
	}

	if n := len(h.calls(t, "")); n != 5 {
		t.Errorf("got %d call lines for 5 RPCs:\n%s", n, h.logs.Bytes())
	}
	if strings.Contains(string(h.logs.Bytes()), sentinel) {
		t.Errorf("a payload reached the log:\n%s", h.logs.Bytes())
	}
}

func mustNum(t *testing.T, l logLine, k string) float64 {
	t.Helper()
	v, ok := l.num(k)
	if !ok {
		t.Fatalf("log line has no numeric %s: %v", k, l)
	}
	return v
}

// TestE2E_DeadlineExceeded: a caller deadline shorter than the gateway's answer time
// ends the call promptly, and the upstream request is abandoned (the simulator sees
// the client go away), not left running.
func TestE2E_DeadlineExceeded(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Delay: 5 * time.Second})
	id := rid(t, "dl")
	ctx, cancel := context.WithTimeout(withRequestID(context.Background(), id), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "slow"})
	elapsed := time.Since(start)
	requireStatus(t, err, codes.DeadlineExceeded, "")
	if elapsed > time.Second {
		t.Errorf("call took %v with a 200ms deadline", elapsed)
	}
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Fatal("the simulator never saw the upstream request cancelled")
	}
	if d := h.sim.LastDisconnect(); d.Before(start) || d.Sub(start) > time.Second {
		t.Errorf("upstream disconnect at +%v", d.Sub(start))
	}
	// The client's own deadline fires first and resets the stream, so the server usually
	// sees a cancellation a moment before its copy of the deadline passes.
	line := h.waitCallLine(t, id)
	if c := line.str("code"); c != "DeadlineExceeded" && c != "Canceled" {
		t.Errorf("log code = %q, want DeadlineExceeded or Canceled", c)
	}
	if a, _ := line.num("attempts"); a != 1 {
		t.Errorf("log attempts = %v, want 1", line["attempts"])
	}
}

// TestE2E_Cancelled: a caller that cancels gets CANCELLED and the upstream request is
// cancelled too.
func TestE2E_Cancelled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineImageToVideo, livepeertest.Step{Delay: 5 * time.Second})
	id := rid(t, "cancel")
	ctx, cancel := context.WithCancel(withRequestID(context.Background(), id))
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := h.client.ImageToVideo(ctx, &generationv1.ImageToVideoRequest{Image: image1()})
		errc <- err
	}()
	eventually(t, 5*time.Second, func() bool { return h.sim.Hits(livepeer.PipelineImageToVideo) == 1 }, "the request to reach the simulator")
	cancelled := time.Now()
	cancel()
	var err error
	select {
	case err = <-errc:
	case <-time.After(2 * time.Second):
		t.Fatal("call did not return after cancel")
	}
	requireStatus(t, err, codes.Canceled, "")
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Fatal("the simulator never saw the upstream request cancelled")
	}
	if d := h.sim.LastDisconnect().Sub(cancelled); d < 0 || d > time.Second {
		t.Errorf("upstream disconnect %v after cancel", d)
	}
	if line := h.waitCallLine(t, id); line.str("code") != "Canceled" {
		t.Errorf("log code = %q, want Canceled", line.str("code"))
	}
}

// TestE2E_GracefulShutdown: an in-flight call finishes, health turns NOT_SERVING, and
// afterwards nobody can connect.
func TestE2E_GracefulShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := ctxTimeout(t, 10*time.Second)

	watchCtx, watchCancel := context.WithCancel(ctx)
	defer watchCancel()
	watch, err := healthpb.NewHealthClient(h.conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("initial health = %v, %v", st, err)
	}

	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Delay: time.Second})
	type result struct {
		resp *generationv1.TextToImageResponse
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		r, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "slow"})
		inflight <- result{r, err}
	}()
	eventually(t, 5*time.Second, func() bool { return h.sim.Hits(livepeer.PipelineTextToImage) == 1 }, "the slow call to reach the simulator")

	shutdownDone := make(chan struct{})
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.shutdown(sctx)
		close(shutdownDone)
	}()

	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health during shutdown = %v, %v; want NOT_SERVING", st, err)
	}
	// GracefulStop waits for every stream, the watch included: end it.
	watchCancel()

	r := <-inflight
	if r.err != nil {
		t.Fatalf("in-flight call was cut: %v", r.err)
	}
	checkMedia(t, h, r.resp.GetImages(), 1, 42, "png")

	select {
	case <-shutdownDone:
	case <-time.After(4 * time.Second):
		t.Fatal("Shutdown did not return after the in-flight call finished")
	}

	fresh := generationv1.NewGenerationServiceClient(h.dial(t, &h.pki.client.TLS))
	_, err = fresh.TextToImage(ctxTimeout(t, 2*time.Second), &generationv1.TextToImageRequest{Prompt: "late"})
	requireStatus(t, err, codes.Unavailable, "")
	if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d after shutdown, want 1", n)
	}
}

// TestE2E_DrainingRejectsNewCalls: while draining, new calls get UNAVAILABLE /
// SHUTTING_DOWN and never reach the gateway; health checks still answer.
func TestE2E_DrainingRejectsNewCalls(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.srv.SetDrainingForTest(true)
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "p"})
	requireStatus(t, err, codes.Unavailable, "SHUTTING_DOWN")
	if _, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check while draining: %v", err)
	}
	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("simulator got %d requests", n)
	}
}

// panicHarness starts a harness with the test PanicService registered; its handlers
// panic with value.
func panicHarness(t *testing.T, value func() any, opts ...option) *harness {
	t.Helper()
	opts = append(opts, withBeforeServe(func(s *server.Server) {
		s.RegisterServiceForTest(&server.PanicServiceDesc, server.PanicFunc(func() { panic(value()) }))
	}))
	return newHarness(t, opts...)
}

// callPanics calls the unary and the streaming panicking method and returns both errors.
func callPanics(t *testing.T, h *harness, unaryID, streamID string) (unaryErr, streamErr error) {
	t.Helper()
	ctx := ctxTimeout(t, 5*time.Second)
	unaryErr = h.conn.Invoke(withRequestID(ctx, unaryID), "/"+server.PanicServiceName+"/Unary", &emptypb.Empty{}, &emptypb.Empty{})
	cs, err := h.conn.NewStream(withRequestID(ctx, streamID), &grpc.StreamDesc{ServerStreams: true}, "/"+server.PanicServiceName+"/Stream")
	if err != nil {
		return unaryErr, err
	}
	if err := cs.SendMsg(&emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	streamErr = cs.RecvMsg(&emptypb.Empty{})
	return unaryErr, streamErr
}

// TestE2E_PanicBecomesInternal: a panicking handler (unary or streaming) yields
// INTERNAL / INTERNAL_ERROR with the request id and nothing of the panic; the log has
// the panic under the same request id; the server keeps serving.
func TestE2E_PanicBecomesInternal(t *testing.T) {
	t.Parallel()
	const secret = "panic-secret-b16c2a"
	h := panicHarness(t, func() any { return "boom: " + secret })
	uid, sid := rid(t, "unary"), rid(t, "stream")
	uerr, serr := callPanics(t, h, uid, sid)
	for _, c := range []struct {
		id  string
		err error
	}{{uid, uerr}, {sid, serr}} {
		st := requireStatus(t, c.err, codes.Internal, "INTERNAL_ERROR")
		requireMeta(t, st, map[string]string{"requestId": c.id})
		if b := statusBytes(c.err); strings.Contains(string(b), secret) || strings.Contains(string(b), "boom") {
			t.Errorf("status reveals the panic: %q", st.Message())
		}
		var panicLine logLine
		for _, l := range h.lines(t) {
			if l.str("msg") == "panic in handler" && l.str("requestId") == c.id {
				panicLine = l
			}
		}
		if panicLine == nil || panicLine.str("level") != "ERROR" || !strings.Contains(panicLine.str("panic"), secret) || panicLine.str("stack") == "" {
			t.Errorf("no ERROR \"panic in handler\" line with the panic and stack for %s: %v", c.id, panicLine)
		}
		if line := h.callLine(t, c.id); line.str("code") != "Internal" {
			t.Errorf("call line code = %q", line.str("code"))
		}
	}
	// Still serving.
	if _, err := h.client.TextToSpeech(ctxTimeout(t, 5*time.Second), &generationv1.TextToSpeechRequest{Text: "still up"}); err != nil {
		t.Errorf("call after panics: %v", err)
	}
}

// TestE2E_ConcurrentCalls: many calls at once over one connection all succeed and each
// gets its own log line (run with -race).
func TestE2E_ConcurrentCalls(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := ctxTimeout(t, 10*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := unaryRPCs[i%len(unaryRPCs)]
			if _, err := r.call(ctx, h.client); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(h.calls(t, "")); n != 32 {
		t.Errorf("got %d call lines, want 32", n)
	}
}
