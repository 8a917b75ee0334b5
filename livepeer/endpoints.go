package livepeer

import (
	"context"
	"net/url"
)

// This file has one method per pipeline: each builds its request body and decodes its
// answer; everything else is shared (send.go).

// absolute resolves a result URL against the gateway URL: a go-livepeer gateway may
// return "/stream/<id>/<n>.png", which a caller elsewhere could not use.
func (c *Client) absolute(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.IsAbs() {
		return raw
	}
	return c.base.ResolveReference(u).String()
}

func (c *Client) absoluteMedia(ms []Media) {
	for i := range ms {
		ms[i].URL = c.absolute(ms[i].URL)
	}
}

// TextToImage calls POST /text-to-image.
func (c *Client) TextToImage(ctx context.Context, p *TextToImageParams) (*ImageResponse, error) {
	b, err := jsonBody(p)
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineTextToImage, b)
}

// ImageToImage calls POST /image-to-image.
func (c *Client) ImageToImage(ctx context.Context, p *ImageToImageParams) (*ImageResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineImageToImage, b)
}

// ImageToVideo calls POST /image-to-video.
func (c *Client) ImageToVideo(ctx context.Context, p *ImageToVideoParams) (*ImageResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineImageToVideo, b)
}

// Upscale calls POST /upscale.
func (c *Client) Upscale(ctx context.Context, p *UpscaleParams) (*ImageResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineUpscale, b)
}

func (c *Client) images(ctx context.Context, pipeline string, b *body) (*ImageResponse, error) {
	var out ImageResponse
	if err := c.post(ctx, pipeline, b, &out); err != nil {
		return nil, err
	}
	c.absoluteMedia(out.Images)
	return &out, nil
}

// AudioToText calls POST /audio-to-text.
func (c *Client) AudioToText(ctx context.Context, p *AudioToTextParams) (*TextResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	var out TextResponse
	if err := c.post(ctx, PipelineAudioToText, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SegmentAnything2 calls POST /segment-anything-2 and parses the arrays the gateway
// sends as text; text that is not the arrays it should be is a BadResponseError.
func (c *Client) SegmentAnything2(ctx context.Context, p *SegmentAnything2Params) (*Segmentation, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	var out MasksResponse
	if err := c.post(ctx, PipelineSegmentAnything2, b, &out); err != nil {
		return nil, err
	}
	seg, err := out.parse()
	if err != nil {
		return nil, &BadResponseError{Pipeline: PipelineSegmentAnything2, Reason: err.Error()}
	}
	return seg, nil
}

// LLM calls POST /llm with stream=false.
func (c *Client) LLM(ctx context.Context, p *LLMRequest) (*LLMResponse, error) {
	q := *p
	q.Stream = false
	b, err := jsonBody(&q)
	if err != nil {
		return nil, err
	}
	var out LLMResponse
	if err := c.post(ctx, PipelineLLM, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImageToText calls POST /image-to-text.
func (c *Client) ImageToText(ctx context.Context, p *ImageToTextParams) (*ImageToTextResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	var out ImageToTextResponse
	if err := c.post(ctx, PipelineImageToText, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TextToSpeech calls POST /text-to-speech.
func (c *Client) TextToSpeech(ctx context.Context, p *TextToSpeechParams) (*AudioResponse, error) {
	b, err := jsonBody(p)
	if err != nil {
		return nil, err
	}
	var out AudioResponse
	if err := c.post(ctx, PipelineTextToSpeech, b, &out); err != nil {
		return nil, err
	}
	out.Audio.URL = c.absolute(out.Audio.URL)
	return &out, nil
}
