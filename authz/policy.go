// Package authz decides which callers may call which RPCs, and how often. A policy is
// a YAML file of rules mapping principals to methods, each rule with optional
// per-principal rate and concurrency limits:
//
//	rules:
//	  - principals: ["spiffe://example.org/ns/web/sa/frontend"]
//	    methods: ["TextToImage", "LlmStream"]
//	    rate: 2            # requests per second, per principal
//	    burst: 4           # default: rate rounded up, at least 1
//	    max_in_flight: 2   # concurrent calls, per principal
//	  - principals: ["spiffe://example.org/ns/batch/*"]
//	    methods: ["*"]
//
// A principal matches a pattern exactly, or a pattern ending in "/*" by prefix (the
// prefix includes the slash). Each principal is governed by its most specific pattern
// — an exact match, else the longest prefix — and anything no rule allows is denied.
package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Rule is one entry of the policy file.
type Rule struct {
	Principals  []string `yaml:"principals"`
	Methods     []string `yaml:"methods"`
	Rate        float64  `yaml:"rate"`
	Burst       int      `yaml:"burst"`
	MaxInFlight int      `yaml:"max_in_flight"`
	// line is where the rule starts in the file, for error messages.
	line int
}

// Limits are the per-principal limits of a rule; zero values mean unlimited.
type Limits struct {
	Rate        float64
	Burst       int
	MaxInFlight int
}

type file struct {
	Rules []yaml.Node `yaml:"rules"`
}

// Policy is a parsed, validated policy. It is immutable.
type Policy struct {
	exact    map[string]*compiled
	prefixes []*compiled // longest prefix first
}

type compiled struct {
	pattern string
	all     bool
	methods map[string]bool
	limits  Limits
}

// Parse reads and validates a policy. knownMethods are the RPC names a rule may list;
// an unknown name is an error (a typo would otherwise deny silently). Errors carry the
// line of the offending rule.
func Parse(data []byte, knownMethods []string) (*Policy, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy is empty: it needs a rules: list (an empty list denies everyone)")
		}
		return nil, fmt.Errorf("policy is not valid YAML: %v", err)
	}
	// A second document would be silently ignored; say so instead.
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, fmt.Errorf("line %d: a second YAML document (after \"---\"); a policy file holds one rules: list", next.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("policy is not valid YAML: %v", err)
	}
	if f.Rules == nil {
		return nil, errors.New("policy has no rules list (write rules: [] to deny everyone)")
	}
	known := map[string]bool{}
	for _, m := range knownMethods {
		known[m] = true
	}
	p := &Policy{exact: map[string]*compiled{}}
	seen := map[string]int{}
	for i := range f.Rules {
		node := &f.Rules[i]
		if line, err := unknownKeys(node); err != nil {
			return nil, fmt.Errorf("line %d: rule %d: %v", line, i+1, err)
		}
		var r Rule
		if err := node.Decode(&r); err != nil {
			return nil, fmt.Errorf("line %d: rule %d: %v", node.Line, i+1, yamlTypeError(err))
		}
		r.line = node.Line
		c, err := compile(r, known)
		if err != nil {
			return nil, fmt.Errorf("line %d: rule %d: %v", r.line, i+1, err)
		}
		for _, pat := range r.Principals {
			if prev, dup := seen[pat]; dup {
				return nil, fmt.Errorf("line %d: rule %d: principal %q is already governed by the rule at line %d; a principal pattern may appear in one rule only", r.line, i+1, pat, prev)
			}
			seen[pat] = r.line
			cc := *c
			cc.pattern = pat
			if prefix, ok := strings.CutSuffix(pat, "*"); ok {
				cc.pattern = prefix
				p.prefixes = append(p.prefixes, &cc)
			} else {
				p.exact[pat] = &cc
			}
		}
	}
	sort.SliceStable(p.prefixes, func(i, j int) bool { return len(p.prefixes[i].pattern) > len(p.prefixes[j].pattern) })
	return p, nil
}

// unknownKeys rejects a rule that is not a mapping and misspelled keys (KnownFields
// does not reach nodes decoded one by one), returning the line at fault.
func unknownKeys(n *yaml.Node) (int, error) {
	if n.Kind != yaml.MappingNode {
		return n.Line, errors.New("a rule must be a mapping with principals and methods")
	}
	allowed := []string{"principals", "methods", "rate", "burst", "max_in_flight"}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			return k.Line, fmt.Errorf("unknown key %q (allowed: %s)", k.Value, strings.Join(allowed, ", "))
		}
	}
	return 0, nil
}

// yamlTypeError rewrites yaml's type errors without Go type names.
func yamlTypeError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = strings.ReplaceAll(m, " into authz.Rule", "")
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return err
}

func compile(r Rule, known map[string]bool) (*compiled, error) {
	if len(r.Principals) == 0 {
		return nil, errors.New("principals is required")
	}
	for _, pat := range r.Principals {
		switch {
		case pat == "":
			return nil, errors.New("a principal must not be empty")
		case strings.Count(pat, "*") > 1 || (strings.Contains(pat, "*") && !strings.HasSuffix(pat, "/*")):
			return nil, fmt.Errorf("principal %q: a wildcard is allowed only as a final \"/*\"", pat)
		}
	}
	if len(r.Methods) == 0 {
		return nil, errors.New(`methods is required (use ["*"] for every RPC)`)
	}
	c := &compiled{methods: map[string]bool{}}
	for _, m := range r.Methods {
		switch {
		case m == "*":
			c.all = true
		case known[m]:
			c.methods[m] = true
		default:
			return nil, fmt.Errorf("unknown method %q (known: %s)", m, strings.Join(sortedKeys(known), ", "))
		}
	}
	switch {
	case r.Rate < 0 || math.IsNaN(r.Rate) || math.IsInf(r.Rate, 0):
		return nil, errors.New("rate must be a positive number of requests per second")
	case r.Burst < 0:
		return nil, errors.New("burst must not be negative")
	case r.Burst > 0 && r.Rate == 0:
		return nil, errors.New("burst needs a rate")
	case r.MaxInFlight < 0:
		return nil, errors.New("max_in_flight must not be negative")
	}
	c.limits = Limits{Rate: r.Rate, Burst: r.Burst, MaxInFlight: r.MaxInFlight}
	if c.limits.Rate > 0 && c.limits.Burst == 0 {
		c.limits.Burst = max(1, int(math.Ceil(c.limits.Rate)))
	}
	return c, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// match returns the rule governing principal, or nil.
func (p *Policy) match(principal string) *compiled {
	if c, ok := p.exact[principal]; ok {
		return c
	}
	for _, c := range p.prefixes {
		if strings.HasPrefix(principal, c.pattern) {
			return c
		}
	}
	return nil
}

// Allows reports whether principal may call method, and the limits that apply.
func (p *Policy) Allows(principal, method string) (Limits, bool) {
	c := p.match(principal)
	if c == nil || !(c.all || c.methods[method]) {
		return Limits{}, false
	}
	return c.limits, true
}
