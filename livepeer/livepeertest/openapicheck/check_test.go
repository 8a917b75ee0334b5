package openapicheck_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"genservice/livepeer/livepeertest"
	"genservice/livepeer/livepeertest/openapicheck"
)

const key = "sk-openapicheck"

// sendAll posts each body to the simulator and returns what it recorded,
// in the same order. The simulator's answers do not matter here: bad
// requests are recorded too, and the check must judge them on its own.
func sendAll(t *testing.T, reqs []testReq) []livepeertest.Request {
	t.Helper()
	s, err := livepeertest.New(livepeertest.Config{APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range reqs {
		req, err := http.NewRequest(http.MethodPost, s.URL()+"/"+r.pipeline, bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", r.ctype)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := s.Requests()
	if len(got) != len(reqs) {
		t.Fatalf("recorded %d of %d", len(got), len(reqs))
	}
	return got
}

type testReq struct {
	name     string
	pipeline string
	ctype    string
	body     []byte
	want     string // for bad requests: a fragment of the check's error
}

func jsonReq(name, pipeline, body string) testReq {
	return testReq{name: name, pipeline: pipeline, ctype: "application/json", body: []byte(body)}
}

// failing sets what the check's error must mention.
func (r testReq) failing(want string) testReq {
	r.want = want
	return r
}

// formReq builds a multipart body by hand: "name=value" for text fields,
// "@name" for a small PNG-like file part.
func formReq(t *testing.T, name, pipeline string, fields ...string) testReq {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, f := range fields {
		if file, ok := strings.CutPrefix(f, "@"); ok {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="`+file+`"; filename="x.bin"`)
			h.Set("Content-Type", "application/octet-stream")
			w, err := mw.CreatePart(h)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write(bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 100))
			continue
		}
		k, v, _ := strings.Cut(f, "=")
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return testReq{name: name, pipeline: pipeline, ctype: mw.FormDataContentType(), body: b.Bytes()}
}

func goodRequests(t *testing.T) []testReq {
	return []testReq{
		jsonReq("t2i", "text-to-image", `{"model_id":"SG161222/RealVisXL_V4.0_Lightning","prompt":"a cat","width":1024,"height":576,"seed":3,"guidance_scale":2,"num_images_per_prompt":2,"safety_check":true,"loras":"","negative_prompt":"dogs","num_inference_steps":4}`),
		formReq(t, "i2i", "image-to-image", "prompt=blue", "@image", "model_id=timbrooks/instruct-pix2pix", "strength=0.5", "seed=1", "safety_check=false", "image_guidance_scale=1.5"),
		formReq(t, "i2v", "image-to-video", "@image", "model_id=stabilityai/stable-video-diffusion-img2vid-xt-1-1", "height=576", "width=1024", "fps=6", "motion_bucket_id=127", "noise_aug_strength=0.02"),
		formReq(t, "upscale", "upscale", "prompt=sharp", "@image", "model_id=stabilityai/stable-diffusion-x4-upscaler", "num_inference_steps=10"),
		formReq(t, "a2t", "audio-to-text", "@audio", "model_id=openai/whisper-large-v3", "return_timestamps=word"),
		formReq(t, "sam2", "segment-anything-2", "@image", "model_id=facebook/sam2-hiera-large", "point_coords=[[1,2]]", "point_labels=[1]", "multimask_output=true", "return_logits=false"),
		jsonReq("llm", "llm", `{"model":"meta-llama/Meta-Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"hi"}],"max_tokens":64,"stream":false,"temperature":0.2,"top_p":1,"top_k":-1}`),
		formReq(t, "i2t", "image-to-text", "@image", "prompt=what is it", "model_id=Salesforce/blip-image-captioning-large"),
		jsonReq("tts", "text-to-speech", `{"model_id":"parler-tts/parler-tts-large-v1","text":"hello","description":"calm"}`),
	}
}

func badRequests(t *testing.T) []testReq {
	return []testReq{
		jsonReq("t2i missing model_id", "text-to-image", `{"prompt":"a cat"}`).failing("missing property 'model_id'"),
		jsonReq("t2i unknown field", "text-to-image", `{"model_id":"m","prompt":"a cat","colour":"red"}`).failing("additional properties 'colour' not allowed"),
		jsonReq("t2i wrong type", "text-to-image", `{"model_id":"m","prompt":"a cat","seed":"7"}`).failing("got string, want integer"),
		jsonReq("t2i fractional integer", "text-to-image", `{"model_id":"m","prompt":"a cat","height":512.5}`).failing("want integer"),
		jsonReq("llm missing messages", "llm", `{"model":"m","max_tokens":1,"stream":false}`).failing(`"messages" is missing`),
		jsonReq("llm message without role", "llm", `{"model":"m","messages":[{"content":"x"}],"max_tokens":1,"stream":false}`).failing(`"role" is missing`),
		jsonReq("tts missing model_id", "text-to-speech", `{"text":"hello"}`).failing("missing property 'model_id'"),
		jsonReq("tts unknown field", "text-to-speech", `{"model_id":"m","text":"hello","voice":"x"}`).failing("additional properties 'voice' not allowed"),
		formReq(t, "t2i as multipart", "text-to-image", "model_id=m", "prompt=p").failing("header Content-Type has unexpected value"),
		formReq(t, "i2i missing model_id", "image-to-image", "prompt=blue", "@image").failing("missing property 'model_id'"),
		formReq(t, "i2i missing image", "image-to-image", "prompt=blue", "model_id=m").failing("missing property 'image'"),
		formReq(t, "i2i unknown field", "image-to-image", "prompt=blue", "@image", "model_id=m", "colour=red").failing("part colour: undefined"),
		formReq(t, "i2i wrong type", "image-to-image", "prompt=blue", "@image", "model_id=m", "seed=abc").failing("invalid integer"),
		formReq(t, "i2v wrong bool", "image-to-video", "@image", "model_id=m", "safety_check=yes").failing("invalid boolean"),
		formReq(t, "sam2 missing model_id", "segment-anything-2", "@image").failing("missing property 'model_id'"),
		formReq(t, "a2t missing audio", "audio-to-text", "model_id=m").failing("missing property 'audio'"),
		jsonReq("i2t as json", "image-to-text", `{"model_id":"m"}`).failing("header Content-Type has unexpected value"),
	}
}

func TestGoodRequestsPass(t *testing.T) {
	c := openapicheck.ForTest(t)
	reqs := goodRequests(t)
	got := sendAll(t, reqs)
	seen := map[string]bool{}
	for i, r := range got {
		seen[r.Pipeline] = true
		if err := c.Check(r); err != nil {
			t.Errorf("%s: %v", reqs[i].name, err)
		}
	}
	for _, p := range livepeertest.Pipelines {
		if !seen[p] {
			t.Errorf("pipeline %s not covered", p)
		}
	}
	if err := c.CheckAll(got); err != nil {
		t.Fatal(err)
	}
}

func TestBadRequestsFail(t *testing.T) {
	c := openapicheck.ForTest(t)
	reqs := badRequests(t)
	for i, r := range sendAll(t, reqs) {
		err := c.Check(r)
		switch {
		case err == nil:
			t.Errorf("%s: passed the check", reqs[i].name)
		case !strings.Contains(err.Error(), reqs[i].want):
			t.Errorf("%s: error does not mention %q:\n%v", reqs[i].name, reqs[i].want, err)
		}
	}
}

func TestCheckRequestLevel(t *testing.T) {
	c := openapicheck.ForTest(t)
	good := livepeertest.Request{
		Pipeline: "text-to-image", Method: "POST", Path: "/api/beta/generate/text-to-image",
		Header: http.Header{"Authorization": {"Bearer k"}, "Content-Type": {"application/json"}},
		Body:   []byte(`{"model_id":"m","prompt":"p"}`),
	}
	if err := c.Check(good); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*livepeertest.Request){
		"no auth":          func(r *livepeertest.Request) { r.Header.Del("Authorization") },
		"basic auth":       func(r *livepeertest.Request) { r.Header.Set("Authorization", "Basic abc") },
		"empty token":      func(r *livepeertest.Request) { r.Header.Set("Authorization", "Bearer ") },
		"GET":              func(r *livepeertest.Request) { r.Method = "GET" },
		"unknown pipeline": func(r *livepeertest.Request) { r.Pipeline = "text-to-3d" },
		"path mismatch":    func(r *livepeertest.Request) { r.Path = "/api/beta/generate/llm" },
		"no body":          func(r *livepeertest.Request) { r.Body = nil },
		"bad JSON":         func(r *livepeertest.Request) { r.Body = []byte(`{"model_id":`) },
		"text/plain":       func(r *livepeertest.Request) { r.Header.Set("Content-Type", "text/plain") },
	} {
		r := good
		r.Header = good.Header.Clone()
		mutate(&r)
		if err := c.Check(r); err == nil {
			t.Errorf("%s: passed", name)
		}
	}
}

func TestSpecPath(t *testing.T) {
	p, err := openapicheck.SpecPath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if filepath.Base(p) != "gateway.openapi.yaml" {
		t.Fatalf("SpecPath = %s", p)
	}

	// The override must point at a real file.
	t.Setenv(openapicheck.SpecEnv, p)
	if got, err := openapicheck.SpecPath(); err != nil || got != p {
		t.Fatalf("override: %q %v", got, err)
	}
	t.Setenv(openapicheck.SpecEnv, filepath.Join(t.TempDir(), "missing.yaml"))
	if _, err := openapicheck.SpecPath(); err == nil {
		t.Fatal("missing override accepted")
	}

	// Found from a nested directory whose ancestor holds shared/.
	root := t.TempDir()
	spec, _ := os.ReadFile(p)
	if err := os.MkdirAll(filepath.Join(root, "shared", "livepeer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "shared", "livepeer", "gateway.openapi.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(root, "repo", "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(openapicheck.SpecEnv, "")
	t.Chdir(deep)
	got, err := openapicheck.SpecPath()
	if err != nil || got != filepath.Join(root, "shared", "livepeer", "gateway.openapi.yaml") {
		t.Fatalf("nested: %q %v", got, err)
	}
	if _, err := openapicheck.Load(got); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := openapicheck.Load(filepath.Join(t.TempDir(), "nope.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("openapi: 3.1.0\ninfo: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openapicheck.Load(bad); err == nil {
		t.Fatal("invalid spec loaded")
	}
}
