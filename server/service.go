package server

import (
	"context"
	"errors"
	"io"
	"strconv"
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
		Loras:              r.Loras,
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
		Loras:              r.Loras,
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
		ReturnTimestamps: r.ReturnTimestamps,
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
		PointCoords:     r.PointCoords,
		PointLabels:     r.PointLabels,
		Box:             r.Box,
		MaskInput:       r.MaskInput,
		MultimaskOutput: r.MultimaskOutput,
		ReturnLogits:    r.ReturnLogits,
		NormalizeCoords: r.NormalizeCoords,
	})
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return &generationv1.SegmentAnything2Response{Masks: *res.Masks, Scores: *res.Scores, Logits: *res.Logits}, nil
}

func llmRequest(messages []*generationv1.LLMMessage, modelID string, temperature *float64, maxTokens *int32, topP *float64, topK *int32) *livepeer.LLMRequest {
	req := &livepeer.LLMRequest{
		Messages:    make([]livepeer.LLMMessage, len(messages)),
		Model:       model(modelID, livepeer.PipelineLLM),
		Temperature: temperature,
		MaxTokens:   livepeer.DefaultLLMMaxTokens,
		TopP:        topP,
		TopK:        topK,
	}
	if maxTokens != nil {
		req.MaxTokens = *maxTokens
	}
	for i, m := range messages {
		req.Messages[i] = livepeer.LLMMessage{Role: m.GetRole(), Content: m.GetContent()}
	}
	return req
}

func llmMessage(m *livepeer.LLMMessage) *generationv1.LLMMessage {
	if m == nil {
		return nil
	}
	return &generationv1.LLMMessage{Role: m.Role, Content: m.Content}
}

func llmUsage(u *livepeer.LLMTokenUsage) *generationv1.LLMTokenUsage {
	if u == nil {
		return nil
	}
	return &generationv1.LLMTokenUsage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

func llmChoices(cs []livepeer.LLMChoice) []*generationv1.LLMChoice {
	out := make([]*generationv1.LLMChoice, len(cs))
	for i, c := range cs {
		out[i] = &generationv1.LLMChoice{Index: c.Index, FinishReason: c.FinishReason, Delta: llmMessage(c.Delta), Message: llmMessage(c.Message)}
	}
	return out
}

func (s *service) LLM(ctx context.Context, r *generationv1.LLMRequest) (*generationv1.LLMResponse, error) {
	if v := validateLLM(r.GetMessages(), r.Temperature, r.MaxTokens, r.TopP, r.TopK); len(v) > 0 {
		return nil, s.invalid(v)
	}
	res, err := s.up.LLM(ctx, llmRequest(r.GetMessages(), r.GetModel(), r.Temperature, r.MaxTokens, r.TopP, r.TopK))
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	if u := res.Usage; u != nil {
		recordTokens(ctx, u.PromptTokens, u.CompletionTokens)
	}
	return &generationv1.LLMResponse{Id: res.ID, Model: res.Model, Created: res.Created, Usage: llmUsage(res.Usage), Choices: llmChoices(res.Choices)}, nil
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
	out := &generationv1.TextToSpeechResponse{Audio: &generationv1.MediaURL{Url: res.Audio.URL}}
	err = s.inline(ctx, r.GetInlineMedia(), out, []string{res.Audio.URL}, func(_ int, data []byte, ct string) {
		out.Audio.Content, out.Audio.ContentType = data, ct
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *service) LLMStream(r *generationv1.LLMStreamRequest, stream generationv1.GenerationService_LLMStreamServer) error {
	ctx := stream.Context()
	if v := validateLLM(r.GetMessages(), r.Temperature, r.MaxTokens, r.TopP, r.TopK); len(v) > 0 {
		return s.invalid(v)
	}
	up, err := s.up.LLMStream(ctx, llmRequest(r.GetMessages(), r.GetModel(), r.Temperature, r.MaxTokens, r.TopP, r.TopK), s.streamIdle)
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
		if err := stream.Send(&generationv1.LLMStreamResponse{Id: ev.ID, Model: ev.Model, Created: ev.Created, Usage: llmUsage(ev.Usage), Choices: llmChoices(ev.Choices)}); err != nil {
			return err
		}
	}
}
