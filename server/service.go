package server

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
)

// service implements GenerationService: validate, build the gateway request, call, and
// convert the answer. Upstream failures go through Errors.Upstream, the one mapping.
type service struct {
	generationv1.UnimplementedGenerationServiceServer
	up         *livepeer.Client
	errs       Errors
	streamIdle time.Duration
	media      *livepeer.MediaFetcher
	// maxResponse is the server's cap on a sent message (Config.MaxSendMessageSize): inline
	// media must fit in it, or grpc would refuse to send the response after every file
	// had been fetched.
	maxResponse int
}

// inlineFieldOverhead is room kept per file for what inlining adds around the bytes:
// the content and content_type tags and lengths, the content type itself and the growth
// of the result's own length prefix. The exact size is checked after each file.
const inlineFieldOverhead = 64

// inline fetches result media into the response when the caller asked for it. Every
// URL is checked before anything is fetched, so a refused host means no fetch at all.
// set stores file i's bytes and content type into out, the whole response.
//
// The response must fit in one message of maxResponse bytes, so the files are fetched
// against a budget: each fetch may read at most what is left once the rest of the
// response is counted (and never more than the per-file cap). When the budget runs out
// the call fails with MEDIA_TOO_LARGE before anything more is fetched, instead of
// fetching everything and then failing to send.
func (s *service) inline(ctx context.Context, want bool, out proto.Message, urls []string, set func(i int, data []byte, contentType string)) error {
	if !want {
		return nil
	}
	for _, u := range urls {
		if err := s.media.Check(u); err != nil {
			return s.fail(ctx, err)
		}
	}
	perFile := s.media.MaxBytes()
	for i, u := range urls {
		// Room for this file: the cap, less the response so far (every URL, seed and
		// file already inlined) and the fields of this and every later file. For the
		// first file this also refuses, before any fetch, a result count that could not
		// fit even with empty files.
		room := int64(s.maxResponse) - int64(proto.Size(out)) - int64(len(urls)-i)*inlineFieldOverhead
		limit := min(perFile, room)
		if limit <= 0 {
			return s.errs.InlineMediaTooLarge(s.maxResponse, perFile, len(urls), i)
		}
		data, ct, err := s.media.FetchLimit(ctx, u, limit)
		var tooLarge *livepeer.MediaTooLargeError
		if errors.As(err, &tooLarge) && limit < perFile {
			// Within the per-file cap, but not within what is left of the response.
			return s.errs.InlineMediaTooLarge(s.maxResponse, perFile, len(urls), i)
		}
		if err != nil {
			return s.fail(ctx, err)
		}
		set(i, data, ct)
		if proto.Size(out) > s.maxResponse {
			return s.errs.InlineMediaTooLarge(s.maxResponse, perFile, len(urls), i)
		}
	}
	return nil
}

// inlineImages is inline for a list of Media in response out.
func (s *service) inlineImages(ctx context.Context, want bool, out proto.Message, ms []*generationv1.Media) error {
	urls := make([]string, len(ms))
	for i, m := range ms {
		urls[i] = m.GetUrl()
	}
	return s.inline(ctx, want, out, urls, func(i int, data []byte, ct string) { ms[i].Content, ms[i].ContentType = data, ct })
}

func itoa(i int) string { return strconv.Itoa(i) }

// model returns the requested model or the pipeline's default.
func model(requested, pipeline string) string {
	if requested != "" {
		return requested
	}
	return livepeer.DefaultModels[pipeline]
}

// inputFile references the caller's bytes (no copy) and fills in a content type when
// the caller gave none.
func inputFile(f *generationv1.InputFile) livepeer.File {
	ct := f.GetContentType()
	if ct == "" {
		ct = livepeer.DetectContentType(f.GetContent())
	}
	return livepeer.File{Filename: f.GetFilename(), ContentType: ct, Content: f.GetContent()}
}

func (s *service) fail(ctx context.Context, err error) error {
	return s.errs.Upstream(err, RequestIDFrom(ctx))
}

func (s *service) invalid(v violations) error { return s.errs.InvalidRequest(v) }

func media(ms []livepeer.Media) []*generationv1.Media {
	out := make([]*generationv1.Media, len(ms))
	for i, m := range ms {
		out[i] = &generationv1.Media{Url: m.URL, Seed: m.Seed, Nsfw: m.NSFW}
	}
	return out
}

func (s *service) TextToImage(ctx context.Context, r *generationv1.TextToImageRequest) (*generationv1.TextToImageResponse, error) {
	if v := validateTextToImage(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.TextToImage(ctx, &livepeer.TextToImageParams{
		ModelID:            model(r.GetModelId(), livepeer.PipelineTextToImage),
		Prompt:             r.GetPrompt(),
		Loras:              livepeer.Loras(r.GetLoras()),
		Height:             r.Height,
		Width:              r.Width,
		GuidanceScale:      r.GuidanceScale,
		NegativePrompt:     r.NegativePrompt,
		SafetyCheck:        r.SafetyCheck,
		Seed:               r.Seed,
		NumInferenceSteps:  r.NumInferenceSteps,
		NumImagesPerPrompt: r.NumImagesPerPrompt,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out := &generationv1.TextToImageResponse{Images: media(res.Images)}
	if err := s.inlineImages(ctx, r.GetInlineMedia(), out, out.Images); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *service) ImageToImage(ctx context.Context, r *generationv1.ImageToImageRequest) (*generationv1.ImageToImageResponse, error) {
	if v := validateImageToImage(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.ImageToImage(ctx, &livepeer.ImageToImageParams{
		ModelID:            model(r.GetModelId(), livepeer.PipelineImageToImage),
		Prompt:             r.GetPrompt(),
		Image:              inputFile(r.GetImage()),
		Loras:              livepeer.Loras(r.GetLoras()),
		Strength:           r.Strength,
		GuidanceScale:      r.GuidanceScale,
		ImageGuidanceScale: r.ImageGuidanceScale,
		NegativePrompt:     r.NegativePrompt,
		SafetyCheck:        r.SafetyCheck,
		Seed:               r.Seed,
		NumInferenceSteps:  r.NumInferenceSteps,
		NumImagesPerPrompt: r.NumImagesPerPrompt,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out := &generationv1.ImageToImageResponse{Images: media(res.Images)}
	if err := s.inlineImages(ctx, r.GetInlineMedia(), out, out.Images); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *service) ImageToVideo(ctx context.Context, r *generationv1.ImageToVideoRequest) (*generationv1.ImageToVideoResponse, error) {
	if v := validateImageToVideo(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.ImageToVideo(ctx, &livepeer.ImageToVideoParams{
		ModelID:           model(r.GetModelId(), livepeer.PipelineImageToVideo),
		Image:             inputFile(r.GetImage()),
		Height:            r.Height,
		Width:             r.Width,
		FPS:               r.Fps,
		MotionBucketID:    r.MotionBucketId,
		NoiseAugStrength:  r.NoiseAugStrength,
		SafetyCheck:       r.SafetyCheck,
		Seed:              r.Seed,
		NumInferenceSteps: r.NumInferenceSteps,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out := &generationv1.ImageToVideoResponse{Images: media(res.Images)}
	if err := s.inlineImages(ctx, r.GetInlineMedia(), out, out.Images); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *service) Upscale(ctx context.Context, r *generationv1.UpscaleRequest) (*generationv1.UpscaleResponse, error) {
	if v := validateUpscale(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.Upscale(ctx, &livepeer.UpscaleParams{
		ModelID:           model(r.GetModelId(), livepeer.PipelineUpscale),
		Prompt:            r.GetPrompt(),
		Image:             inputFile(r.GetImage()),
		SafetyCheck:       r.SafetyCheck,
		Seed:              r.Seed,
		NumInferenceSteps: r.NumInferenceSteps,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out := &generationv1.UpscaleResponse{Images: media(res.Images)}
	if err := s.inlineImages(ctx, r.GetInlineMedia(), out, out.Images); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *service) AudioToText(ctx context.Context, r *generationv1.AudioToTextRequest) (*generationv1.AudioToTextResponse, error) {
	if v := validateAudioToText(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.AudioToText(ctx, &livepeer.AudioToTextParams{
		ModelID:          model(r.GetModelId(), livepeer.PipelineAudioToText),
		Audio:            inputFile(r.GetAudio()),
		ReturnTimestamps: timestamps[r.GetReturnTimestamps()],
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out := &generationv1.AudioToTextResponse{Text: *res.Text, Chunks: make([]*generationv1.TextChunk, 0, len(res.Chunks))}
	for _, c := range res.Chunks {
		tc := &generationv1.TextChunk{Text: c.Text}
		if len(c.Timestamp) > 0 && c.Timestamp[0] != nil {
			tc.StartSeconds = *c.Timestamp[0]
		}
		if len(c.Timestamp) > 1 && c.Timestamp[1] != nil {
			end := *c.Timestamp[1]
			tc.EndSeconds = &end
		}
		out.Chunks = append(out.Chunks, tc)
	}
	return out, nil
}

func (s *service) SegmentAnything2(ctx context.Context, r *generationv1.SegmentAnything2Request) (*generationv1.SegmentAnything2Response, error) {
	if v := validateSegmentAnything2(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.SegmentAnything2(ctx, &livepeer.SegmentAnything2Params{
		ModelID:         model(r.GetModelId(), livepeer.PipelineSegmentAnything2),
		Image:           inputFile(r.GetImage()),
		PointCoords:     points(r.GetPointCoords()),
		PointLabels:     r.GetPointLabels(),
		Box:             box(r.GetBox()),
		MaskInput:       maskInput(r.GetMaskInput()),
		MultimaskOutput: r.MultimaskOutput,
		ReturnLogits:    r.ReturnLogits,
		NormalizeCoords: r.NormalizeCoords,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return &generationv1.SegmentAnything2Response{Masks: masks(res.Masks), Scores: res.Scores, Logits: masks(res.Logits)}, nil
}

// timestamps maps the contract's enum to the gateway setting; validation refuses
// values outside it, so a missing entry cannot reach the gateway.
var timestamps = map[generationv1.ReturnTimestamps]livepeer.Timestamps{
	generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_UNSPECIFIED: livepeer.TimestampsDefault,
	generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_SENTENCE:    livepeer.TimestampsSentence,
	generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_WORD:        livepeer.TimestampsWord,
	generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_NONE:        livepeer.TimestampsNone,
}

func points(ps []*generationv1.Point) []livepeer.Point {
	if len(ps) == 0 {
		return nil
	}
	out := make([]livepeer.Point, len(ps))
	for i, p := range ps {
		out[i] = livepeer.Point{X: p.GetX(), Y: p.GetY()}
	}
	return out
}

func box(b *generationv1.Box) *livepeer.Box {
	if b == nil {
		return nil
	}
	return &livepeer.Box{X1: b.GetX1(), Y1: b.GetY1(), X2: b.GetX2(), Y2: b.GetY2()}
}

func maskInput(m *generationv1.Mask) *livepeer.Mask {
	if m == nil {
		return nil
	}
	return &livepeer.Mask{Height: int(m.GetHeight()), Width: int(m.GetWidth()), Values: m.GetValues()}
}

// masks converts parsed masks; their sizes come from a body of at most
// livepeer.Config.MaxResponseBytes, far below the int32 range.
func masks(ms []livepeer.Mask) []*generationv1.Mask {
	out := make([]*generationv1.Mask, len(ms))
	for i, m := range ms {
		out[i] = &generationv1.Mask{Height: int32(m.Height), Width: int32(m.Width), Values: m.Values}
	}
	return out
}

// llmRoles maps the contract's roles to the words the gateway takes, and back.
var llmRoles = map[generationv1.LlmRole]string{
	generationv1.LlmRole_LLM_ROLE_SYSTEM:    "system",
	generationv1.LlmRole_LLM_ROLE_USER:      "user",
	generationv1.LlmRole_LLM_ROLE_ASSISTANT: "assistant",
}

// llmRoleOf maps a role in the gateway's answer to the enum. The runner answers
// "assistant"; a role genservice does not know (a newer runner's "tool", say, or none,
// as a streamed delta may carry) becomes LLM_ROLE_UNSPECIFIED rather than failing the
// call: the content is what the caller came for, and UNSPECIFIED says honestly that
// the role was not one of the three.
func llmRoleOf(role string) generationv1.LlmRole {
	switch strings.ToLower(role) {
	case "system":
		return generationv1.LlmRole_LLM_ROLE_SYSTEM
	case "user":
		return generationv1.LlmRole_LLM_ROLE_USER
	case "assistant":
		return generationv1.LlmRole_LLM_ROLE_ASSISTANT
	}
	return generationv1.LlmRole_LLM_ROLE_UNSPECIFIED
}

// llmRequest builds the gateway request; validation has checked every role.
func llmRequest(r *generationv1.LlmRequest) *livepeer.LLMRequest {
	req := &livepeer.LLMRequest{
		Messages:    make([]livepeer.LLMMessage, len(r.GetMessages())),
		Model:       model(r.GetModel(), livepeer.PipelineLLM),
		Temperature: r.Temperature,
		MaxTokens:   livepeer.DefaultLLMMaxTokens,
		TopP:        r.TopP,
		TopK:        r.TopK,
	}
	if r.MaxTokens != nil {
		req.MaxTokens = *r.MaxTokens
	}
	for i, m := range r.GetMessages() {
		req.Messages[i] = livepeer.LLMMessage{Role: llmRoles[m.GetRole()], Content: m.GetContent()}
	}
	return req
}

func llmMessage(m *livepeer.LLMMessage) *generationv1.LlmMessage {
	if m == nil {
		return nil
	}
	return &generationv1.LlmMessage{Role: llmRoleOf(m.Role), Content: m.Content}
}

func llmUsage(u *livepeer.LLMTokenUsage) *generationv1.LlmTokenUsage {
	if u == nil {
		return nil
	}
	return &generationv1.LlmTokenUsage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

func llmChoices(cs []livepeer.LLMChoice) []*generationv1.LlmChoice {
	out := make([]*generationv1.LlmChoice, len(cs))
	for i, c := range cs {
		out[i] = &generationv1.LlmChoice{Index: c.Index, FinishReason: c.FinishReason, Delta: llmMessage(c.Delta), Message: llmMessage(c.Message)}
	}
	return out
}

func (s *service) Llm(ctx context.Context, r *generationv1.LlmRequest) (*generationv1.LlmResponse, error) {
	if v := validateLlm(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.LLM(ctx, llmRequest(r))
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	if u := res.Usage; u != nil {
		recordTokens(ctx, u.PromptTokens, u.CompletionTokens)
	}
	return &generationv1.LlmResponse{Id: res.ID, Model: res.Model, Created: res.Created, Usage: llmUsage(res.Usage), Choices: llmChoices(res.Choices)}, nil
}

func (s *service) ImageToText(ctx context.Context, r *generationv1.ImageToTextRequest) (*generationv1.ImageToTextResponse, error) {
	if v := validateImageToText(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.ImageToText(ctx, &livepeer.ImageToTextParams{
		ModelID: model(r.GetModelId(), livepeer.PipelineImageToText),
		Image:   inputFile(r.GetImage()),
		Prompt:  r.Prompt,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return &generationv1.ImageToTextResponse{Text: *res.Text}, nil
}

func (s *service) TextToSpeech(ctx context.Context, r *generationv1.TextToSpeechRequest) (*generationv1.TextToSpeechResponse, error) {
	if v := validateTextToSpeech(r); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.TextToSpeech(ctx, &livepeer.TextToSpeechParams{
		ModelID:     model(r.GetModelId(), livepeer.PipelineTextToSpeech),
		Text:        r.GetText(),
		Description: r.Description,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	out := &generationv1.TextToSpeechResponse{Audio: &generationv1.MediaUrl{Url: res.Audio.URL}}
	err = s.inline(ctx, r.GetInlineMedia(), out, []string{res.Audio.URL}, func(_ int, data []byte, ct string) {
		out.Audio.Content, out.Audio.ContentType = data, ct
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *service) LlmStream(r *generationv1.LlmRequest, stream generationv1.GenerationService_LlmStreamServer) error {
	ctx := stream.Context()
	if v := validateLlm(r); len(v) > 0 {
		return s.invalid(v)
	}
	up, err := s.up.LLMStream(ctx, llmRequest(r), s.streamIdle)
	if err != nil {
		return s.fail(ctx, err)
	}
	defer up.Close()
	for {
		ev, err := up.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.fail(ctx, err)
		}
		// Send hands the message to the transport, which writes it to the connection
		// without waiting for more: each event reaches the caller as it arrives.
		if u := ev.Usage; u != nil {
			recordTokens(ctx, u.PromptTokens, u.CompletionTokens)
		}
		if err := stream.Send(&generationv1.LlmStreamResponse{Id: ev.ID, Model: ev.Model, Created: ev.Created, Usage: llmUsage(ev.Usage), Choices: llmChoices(ev.Choices)}); err != nil {
			return err
		}
	}
}
