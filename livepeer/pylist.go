package livepeer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The segment-anything-2 runner answers with its arrays turned into text by Python's
// str() of a list (UPSTREAM §3.6): "[[[2.84, -1.5], ...]]". That is JSON for ordinary
// numbers, but not for the floats JSON lacks, which Python spells nan, inf and -inf, nor
// for a boolean mask (the runner's masks are booleans when return_logits is false),
// which Python spells True and False. parseNumberList reads all of these, and nothing
// else: anything that is not a rectangular list of numbers of the expected depth is a
// malformed response.

// maxNumberToken bounds one number's text. The longest float Python writes is about 24
// characters ("-2.2250738585072014e-308"); a longer run of digits is not a float repr.
const maxNumberToken = 64

// numberList is a parsed nested list: Shape[k] is the length of the lists at depth k
// (0 when no list reached that depth, as in "[]"), Values the numbers in row-major
// order, len(Values) the product of Shape.
type numberList[T float32 | float64] struct {
	Shape  []int
	Values []T
}

type listParser[T float32 | float64] struct {
	s     string
	i     int
	depth int
	shape []int // -1 until the first list at that depth has closed
	vals  []T
}

// parseNumberList parses s, a list of numbers nested exactly depth levels deep. The work
// is one pass over s: every byte is looked at a bounded number of times, recursion is
// depth levels deep, and Values never holds more numbers than s has bytes. T is the
// precision kept: float32 for masks, which halves the memory a large answer takes.
func parseNumberList[T float32 | float64](s string, depth int) (*numberList[T], error) {
	if depth < 1 {
		return nil, errors.New("depth must be at least 1")
	}
	p := &listParser[T]{s: s, depth: depth, shape: make([]int, depth)}
	for k := range p.shape {
		p.shape[k] = -1
	}
	p.space()
	if p.i == len(s) {
		return nil, errors.New("empty")
	}
	if err := p.list(0); err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(s) {
		return nil, p.errorf("text after the list")
	}
	for k := range p.shape {
		if p.shape[k] < 0 {
			p.shape[k] = 0
		}
	}
	return &numberList[T]{Shape: p.shape, Values: p.vals}, nil
}

func (p *listParser[T]) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: "+format, append([]any{p.i}, args...)...)
}

func (p *listParser[T]) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *listParser[T]) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// list parses the list at p.i, at the given level (0 outermost).
func (p *listParser[T]) list(level int) error {
	if p.peek() != '[' {
		return p.errorf("expected '[' (a list %d deep)", p.depth)
	}
	p.i++
	p.space()
	n := 0
	if p.peek() == ']' {
		p.i++
		return p.closed(level, 0)
	}
	for {
		p.space()
		if level == p.depth-1 {
			v, err := p.number()
			if err != nil {
				return err
			}
			p.vals = append(p.vals, T(v))
		} else if err := p.list(level + 1); err != nil {
			return err
		}
		n++
		p.space()
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return p.closed(level, n)
		case 0:
			return p.errorf("unexpected end: a list is not closed")
		default:
			return p.errorf("expected ',' or ']'")
		}
	}
}

// closed records the length n of a list at level: every list at one level must have
// the same length, or the array is not rectangular.
func (p *listParser[T]) closed(level, n int) error {
	switch want := p.shape[level]; {
	case want < 0:
		p.shape[level] = n
	case want != n:
		return p.errorf("not rectangular: a list at depth %d has %d items, an earlier one %d", level+1, n, want)
	}
	return nil
}

// number reads one number: Python's float repr (decimal or exponent notation, nan,
// inf, -inf), JSON's NaN and Infinity, or True and False (1 and 0).
func (p *listParser[T]) number() (float64, error) {
	start := p.i
	for p.i < len(p.s) && p.i-start <= maxNumberToken && numberByte(p.s[p.i]) {
		p.i++
	}
	tok := p.s[start:p.i]
	switch {
	case tok == "":
		p.i = start
		return 0, p.errorf("expected a number")
	case len(tok) > maxNumberToken:
		p.i = start
		return 0, p.errorf("a number longer than %d characters", maxNumberToken)
	case tok == "True":
		return 1, nil
	case tok == "False":
		return 0, nil
	case strings.ContainsAny(tok, "xX_"):
		// strconv reads hexadecimal floats ("0x1p-2"), which Python's repr never writes.
		p.i = start
		return 0, p.errorf("expected a decimal number")
	}
	v, err := strconv.ParseFloat(tok, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		// Out of range is fine: ParseFloat gives ±Inf or 0, as Python would.
		p.i = start
		return 0, p.errorf("expected a number")
	}
	return v, nil
}

// numberByte reports whether b can be part of a number token; the token is checked as a
// whole afterwards.
func numberByte(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '.' || b == '+' || b == '-'
}

// Segmentation is a segment-anything-2 result with its arrays parsed: Masks[i] scored
// Scores[i], and Logits[i] is its low-resolution logits (256×256 from the runner).
type Segmentation struct {
	Masks  []Mask
	Scores []float64
	Logits []Mask
}

// masks turns a parsed N×H×W list into N masks of H×W that share one backing array.
func masks(l *numberList[float32]) []Mask {
	n, h, w := l.Shape[0], l.Shape[1], l.Shape[2]
	vals := l.Values
	out := make([]Mask, n)
	size := h * w
	for k := range out {
		out[k] = Mask{Height: h, Width: w, Values: vals[k*size : (k+1)*size : (k+1)*size]}
	}
	return out
}

// parse reads the three arrays. Each mask comes with its score; logits, when the
// gateway sends any, come one per mask too.
func (r *MasksResponse) parse() (*Segmentation, error) {
	ml, err := parseNumberList[float32](*r.Masks, 3)
	if err != nil {
		return nil, fmt.Errorf(`"masks" is not an N×H×W list of numbers: %w`, err)
	}
	sl, err := parseNumberList[float64](*r.Scores, 1)
	if err != nil {
		return nil, fmt.Errorf(`"scores" is not a list of numbers: %w`, err)
	}
	ll, err := parseNumberList[float32](*r.Logits, 3)
	if err != nil {
		return nil, fmt.Errorf(`"logits" is not an N×H×W list of numbers: %w`, err)
	}
	n := ml.Shape[0]
	if sl.Shape[0] != n {
		return nil, fmt.Errorf(`%d masks but %d scores`, n, sl.Shape[0])
	}
	if ll.Shape[0] != n && ll.Shape[0] != 0 {
		return nil, fmt.Errorf(`%d masks but %d logits`, n, ll.Shape[0])
	}
	return &Segmentation{Masks: masks(ml), Scores: sl.Values, Logits: masks(ll)}, nil
}
