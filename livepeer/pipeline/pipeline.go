// Package pipeline is the one table of the Livepeer AI pipelines genservice serves:
// each row holds every fact about a pipeline (its path, the model sent when the caller
// names none, how long a call may take without a caller deadline, how the request is
// encoded, whether Livepeer Studio serves it). The upstream client, the configuration
// and the gateway simulator all read it. Adding a pipeline touches the proto, this table
// and its handler.
//
// It is a package of its own, with no dependencies, so that both the client (livepeer)
// and the simulator (livepeer/livepeertest, which the client's tests import) can read it.
package pipeline

import "time"

// Pipeline names, as they appear in gateway paths.
const (
	TextToImage      = "text-to-image"
	ImageToImage     = "image-to-image"
	ImageToVideo     = "image-to-video"
	Upscale          = "upscale"
	AudioToText      = "audio-to-text"
	SegmentAnything2 = "segment-anything-2"
	LLM              = "llm"
	ImageToText      = "image-to-text"
	TextToSpeech     = "text-to-speech"
)

// Info is one row of the table.
type Info struct {
	// Name is the path segment after the gateway's base URL.
	Name string
	// DefaultModel is sent when the caller leaves the model empty. The gateway spec
	// requires model_id, and a go-livepeer gateway dereferences it unguarded, so
	// genservice always sends one: the model Livepeer Studio injects (and the docs keep
	// warm), or the gateway's own fallback for pipelines Studio does not serve.
	DefaultModel string
	// Timeout bounds a call when the caller sets no deadline. Image-to-video and cold
	// models take minutes; Studio itself gives the gateway 10 minutes.
	Timeout time.Duration
	// JSON: the request is application/json; otherwise multipart/form-data.
	JSON bool
	// Studio: Livepeer Studio serves the pipeline (UPSTREAM.md §2.2; it has no
	// image-to-text or text-to-speech).
	Studio bool
}

// table is in the gateway spec's order.
var table = []Info{
	{Name: TextToImage, DefaultModel: "SG161222/RealVisXL_V4.0_Lightning", Timeout: 2 * time.Minute, JSON: true, Studio: true},
	{Name: ImageToImage, DefaultModel: "timbrooks/instruct-pix2pix", Timeout: 2 * time.Minute, Studio: true},
	{Name: ImageToVideo, DefaultModel: "stabilityai/stable-video-diffusion-img2vid-xt-1-1", Timeout: 10 * time.Minute, Studio: true},
	{Name: Upscale, DefaultModel: "stabilityai/stable-diffusion-x4-upscaler", Timeout: 3 * time.Minute, Studio: true},
	{Name: AudioToText, DefaultModel: "openai/whisper-large-v3", Timeout: 5 * time.Minute, Studio: true},
	{Name: SegmentAnything2, DefaultModel: "facebook/sam2-hiera-large", Timeout: 2 * time.Minute, Studio: true},
	{Name: LLM, DefaultModel: "meta-llama/Meta-Llama-3.1-8B-Instruct", Timeout: 5 * time.Minute, JSON: true, Studio: true},
	{Name: ImageToText, DefaultModel: "Salesforce/blip-image-captioning-large", Timeout: 2 * time.Minute},
	{Name: TextToSpeech, DefaultModel: "parler-tts/parler-tts-large-v1", Timeout: 3 * time.Minute, JSON: true},
}

// All returns the table's rows.
func All() []Info { return append([]Info(nil), table...) }

// Get returns the row of name.
func Get(name string) (Info, bool) {
	for _, p := range table {
		if p.Name == name {
			return p, true
		}
	}
	return Info{}, false
}

// Names lists every pipeline's name.
func Names() []string { return names(func(Info) bool { return true }) }

// StudioNames lists the pipelines Livepeer Studio serves.
func StudioNames() []string { return names(func(p Info) bool { return p.Studio }) }

// NotOnStudio lists the pipelines Livepeer Studio does not serve.
func NotOnStudio() []string { return names(func(p Info) bool { return !p.Studio }) }

func names(keep func(Info) bool) []string {
	var out []string
	for _, p := range table {
		if keep(p) {
			out = append(out, p.Name)
		}
	}
	return out
}
