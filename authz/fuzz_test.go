package authz

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// refRules decodes a policy the simple way, for a reference decision.
func refRules(data []byte) ([]Rule, bool) {
	var f struct {
		Rules []Rule `yaml:"rules"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, false
	}
	return f.Rules, true
}

// refAllows is an independent implementation of the documented semantics: the
// principal is governed by the rule holding it exactly, else by the rule holding the
// longest "prefix/*" pattern it starts with; that rule alone decides.
func refAllows(rules []Rule, principal, method string) bool {
	var gov *Rule
	best := -1
	for i := range rules {
		r := &rules[i]
		for _, pat := range r.Principals {
			if pat == principal {
				gov, best = r, len(pat)+1<<30
				continue
			}
			if prefix, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(principal, prefix) && len(prefix) > best {
				gov, best = r, len(prefix)
			}
		}
	}
	if gov == nil {
		return false
	}
	for _, m := range gov.Methods {
		if m == "*" || m == method {
			return true
		}
	}
	return false
}

func FuzzParsePolicy(f *testing.F) {
	seeds := []struct{ policy, principal, method string }{
		{fullPolicy, "spiffe://example.org/ns/batch/sa/nightly", "Llm"},
		{fullPolicy, "spiffe://example.org/ns/web/sa/frontend", "TextToImage"},
		{fullPolicy, "spiffe://example.org/ns/batch/sa/restricted/x", "Llm"},
		{"rules: []\n", "a", "Llm"},
		{"rules:\n  - principals: [a, b]\n    methods: [Llm, Upscale]\n", "b", "Upscale"},
		{"rules:\n  - principals: [a, b]\n    methods: [Llm, Upscale]\n", "ab", "Llm"},
		{"rules:\n  - principals: [\"a/*\"]\n    methods: [Llm]\n  - principals: [\"a/b/*\"]\n    methods: [Upscale]\n", "a/b/c", "Llm"},
		{"rules:\n  - principals: [\"/*\"]\n    methods: [\"*\"]\n", "/x", "Llm"},
		{"rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: 1e308\n    burst: 9223372036854775807\n", "a", "Llm"},
		{"rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: 1e-300\n", "a", "Llm"},
		{"rules:\n  - principals: [a]\n    methods: [Llm]\n    max_inflight: 1\n", "a", "Llm"},
		{"rules:\n  - &r {principals: [a], methods: [Llm]}\n  - *r\n", "a", "Llm"},
		{"rules:\n  - principals: [a]\n    methods: [Llm]\n    <<: {rate: 1}\n", "a", "Llm"},
		{"rules: [{principals: [\"\\u00e9/*\"], methods: [Llm]}]", "\u00e9/x", "Llm"},
		{"rules:\n  - principals: [a]\n    methods: [Llm]\n---\nrules: []\n", "a", "Llm"},
		{"rules:\n  - principals: [!!binary YQ==]\n    methods: [Llm]\n", "a", "Llm"},
		{"{rules: [{principals: [a], methods: ['*']}]}", "a", "Anything"},
		{"rules: ~\n", "a", "Llm"},
		{"\xff\xfe", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.policy, s.principal, s.method)
	}
	f.Fuzz(func(t *testing.T, policy, principal, method string) {
		p, err := Parse([]byte(policy), testMethods)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		limits, ok := p.Allows(principal, method)
		if !ok {
			if limits != (Limits{}) {
				t.Fatalf("denied with limits %+v", limits)
			}
		} else {
			if limits.Rate < 0 || limits.Burst < 0 || limits.MaxInFlight < 0 || (limits.Rate > 0 && limits.Burst < 1) {
				t.Fatalf("invalid limits %+v", limits)
			}
			if method != "*" && !isKnown(method) && !anyAllMethods(policy) {
				t.Fatalf("unknown method %q allowed without a \"*\" rule", method)
			}
		}
		rules, decoded := refRules([]byte(policy))
		if !decoded {
			return // e.g. a second document the reference decoder reads differently
		}
		// The safety property: with no wildcard principals, nothing is allowed to a
		// principal or for a method that no rule names.
		wild := false
		for _, r := range rules {
			for _, pat := range r.Principals {
				if strings.HasSuffix(pat, "*") {
					wild = true
				}
			}
		}
		if ok && !wild {
			listed := false
			for _, r := range rules {
				for _, pat := range r.Principals {
					if pat == principal {
						for _, m := range r.Methods {
							if m == method || m == "*" {
								listed = true
							}
						}
					}
				}
			}
			if !listed {
				t.Fatalf("Allows(%q, %q) = true but no rule lists it\npolicy:\n%s", principal, method, policy)
			}
		}
		// Full differential check against the reference semantics.
		if want := refAllows(rules, principal, method); ok != want {
			t.Fatalf("Allows(%q, %q) = %v, reference says %v\npolicy:\n%s", principal, method, ok, want, policy)
		}
		// Every listed principal/method pair is decided as the reference says, too.
		for _, r := range rules {
			for _, pat := range r.Principals {
				for _, m := range append([]string{method}, r.Methods...) {
					if _, got := p.Allows(pat, m); got != refAllows(rules, pat, m) {
						t.Fatalf("Allows(%q, %q) = %v, reference disagrees\npolicy:\n%s", pat, m, got, policy)
					}
				}
			}
		}
	})
}

func isKnown(m string) bool {
	for _, k := range testMethods {
		if k == m {
			return true
		}
	}
	return false
}

// anyAllMethods is a cheap over-approximation: the policy text contains a "*" method.
func anyAllMethods(policy string) bool { return strings.Contains(policy, "*") }
