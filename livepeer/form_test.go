package livepeer

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"runtime"
	"strings"
	"testing"
)

type wantPart struct {
	name, filename, contentType string
	data                        []byte
	file                        bool
}

// readParts parses an encoded body with the standard library's multipart reader.
func readParts(t *testing.T, enc *encoded, r io.Reader) []wantPart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(enc.contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		t.Fatalf("content type %q: %v", enc.contentType, err)
	}
	mr := multipart.NewReader(r, params["boundary"])
	var parts []wantPart
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextRawPart: %v", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("reading part %q: %v", p.FormName(), err)
		}
		_, disp, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil {
			t.Fatalf("Content-Disposition %q: %v", p.Header.Get("Content-Disposition"), err)
		}
		fn, isFile := disp["filename"]
		parts = append(parts, wantPart{
			name: disp["name"], filename: fn, contentType: p.Header.Get("Content-Type"),
			data: data, file: isFile,
		})
	}
	return parts
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestFormEncodeParts(t *testing.T) {
	png := append([]byte("\x89PNG\r\n\x1a\n"), randomBytes(4096, 1)...)
	// Content that looks like multipart framing must come through untouched.
	tricky := []byte("--\r\n--boundary\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\x00\xff")
	wav := randomBytes(1000, 2)
	f := &form{}
	f.str("model_id", "timbrooks/instruct-pix2pix")
	f.str("prompt", "a \"quoted\" prompt\r\nwith lines and ünïcödé")
	f.str("empty", "")
	f.file("image", File{ContentType: "image/png", Content: png})
	f.file("mask", File{Filename: `my "odd" name\.bin`, ContentType: "application/octet-stream", Content: tricky})
	f.file("audio", File{ContentType: "audio/wav", Content: wav})
	f.file("blob", File{ContentType: "application/x-unknown", Content: []byte("x")})
	f.file("nothing", File{ContentType: "image/jpeg"})

	enc, err := f.encode()
	if err != nil {
		t.Fatal(err)
	}
	want := []wantPart{
		{name: "model_id", data: []byte("timbrooks/instruct-pix2pix")},
		{name: "prompt", data: []byte("a \"quoted\" prompt\r\nwith lines and ünïcödé")},
		{name: "empty", data: []byte{}},
		{name: "image", filename: "image.png", contentType: "image/png", data: png, file: true},
		{name: "mask", filename: `my "odd" name\.bin`, contentType: "application/octet-stream", data: tricky, file: true},
		{name: "audio", filename: "audio.wav", contentType: "audio/wav", data: wav, file: true},
		{name: "blob", filename: "blob", contentType: "application/x-unknown", data: []byte("x"), file: true},
		{name: "nothing", filename: "nothing.jpg", contentType: "image/jpeg", data: []byte{}, file: true},
	}
	var raw bytes.Buffer
	n, err := io.Copy(&raw, enc.reader())
	if err != nil {
		t.Fatal(err)
	}
	if n != enc.size {
		t.Errorf("size = %d, but the reader produced %d bytes", enc.size, n)
	}
	got := readParts(t, enc, bytes.NewReader(raw.Bytes()))
	if len(got) != len(want) {
		t.Fatalf("got %d parts, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.name != w.name || g.filename != w.filename || g.contentType != w.contentType || g.file != w.file {
			t.Errorf("part %d = {name %q filename %q type %q file %v}, want {name %q filename %q type %q file %v}",
				i, g.name, g.filename, g.contentType, g.file, w.name, w.filename, w.contentType, w.file)
		}
		if !bytes.Equal(g.data, w.data) {
			t.Errorf("part %d (%s): %d bytes differ from the %d bytes given", i, w.name, len(g.data), len(w.data))
		}
	}
	// Text fields first, files last: what FastAPI and multer expect.
	if !strings.HasPrefix(raw.String(), "--") {
		t.Errorf("body does not start with a boundary: %q", raw.String()[:20])
	}
	// The standard library parses it as a form too (ParseMultipartForm path).
	_, params, _ := mime.ParseMediaType(enc.contentType)
	form, err := multipart.NewReader(bytes.NewReader(raw.Bytes()), params["boundary"]).ReadForm(32 << 20)
	if err != nil {
		t.Fatalf("ReadForm: %v", err)
	}
	defer form.RemoveAll()
	if form.Value["model_id"][0] != "timbrooks/instruct-pix2pix" || len(form.File["image"]) != 1 || form.File["image"][0].Size != int64(len(png)) {
		t.Errorf("ReadForm gave values %v, files %v", form.Value, form.File)
	}
}

func TestFormFilenameDefaults(t *testing.T) {
	for ct, ext := range map[string]string{
		"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
		"audio/wave": ".wav", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3",
		"audio/flac": ".flac", "audio/webm": ".webm", "video/webm": ".webm", "video/mp4": ".mp4",
		"audio/mp4": ".mp4", "audio/ogg": ".ogg", "application/ogg": ".ogg",
		"application/octet-stream": "", "": "",
	} {
		if got := extensionFor(ct); got != ext {
			t.Errorf("extensionFor(%q) = %q, want %q", ct, got, ext)
		}
	}
}

func TestFormReaderReplays(t *testing.T) {
	f := &form{}
	f.str("model_id", "m")
	f.file("image", File{ContentType: "image/png", Content: randomBytes(100_000, 3)})
	enc, err := f.encode()
	if err != nil {
		t.Fatal(err)
	}
	first, err := io.ReadAll(enc.reader())
	if err != nil {
		t.Fatal(err)
	}
	// A retry opens the body again, possibly after the first attempt read only part of it.
	partial := make([]byte, 1000)
	if _, err := io.ReadFull(enc.reader(), partial); err != nil {
		t.Fatal(err)
	}
	second, err := io.ReadAll(enc.reader())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("second read of the body differs from the first")
	}
	if int64(len(first)) != enc.size {
		t.Errorf("size %d, body %d bytes", enc.size, len(first))
	}
	// Through the body wrapper the client uses, too.
	b, err := (&Client{}).formBody(f)
	if err != nil {
		t.Fatal(err)
	}
	third, _ := io.ReadAll(b.open())
	if b.size != int64(len(third)) || b.contentType == "" {
		t.Errorf("formBody: size %d, read %d, content type %q", b.size, len(third), b.contentType)
	}
	fourth, _ := io.ReadAll(b.open())
	if !bytes.Equal(third, fourth) {
		t.Error("formBody.open() twice gave different bytes")
	}
}

func TestFormEncodeNoFiles(t *testing.T) {
	f := &form{}
	f.str("a", "1")
	enc, err := f.encode()
	if err != nil {
		t.Fatal(err)
	}
	got := readParts(t, enc, enc.reader())
	if len(got) != 1 || got[0].name != "a" || string(got[0].data) != "1" || got[0].file {
		t.Errorf("parts = %+v", got)
	}
}

// A 10 MiB upload must be referenced by the encoded body, not copied into it.
func TestFormEncodeDoesNotCopyFiles(t *testing.T) {
	const size = 10 << 20
	content := randomBytes(size, 4)
	f := &form{}
	f.str("model_id", "stabilityai/stable-video-diffusion-img2vid-xt-1-1")
	f.file("image", File{ContentType: "image/png", Content: content})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	enc, err := f.encode()
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<10 {
		t.Errorf("encode of a 10 MiB file allocated %d bytes; the file must be referenced, not copied", alloc)
	}
	if enc.size <= size || enc.size > size+1024 {
		t.Errorf("size = %d, want a little more than %d", enc.size, size)
	}
	shared := false
	for _, s := range enc.segments {
		if len(s) == size && &s[0] == &content[0] {
			shared = true
		}
	}
	if !shared {
		t.Error("no segment shares the file's backing array")
	}

	allocs := testing.AllocsPerRun(10, func() {
		if _, err := f.encode(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 100 {
		t.Errorf("encode made %.0f allocations per run", allocs)
	}

	// Streaming the body out does not buffer the file either.
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := io.Copy(io.Discard, enc.reader())
	runtime.ReadMemStats(&after)
	if err != nil || n != enc.size {
		t.Fatalf("copied %d of %d bytes: %v", n, enc.size, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<10 {
		t.Errorf("reading the body allocated %d bytes", alloc)
	}
}

func TestParamsForms(t *testing.T) {
	str := func(s string) *string { return &s }
	f64 := func(v float64) *float64 { return &v }
	i32 := func(v int32) *int32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	yes := func(v bool) *bool { return &v }
	img := File{ContentType: "image/png", Content: []byte("png")}
	for _, tc := range []struct {
		name   string
		form   *form
		fields []string // name=value in order
		files  []string
	}{
		{
			name: "image-to-image all set",
			form: (&ImageToImageParams{
				ModelID: "m", Prompt: "p", Image: img, Loras: Loras{"b": 0.25, "a": 1}, Strength: f64(0.5),
				GuidanceScale: f64(7.5), ImageGuidanceScale: f64(1.5), NegativePrompt: str("n"),
				SafetyCheck: yes(true), Seed: i64(-42), NumInferenceSteps: i32(30), NumImagesPerPrompt: i32(2),
			}).form(),
			fields: []string{"model_id=m", "prompt=p", `loras={"a":1,"b":0.25}`, "strength=0.5", "guidance_scale=7.5",
				"image_guidance_scale=1.5", "negative_prompt=n", "safety_check=true", "seed=-42",
				"num_inference_steps=30", "num_images_per_prompt=2"},
			files: []string{"image"},
		},
		{
			name:   "image-to-image minimal",
			form:   (&ImageToImageParams{ModelID: "m", Prompt: "", Image: img}).form(),
			fields: []string{"model_id=m", "prompt="},
			files:  []string{"image"},
		},
		{
			name: "image-to-video",
			form: (&ImageToVideoParams{ModelID: "m", Image: img, Height: i32(576), Width: i32(1024), FPS: i32(6),
				MotionBucketID: i32(127), NoiseAugStrength: f64(0.02), SafetyCheck: yes(false), Seed: i64(1), NumInferenceSteps: i32(25)}).form(),
			fields: []string{"model_id=m", "height=576", "width=1024", "fps=6", "motion_bucket_id=127",
				"noise_aug_strength=0.02", "safety_check=false", "seed=1", "num_inference_steps=25"},
			files: []string{"image"},
		},
		{
			name:   "upscale",
			form:   (&UpscaleParams{ModelID: "m", Prompt: "p", Image: img, Seed: i64(9007199254740993)}).form(),
			fields: []string{"model_id=m", "prompt=p", "seed=9007199254740993"},
			files:  []string{"image"},
		},
		{
			name:   "audio-to-text",
			form:   (&AudioToTextParams{ModelID: "m", Audio: File{ContentType: "audio/mpeg", Content: []byte("ID3")}, ReturnTimestamps: TimestampsWord}).form(),
			fields: []string{"model_id=m", "return_timestamps=word"},
			files:  []string{"audio"},
		},
		{
			name: "segment-anything-2",
			form: (&SegmentAnything2Params{ModelID: "m", Image: img, PointCoords: []Point{{1, 2}, {0.5, 1e-7}}, PointLabels: []int32{1, 0},
				Box: &Box{0, 0, 1, 1}, MaskInput: &Mask{Height: 2, Width: 2, Values: []float32{0.1, -2, 3e21, 0}}, MultimaskOutput: yes(true), ReturnLogits: yes(false), NormalizeCoords: yes(true)}).form(),
			fields: []string{"model_id=m", "point_coords=[[1,2],[0.5,1e-7]]", "point_labels=[1,0]", "box=[0,0,1,1]", "mask_input=[[[0.1,-2],[3e+21,0]]]",
				"multimask_output=true", "return_logits=false", "normalize_coords=true"},
			files: []string{"image"},
		},
		{
			name:   "image-to-text",
			form:   (&ImageToTextParams{ModelID: "m", Image: img, Prompt: str("what is this")}).form(),
			fields: []string{"model_id=m", "prompt=what is this"},
			files:  []string{"image"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := tc.form.encode()
			if err != nil {
				t.Fatal(err)
			}
			var fields, files []string
			for _, p := range readParts(t, enc, enc.reader()) {
				if p.file {
					files = append(files, p.name)
					if p.filename == "" || p.contentType == "" {
						t.Errorf("file part %q: filename %q, content type %q", p.name, p.filename, p.contentType)
					}
					continue
				}
				if files != nil {
					t.Errorf("text field %q after a file part", p.name)
				}
				fields = append(fields, p.name+"="+string(p.data))
			}
			if strings.Join(fields, "\n") != strings.Join(tc.fields, "\n") {
				t.Errorf("fields:\n got %q\nwant %q", fields, tc.fields)
			}
			if strings.Join(files, ",") != strings.Join(tc.files, ",") {
				t.Errorf("files = %q, want %q", files, tc.files)
			}
		})
	}
}

func TestDetectContentType(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte("\x89PNG\r\n\x1a\nrest"), "image/png"},
		{[]byte("\xff\xd8\xff\xe0rest"), "image/jpeg"},
		{[]byte("RIFF\x00\x00\x00\x00WEBPVP8 "), "image/webp"},
		{[]byte("RIFF\x00\x00\x00\x00WAVEfmt "), "audio/wave"},
		{[]byte("ID3\x03rest"), "audio/mpeg"},
		{[]byte("hello"), "text/plain"},
		{[]byte{0, 1, 2, 3}, "application/octet-stream"},
	} {
		if got := DetectContentType(tc.in); got != tc.want {
			t.Errorf("DetectContentType(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestJSONBody(t *testing.T) {
	b, err := jsonBody(&TextToImageParams{ModelID: "m", Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	one, _ := io.ReadAll(b.open())
	two, _ := io.ReadAll(b.open())
	if string(one) != `{"model_id":"m","prompt":"p"}` || !bytes.Equal(one, two) || b.size != int64(len(one)) || b.contentType != "application/json" {
		t.Errorf("jsonBody: %q / %q, size %d, type %q", one, two, b.size, b.contentType)
	}
}

// TestFormRefusesUnencodableValues: the encoder itself refuses what would corrupt the
// request (validation in the server normally refuses it first): NaN and ±Inf, which
// would go out as the text "NaN", a content type with CR/LF, which would inject part
// headers, one that is not a media type, and control characters in a file name. JSON
// bodies refuse non-finite numbers the same way.
func TestFormRefusesUnencodableValues(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(-1)
	cases := []struct {
		name, field string
		form        *form
	}{
		{"NaN", "guidance_scale", (&ImageToImageParams{ModelID: "m", Prompt: "p", GuidanceScale: &nan, Image: File{ContentType: "image/png", Content: []byte("x")}}).form()},
		{"-Inf", "noise_aug_strength", (&ImageToVideoParams{ModelID: "m", NoiseAugStrength: &inf, Image: File{ContentType: "image/png", Content: []byte("x")}}).form()},
		{"CRLF content type", "image.content_type", (&UpscaleParams{ModelID: "m", Prompt: "p", Image: File{ContentType: "image/png\r\nX-Injected: 1", Content: []byte("x")}}).form()},
		{"not a media type", "audio.content_type", (&AudioToTextParams{ModelID: "m", Audio: File{ContentType: "wav", Content: []byte("x")}}).form()},
		{"LF in file name", "image.filename", (&ImageToTextParams{ModelID: "m", Image: File{Filename: "a\n.png", ContentType: "image/png", Content: []byte("x")}}).form()},
	}
	for _, tc := range cases {
		enc, err := tc.form.encode()
		var ipe *InvalidParamError
		if !errors.As(err, &ipe) || ipe.Field != tc.field {
			t.Errorf("%s: encode = %v, %v; want InvalidParamError for %s", tc.name, enc != nil, err, tc.field)
		}
	}
	_, err := jsonBody(&TextToImageParams{ModelID: "m", Prompt: "p", GuidanceScale: &nan})
	var ipe *InvalidParamError
	if !errors.As(err, &ipe) {
		t.Errorf("jsonBody with NaN: %v, want InvalidParamError", err)
	}
}
