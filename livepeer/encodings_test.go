package livepeer

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseNumberList(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, tc := range []struct {
		in     string
		depth  int
		shape  []int
		values []float64
	}{
		{"[0.50, 0.37, 0.125]", 1, []int{3}, []float64{0.5, 0.37, 0.125}},
		{"[]", 1, []int{0}, nil},
		{"[]", 3, []int{0, 0, 0}, nil},
		{"[[[2.84, -1.5], [0.0, 1e-05]]]", 3, []int{1, 2, 2}, []float64{2.84, -1.5, 0, 1e-5}},
		// Python's spellings of the floats JSON lacks, and of a boolean mask.
		{"[[[nan, inf, -inf]], [[True, False, 2]]]", 3, []int{2, 1, 3}, []float64{nan, inf, -inf, 1, 0, 2}},
		{"[NaN, Infinity, -Infinity]", 1, []int{3}, []float64{nan, inf, -inf}},
		{" [\n[ [1] ] ]\n", 3, []int{1, 1, 1}, []float64{1}},
		{"[[[]]]", 3, []int{1, 1, 0}, nil},
		{"[1e400, -1e400]", 1, []int{2}, []float64{inf, -inf}},
	} {
		l, err := parseNumberList[float64](tc.in, tc.depth)
		if err != nil {
			t.Errorf("parseNumberList(%q, %d): %v", tc.in, tc.depth, err)
			continue
		}
		same := slices.EqualFunc(l.Values, tc.values, func(a, b float64) bool { return a == b || a != a && b != b })
		if !slices.Equal(l.Shape, tc.shape) || !same {
			t.Errorf("parseNumberList(%q, %d) = %v %v, want %v %v", tc.in, tc.depth, l.Shape, l.Values, tc.shape, tc.values)
		}
	}
}

func TestParseNumberListRefuses(t *testing.T) {
	for _, tc := range []struct {
		in    string
		depth int
		want  string
	}{
		{"", 1, "empty"},
		{"  ", 3, "empty"},
		{"0.5", 1, "expected '['"},
		{"[0.5", 1, "not closed"},
		{"[0.5,]", 1, "expected a number"},
		{"[0.5 0.25]", 1, "expected ',' or ']'"},
		{"[[1]]", 1, "expected a number"},
		{"[1]", 3, "expected '['"},
		{"[[[1, 2], [3]]]", 3, "not rectangular"},
		{"[[[1]], [[1], [2]]]", 3, "not rectangular"},
		{"[[[1]]] extra", 3, "text after the list"},
		{"[0x1p-2]", 1, "decimal"},
		{"[none]", 1, "expected a number"},
		{"[\"1\"]", 1, "expected a number"},
		{"[" + strings.Repeat("1", 100) + "]", 1, "longer than"},
		{strings.Repeat("[", 10000), 3, "expected a number"},
	} {
		l, err := parseNumberList[float32](tc.in, tc.depth)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseNumberList(%.40q, %d) = %v, %v; want an error with %q", tc.in, tc.depth, l, err, tc.want)
		}
	}
}

func TestMasksResponseParse(t *testing.T) {
	s := func(v string) *string { return &v }
	r := &MasksResponse{
		Masks:  s("[[[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]"),
		Scores: s("[0.9, 0.5]"),
		Logits: s("[[[-2.5], [3.1]], [[nan], [-inf]]]"),
	}
	seg, err := r.parse()
	if err != nil {
		t.Fatal(err)
	}
	if len(seg.Masks) != 2 || seg.Masks[1].Height != 2 || seg.Masks[1].Width != 3 ||
		!slices.Equal(seg.Masks[1].Values, []float32{0, 0, 0, 1, 1, 1}) || !slices.Equal(seg.Scores, []float64{0.9, 0.5}) {
		t.Errorf("parse = %+v", seg)
	}
	if len(seg.Logits) != 2 || seg.Logits[0].Height != 2 || seg.Logits[0].Width != 1 || !math.IsInf(float64(seg.Logits[1].Values[1]), -1) {
		t.Errorf("logits = %+v", seg.Logits)
	}
	// Appending to one mask's values must not overwrite the next mask's.
	_ = append(seg.Masks[0].Values, 9)
	if seg.Masks[1].Values[0] != 0 {
		t.Error("masks share capacity")
	}

	for _, tc := range []struct {
		masks, scores, logits, want string
	}{
		{"[[[1]]]", "[0.9, 0.1]", "[[[1]]]", "1 masks but 2 scores"},
		{"[[[1]], [[0]]]", "[0.9, 0.1]", "[[[1]]]", "2 masks but 1 logits"},
		{"[[1]]", "[0.9]", "[[[1]]]", `"masks" is not`},
		{"[[[1]]]", "[[0.9]]", "[[[1]]]", `"scores" is not`},
		{"[[[1]]]", "[0.9]", "[[[1]", `"logits" is not`},
	} {
		_, err := (&MasksResponse{Masks: s(tc.masks), Scores: s(tc.scores), Logits: s(tc.logits)}).parse()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q, %q, %q) = %v, want %q", tc.masks, tc.scores, tc.logits, err, tc.want)
		}
	}
	// Without logits (an empty list) the masks still count.
	if seg, err := (&MasksResponse{Masks: s("[[[1]]]"), Scores: s("[0.9]"), Logits: s("[]")}).parse(); err != nil || len(seg.Logits) != 0 {
		t.Errorf("parse without logits = %+v, %v", seg, err)
	}
}

func TestLorasEncoding(t *testing.T) {
	b, err := jsonBody(&TextToImageParams{ModelID: "m", Prompt: "p", Loras: Loras{"z/b": 0.5, "a/x": 1, `q"<`: -0.25}})
	if err != nil {
		t.Fatal(err)
	}
	got := new(bytes.Buffer)
	if _, err := got.ReadFrom(b.open()); err != nil {
		t.Fatal(err)
	}
	// A JSON string holding the object, keys sorted.
	want := `{"model_id":"m","prompt":"p","loras":"{\"a/x\":1,\"q\\\"\\u003c\":-0.25,\"z/b\":0.5}"}`
	if got.String() != want {
		t.Errorf("body = %s\nwant   %s", got, want)
	}
	b, err = jsonBody(&TextToImageParams{ModelID: "m", Prompt: "p", Loras: Loras{}})
	if err != nil {
		t.Fatal(err)
	}
	got.Reset()
	_, _ = got.ReadFrom(b.open())
	if strings.Contains(got.String(), "loras") {
		t.Errorf("empty loras sent: %s", got)
	}
	_, err = jsonBody(&TextToImageParams{ModelID: "m", Loras: Loras{"a": math.Inf(1)}})
	var ip *InvalidParamError
	if !errors.As(err, &ip) || ip.Field != "loras" {
		t.Errorf("infinite weight: %v, want an InvalidParamError for loras", err)
	}
	_, err = (&ImageToImageParams{ModelID: "m", Loras: Loras{"a": math.NaN()}}).form().encode()
	if !errors.As(err, &ip) || ip.Field != "loras" {
		t.Errorf("NaN weight in a form: %v, want an InvalidParamError for loras", err)
	}
}

func TestSegmentAnything2FormRefusesNonFinite(t *testing.T) {
	img := File{ContentType: "image/png", Content: []byte("png")}
	for name, p := range map[string]*SegmentAnything2Params{
		"point_coords": {Image: img, PointCoords: []Point{{1, math.NaN()}}},
		"box":          {Image: img, Box: &Box{0, 0, math.Inf(1), 1}},
		"mask_input":   {Image: img, MaskInput: &Mask{Height: 1, Width: 2, Values: []float32{0, float32(math.Inf(-1))}}},
	} {
		_, err := p.form().encode()
		var ip *InvalidParamError
		if !errors.As(err, &ip) || ip.Field != name {
			t.Errorf("%s: %v, want an InvalidParamError for it", name, err)
		}
	}
	_, err := (&SegmentAnything2Params{Image: img, MaskInput: &Mask{Height: 2, Width: 2, Values: []float32{1}}}).form().encode()
	if err == nil {
		t.Error("a mask_input with fewer values than height×width was encoded")
	}
}

func TestGatewayTimestamps(t *testing.T) {
	for ts, want := range map[Timestamps]string{TimestampsSentence: "sentence", TimestampsWord: "word", TimestampsNone: "False"} {
		if got, ok := gatewayTimestamps(ts); !ok || got != want {
			t.Errorf("gatewayTimestamps(%d) = %q, %v; want %q", ts, got, ok, want)
		}
		// Livepeer Studio would coerce these spellings and refuse them (UPSTREAM §12.1).
		f := (&AudioToTextParams{ModelID: "m", ReturnTimestamps: ts}).form()
		if err := f.studioCheck(); err != nil {
			t.Errorf("%q fails Studio's coercion: %v", want, err)
		}
	}
	if _, ok := gatewayTimestamps(TimestampsDefault); ok {
		t.Error("TimestampsDefault is sent")
	}
	f := (&AudioToTextParams{ModelID: "m"}).form()
	for _, fl := range f.fields {
		if fl.name == "return_timestamps" {
			t.Error("return_timestamps sent for TimestampsDefault")
		}
	}
	if _, err := (&AudioToTextParams{ModelID: "m", ReturnTimestamps: 9}).form().encode(); err == nil {
		t.Error("an unknown Timestamps value was encoded")
	}
}
