package livepeertest

import (
	"math"
	"testing"
)

// JavaScript Number.parseFloat, as Studio's coercion uses it (UPSTREAM
// §12.1). Expected values are what ECMA-262 parseFloat returns.
func TestJSParseFloat(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		in   string
		want float64
	}{
		{"4k photo", 4}, {"3D render", 3}, {" .5 x", 0.5}, {"1e3 cats", 1000},
		{"Infinity", math.Inf(1)}, {"-Infinity", math.Inf(-1)}, {"+Infinityx", math.Inf(1)},
		{"-", nan}, {"e5", nan}, {".x", nan}, {"", nan}, {"infinity", nan}, {"true", nan},
		{"1.", 1}, {"1.e3", 1000}, {"-.25", -0.25}, {"+7", 7}, {"1e", 1}, {"1e+", 1},
		{"1E-2x", 0.01}, {"0x10", 0}, {"1_000", 1}, {"007", 7}, {"1e400", math.Inf(1)},
		{"\t\n\v\f\r 2", 2}, {"\u00a0\ufeff\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000" + "3", 3},
		{"\u0085" + "4", nan}, // NEL is Go white space, not JavaScript's
		{"\u200b" + "5", nan}, // zero width space is not white space either
	}
	for _, c := range cases {
		got := jsParseFloat(c.in)
		if math.IsNaN(c.want) {
			if !math.IsNaN(got) {
				t.Errorf("parseFloat(%q) = %v, want NaN", c.in, got)
			}
			continue
		}
		if got != c.want {
			t.Errorf("parseFloat(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestStudioCoerce(t *testing.T) {
	for in, want := range map[string]any{
		"4k photo": 4.0, "true": true, "false": false, "True": "True", "TRUE": "TRUE",
		"": "", "sentence": "sentence", " true": " true",
	} {
		if got := studioCoerce(in); got != want {
			t.Errorf("coerce(%q) = %#v, want %#v", in, got, want)
		}
	}
}
