package livepeer

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
)

// This file has the gateway's JSON-in-a-string encodings: LoRA weights (text-to-image
// and image-to-image) and the segment-anything-2 prompts. The gateway takes each as
// one text field holding JSON; genservice's callers give typed values instead.

// Loras maps LoRA adapter names to their weights. The gateway takes them as a JSON
// object in a string, e.g. "{\"latent-consistency/lcm-lora-sdxl\":1}"; an empty map is
// not sent at all (omitempty, form.loras), which leaves the gateway's default, none.
type Loras map[string]float64

// gatewayJSON is the JSON object the gateway reads. encoding/json writes map keys in
// sorted order, so the same weights always make the same text (and the same request
// body, which keeps logs and recorded requests comparable).
func (l Loras) gatewayJSON() (string, error) {
	for name, w := range l {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return "", &InvalidParamError{Field: "loras", Reason: "the weight of " + strconv.Quote(name) + " must be a finite number"}
		}
	}
	b, err := json.Marshal(map[string]float64(l))
	if err != nil {
		return "", &InvalidParamError{Field: "loras", Reason: err.Error()}
	}
	return string(b), nil
}

// MarshalJSON writes the weights as a JSON string holding the JSON object: the
// text-to-image body's "loras" is a string field.
func (l Loras) MarshalJSON() ([]byte, error) {
	s, err := l.gatewayJSON()
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

func (f *form) loras(name string, l Loras) {
	if len(l) == 0 {
		return
	}
	s, err := l.gatewayJSON()
	if err != nil {
		var ip *InvalidParamError
		if errors.As(err, &ip) {
			f.fail(name, ip.Reason)
		} else {
			f.fail(name, err.Error())
		}
		return
	}
	f.str(name, s)
}

// Point is a segment-anything-2 point prompt.
type Point struct{ X, Y float64 }

// Box is a segment-anything-2 box prompt, XYXY: top-left, then bottom-right corner.
type Box struct{ X1, Y1, X2, Y2 float64 }

// Mask is a two-dimensional array of numbers, row-major: the value at row r, column c
// is Values[r*Width+c]. segment-anything-2 takes one as mask_input and returns masks
// and logits as such.
type Mask struct {
	Height, Width int
	Values        []float32
}

// appendNumber appends x as a JSON number, the shortest text that reads back as the
// same value at bits (32 or 64) precision, in the style of encoding/json: plain
// decimals from 1e-6 to 1e21, exponent notation outside. Callers check finiteness.
func appendNumber(b []byte, x float64, bits int) []byte {
	abs := math.Abs(x)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, x, format, -1, bits)
	if format == 'e' {
		// Python's json and float() read "1e-07" fine; trim it to "1e-7" anyway, as
		// encoding/json does, so the text is what any JSON encoder would write.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func finite(xs ...float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// points adds an N×2 JSON array, "[[x,y],...]"; nothing when there are no points.
func (f *form) points(name string, ps []Point) {
	if len(ps) == 0 {
		return
	}
	b := make([]byte, 0, 2+len(ps)*16)
	b = append(b, '[')
	for i, p := range ps {
		if !finite(p.X, p.Y) {
			f.fail(name, "point "+strconv.Itoa(i)+" must have finite coordinates")
			return
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = appendNumber(b, p.X, 64)
		b = append(b, ',')
		b = appendNumber(b, p.Y, 64)
		b = append(b, ']')
	}
	f.str(name, string(append(b, ']')))
}

// labels adds a JSON array of integers, "[1,0]"; nothing when there are none.
func (f *form) labels(name string, ls []int32) {
	if len(ls) == 0 {
		return
	}
	b := make([]byte, 0, 2+len(ls)*2)
	b = append(b, '[')
	for i, l := range ls {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(l), 10)
	}
	f.str(name, string(append(b, ']')))
}

// box adds a JSON array of four numbers, "[x1,y1,x2,y2]"; nothing when box is nil.
func (f *form) box(name string, bx *Box) {
	if bx == nil {
		return
	}
	if !finite(bx.X1, bx.Y1, bx.X2, bx.Y2) {
		f.fail(name, "must have finite coordinates")
		return
	}
	b := []byte{'['}
	for i, x := range []float64{bx.X1, bx.Y1, bx.X2, bx.Y2} {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendNumber(b, x, 64)
	}
	f.str(name, string(append(b, ']')))
}

// maskInput adds a 1×H×W JSON array, "[[[v,...],...]]": the runner reads mask_input as
// a batch of one low-resolution mask. Nothing when m is nil.
func (f *form) maskInput(name string, m *Mask) {
	if m == nil {
		return
	}
	if m.Height < 0 || m.Width < 0 || m.Height*m.Width != len(m.Values) {
		f.fail(name, "must have height×width values")
		return
	}
	// A value takes at most 15 bytes ("-1.1754944e-38,").
	b := make([]byte, 0, 4+m.Height*2+len(m.Values)*15)
	b = append(b, "[["...)
	for r := range m.Height {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for c, v := range m.Values[r*m.Width : (r+1)*m.Width] {
			x := float64(v)
			if !finite(x) {
				f.fail(name, "must have finite values")
				return
			}
			if c > 0 {
				b = append(b, ',')
			}
			b = appendNumber(b, x, 32)
		}
		b = append(b, ']')
	}
	f.str(name, string(append(b, "]]"...)))
}
