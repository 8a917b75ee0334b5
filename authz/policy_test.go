package authz

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// testMethods stands in for server.MethodNames() (importing server would be a cycle).
var testMethods = []string{
	"TextToImage", "ImageToImage", "ImageToVideo", "Upscale", "AudioToText",
	"SegmentAnything2", "Llm", "ImageToText", "TextToSpeech", "LlmStream",
}

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), testMethods)
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", src, err)
	}
	return p
}

func allows(p *Policy, principal, method string) bool {
	_, ok := p.Allows(principal, method)
	return ok
}

const fullPolicy = `
# The example of the package documentation, plus more specific rules.
rules:
  - principals: ["spiffe://example.org/ns/web/sa/frontend"]
    methods: ["TextToImage", "LlmStream"]
    rate: 2
    burst: 4
    max_in_flight: 2
  - principals: ["spiffe://example.org/ns/batch/*"]
    methods: ["*"]
  - principals: ["spiffe://example.org/ns/batch/sa/nightly"]   # exact beats the prefix above
    methods: ["Upscale"]
    rate: 2.5
  - principals: ["spiffe://example.org/*"]
    methods: ["ImageToText"]
    rate: 0.5
  - principals: ["spiffe://example.org/ns/batch/sa/restricted/*", "billing.internal"]
    methods: [Llm]
    max_in_flight: 1
`

func TestParseValidPolicy(t *testing.T) {
	p := mustParse(t, fullPolicy)
	tests := []struct {
		principal, method string
		ok                bool
		limits            Limits
	}{
		// Exact principal with limits; only the listed methods.
		{"spiffe://example.org/ns/web/sa/frontend", "TextToImage", true, Limits{Rate: 2, Burst: 4, MaxInFlight: 2}},
		{"spiffe://example.org/ns/web/sa/frontend", "LlmStream", true, Limits{Rate: 2, Burst: 4, MaxInFlight: 2}},
		{"spiffe://example.org/ns/web/sa/frontend", "Llm", false, Limits{}},
		// Prefix rule with "*": every method, no limits.
		{"spiffe://example.org/ns/batch/sa/a", "Llm", true, Limits{}},
		{"spiffe://example.org/ns/batch/sa/a", "TextToSpeech", true, Limits{}},
		// Exact beats prefix: nightly may only Upscale, even though batch/* allows "*".
		// burst defaults to ceil(rate).
		{"spiffe://example.org/ns/batch/sa/nightly", "Upscale", true, Limits{Rate: 2.5, Burst: 3}},
		{"spiffe://example.org/ns/batch/sa/nightly", "Llm", false, Limits{}},
		// Longer prefix beats shorter: restricted/* governs, not batch/*.
		{"spiffe://example.org/ns/batch/sa/restricted/x", "Llm", true, Limits{MaxInFlight: 1}},
		{"spiffe://example.org/ns/batch/sa/restricted/x", "TextToImage", false, Limits{}},
		// The shortest prefix governs the rest of the trust domain; burst at least 1.
		{"spiffe://example.org/ns/other/sa/x", "ImageToText", true, Limits{Rate: 0.5, Burst: 1}},
		{"spiffe://example.org/ns/other/sa/x", "TextToImage", false, Limits{}},
		// A plain DNS-name principal.
		{"billing.internal", "Llm", true, Limits{MaxInFlight: 1}},
		// Default deny.
		{"spiffe://other.org/ns/web/sa/frontend", "TextToImage", false, Limits{}},
		{"", "TextToImage", false, Limits{}},
		{"billing.internal.evil", "Llm", false, Limits{}},
		{"spiffe://example.org/ns/web/sa/frontend/extra", "TextToImage", false, Limits{}},
		// A prefix includes its slash: "spiffe://example.org/ns/batch" is not under batch/*.
		{"spiffe://example.org/ns/batchx/sa/a", "Llm", false, Limits{}},
		// Methods are case-sensitive names.
		{"spiffe://example.org/ns/web/sa/frontend", "texttoimage", false, Limits{}},
	}
	for _, tt := range tests {
		l, ok := p.Allows(tt.principal, tt.method)
		if ok != tt.ok || l != tt.limits {
			t.Errorf("Allows(%q, %q) = %+v, %v; want %+v, %v", tt.principal, tt.method, l, ok, tt.limits, tt.ok)
		}
	}
}

func TestParseBurstDefault(t *testing.T) {
	for _, tt := range []struct {
		rate  string
		burst int
	}{
		{"0.1", 1}, {"0.5", 1}, {"1", 1}, {"1.01", 2}, {"2", 2}, {"2.5", 3}, {"10", 10}, {"99.9", 100},
	} {
		p := mustParse(t, "rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: "+tt.rate+"\n")
		l, ok := p.Allows("a", "Llm")
		if !ok || l.Burst != tt.burst {
			t.Errorf("rate %s: burst = %d (allowed %v), want %d", tt.rate, l.Burst, ok, tt.burst)
		}
	}
	// An explicit burst wins, also below the rate.
	p := mustParse(t, "rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: 5\n    burst: 1\n")
	if l, _ := p.Allows("a", "Llm"); l.Burst != 1 || l.Rate != 5 {
		t.Errorf("explicit burst: limits = %+v", l)
	}
	// No rate: no burst, unlimited.
	p = mustParse(t, "rules:\n  - principals: [a]\n    methods: [Llm]\n")
	if l, _ := p.Allows("a", "Llm"); l != (Limits{}) {
		t.Errorf("no limits: limits = %+v", l)
	}
}

func TestParseMostSpecificGoverns(t *testing.T) {
	// The most specific rule governs even when it allows less than a broader one: a
	// principal is never allowed something by a rule that does not govern it.
	p := mustParse(t, `
rules:
  - principals: ["spiffe://td/*"]
    methods: ["*"]
  - principals: ["spiffe://td/ns/a/*"]
    methods: [Llm]
  - principals: ["spiffe://td/ns/a/sa/b/*"]
    methods: [TextToImage]
  - principals: ["spiffe://td/ns/a/sa/b"]
    methods: [Upscale]
`)
	for _, tt := range []struct {
		principal, method string
		ok                bool
	}{
		{"spiffe://td/x", "Upscale", true},
		{"spiffe://td/ns/a/x", "Llm", true},
		{"spiffe://td/ns/a/x", "Upscale", false}, // td/* would allow it; ns/a/* governs
		{"spiffe://td/ns/a/sa/b/c", "TextToImage", true},
		{"spiffe://td/ns/a/sa/b/c", "Llm", false},
		{"spiffe://td/ns/a/sa/b", "Upscale", true}, // exact
		{"spiffe://td/ns/a/sa/b", "TextToImage", false},
		{"spiffe://td/ns/a/sa/b", "Llm", false},
		{"spiffe://td/ns/a/sa/bb", "Llm", true}, // sa/b/* needs the slash
	} {
		if got := allows(p, tt.principal, tt.method); got != tt.ok {
			t.Errorf("Allows(%q, %q) = %v, want %v", tt.principal, tt.method, got, tt.ok)
		}
	}
	// Declaration order does not matter: reverse the rules, same answers.
	q := mustParse(t, `
rules:
  - principals: ["spiffe://td/ns/a/sa/b"]
    methods: [Upscale]
  - principals: ["spiffe://td/ns/a/sa/b/*"]
    methods: [TextToImage]
  - principals: ["spiffe://td/ns/a/*"]
    methods: [Llm]
  - principals: ["spiffe://td/*"]
    methods: ["*"]
`)
	for _, pr := range []string{"spiffe://td/x", "spiffe://td/ns/a/x", "spiffe://td/ns/a/sa/b/c", "spiffe://td/ns/a/sa/b", "spiffe://td/ns/a/sa/bb", "spiffe://other"} {
		for _, m := range testMethods {
			if allows(p, pr, m) != allows(q, pr, m) {
				t.Errorf("rule order changes Allows(%q, %q)", pr, m)
			}
		}
	}
}

func TestParseEmptyRulesDeniesAll(t *testing.T) {
	for _, src := range []string{"rules: []\n", "rules: []  # nobody\n", "# deny everyone\nrules: []\n"} {
		p := mustParse(t, src)
		for _, pr := range []string{"spiffe://example.org/ns/web/sa/frontend", "a", ""} {
			for _, m := range testMethods {
				if allows(p, pr, m) {
					t.Errorf("%q: Allows(%q, %q) = true", src, pr, m)
				}
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// line is the "line N" the error must carry (0: a whole-file error with no line).
		line int
		// reason are substrings the error must contain.
		reason []string
	}{
		{
			name:   "misspelled max_in_flight",
			src:    "rules:\n  - principals: [a]\n    methods: [TextToImage]\n    max_inflight: 2\n",
			line:   4, // the line of the misspelled key
			reason: []string{`unknown key "max_inflight"`, "max_in_flight"},
		},
		{
			name:   "misspelled method",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n  - principals: [b]\n    methods: [Llm, TextToImgae]\n",
			line:   4,
			reason: []string{`unknown method "TextToImgae"`, "TextToImage"},
		},
		{
			name:   "method name in wrong case",
			src:    "rules:\n  - principals: [a]\n    methods: [textToImage]\n",
			line:   2,
			reason: []string{`unknown method "textToImage"`},
		},
		{
			name:   "full method name instead of RPC name",
			src:    "rules:\n  - principals: [a]\n    methods: [/livepeer.generation.v1.GenerationService/Llm]\n",
			line:   2,
			reason: []string{"unknown method"},
		},
		{
			name:   "duplicate principal across rules",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n\n  - principals: [b, a]\n    methods: [Upscale]\n",
			line:   5,
			reason: []string{`principal "a"`, "line 2", "one rule only"},
		},
		{
			name:   "duplicate prefix across rules",
			src:    "rules:\n  - principals: [\"spiffe://td/*\"]\n    methods: [Llm]\n  - principals: [\"spiffe://td/*\"]\n    methods: [Llm]\n",
			line:   4,
			reason: []string{`"spiffe://td/*"`, "one rule only"},
		},
		{
			name:   "wildcard in the middle",
			src:    "rules:\n  - principals: [\"spiffe://td/*/sa/x\"]\n    methods: [Llm]\n",
			line:   2,
			reason: []string{"wildcard", `final "/*"`},
		},
		{
			name:   "wildcard without slash",
			src:    "rules:\n  - principals: [\"spiffe://td/ns*\"]\n    methods: [Llm]\n",
			line:   2,
			reason: []string{"wildcard", `final "/*"`},
		},
		{
			name:   "bare wildcard",
			src:    "rules:\n  - principals: [\"*\"]\n    methods: [Llm]\n",
			line:   2,
			reason: []string{"wildcard"},
		},
		{
			name:   "two wildcards",
			src:    "rules:\n  - principals: [\"spiffe://*/*\"]\n    methods: [Llm]\n",
			line:   2,
			reason: []string{"wildcard"},
		},
		{
			name:   "negative rate",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: -1\n",
			line:   2,
			reason: []string{"rate must be a positive number"},
		},
		{
			name:   "NaN rate",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: .nan\n",
			line:   2,
			reason: []string{"rate"},
		},
		{
			name:   "infinite rate",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: .inf\n",
			line:   2,
			reason: []string{"rate"},
		},
		{
			name:   "rate not a number",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: fast\n",
			line:   2,
			reason: []string{"fast", "float64"},
		},
		{
			name:   "burst without rate",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n    burst: 3\n",
			line:   2,
			reason: []string{"burst needs a rate"},
		},
		{
			name:   "negative burst",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n    rate: 1\n    burst: -1\n",
			line:   2,
			reason: []string{"burst must not be negative"},
		},
		{
			name:   "negative max_in_flight",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm]\n    max_in_flight: -2\n",
			line:   2,
			reason: []string{"max_in_flight must not be negative"},
		},
		{
			name:   "no principals",
			src:    "rules:\n  - methods: [Llm]\n",
			line:   2,
			reason: []string{"principals is required"},
		},
		{
			name:   "empty principal",
			src:    "rules:\n  - principals: [\"\"]\n    methods: [Llm]\n",
			line:   2,
			reason: []string{"principal must not be empty"},
		},
		{
			name:   "no methods",
			src:    "rules:\n  - principals: [a]\n",
			line:   2,
			reason: []string{"methods is required", `["*"]`},
		},
		{
			name:   "principals not a list",
			src:    "rules:\n  - principals: a\n    methods: [Llm]\n",
			line:   2,
			reason: []string{"cannot unmarshal"},
		},
		{
			name:   "rule not a mapping",
			src:    "rules:\n  - just-a-string\n",
			line:   2,
			reason: []string{"rule 1", "must be a mapping"},
		},
		{
			name:   "not YAML",
			src:    "rules:\n  - principals: [a]\n    methods: [Llm\n",
			line:   2, // where the unclosed flow sequence starts, as yaml reports it
			reason: []string{"not valid YAML"},
		},
		{
			name:   "JSON-ish garbage",
			src:    "{{{",
			line:   1,
			reason: []string{"not valid YAML"},
		},
		{
			name:   "no rules key (misspelled)",
			src:    "rule:\n  - principals: [a]\n    methods: [Llm]\n",
			line:   1,
			reason: []string{"rule"},
		},
		{
			name:   "unknown top-level key",
			src:    "rules: []\ndefault: allow\n",
			line:   2,
			reason: []string{"default"},
		},
		{
			name:   "rules key without a list",
			src:    "rules:\n",
			reason: []string{"rules:", "rules: []"},
		},
		{
			name:   "rules is a mapping",
			src:    "rules: {principals: [a]}\n",
			line:   1,
			reason: []string{"!!map"},
		},
		{
			name:   "empty file",
			src:    "",
			reason: []string{"empty", "rules:"},
		},
		{
			name:   "only comments and blanks",
			src:    "# TODO\n\n   \n",
			reason: []string{"empty"},
		},
		{
			name:   "only a document marker",
			src:    "---\n",
			reason: []string{"rules:"},
		},
	}
	lineRE := regexp.MustCompile(`\bline (\d+)\b`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.src), testMethods)
			if err == nil {
				t.Fatalf("Parse succeeded (%v), want an error", p)
			}
			msg := err.Error()
			if p != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			if tt.line > 0 {
				m := lineRE.FindStringSubmatch(msg)
				if m == nil || m[1] != strconv.Itoa(tt.line) {
					t.Errorf("error %q does not start with line %d", msg, tt.line)
				}
			}
			for _, r := range tt.reason {
				if !strings.Contains(msg, r) {
					t.Errorf("error %q does not mention %q", msg, r)
				}
			}
		})
	}
}

// TestParseRejectsSecondDocument: a policy file holds one YAML document. Content after
// a "---" (two policies concatenated, a stray separator before appended rules) must be
// an error, not silently ignored: the operator's rules for b would never apply, which
// is the kind of silent denial the unknown-key and unknown-method checks exist to stop.
func TestParseRejectsSecondDocument(t *testing.T) {
	src := "rules:\n  - principals: [a]\n    methods: [Llm]\n---\nrules:\n  - principals: [b]\n    methods: [Llm]\n"
	p, err := Parse([]byte(src), testMethods)
	if err == nil {
		t.Fatalf("Parse accepted two YAML documents and ignored the second (b allowed: %v); want an error naming line 4", allows(p, "b", "Llm"))
	}
	if !strings.Contains(err.Error(), "line 4") {
		t.Errorf("error %q should point at line 4", err)
	}
}

func TestParseNoKnownMethods(t *testing.T) {
	// Without known methods only "*" is accepted.
	if _, err := Parse([]byte("rules:\n  - principals: [a]\n    methods: [Llm]\n"), nil); err == nil {
		t.Error("Llm accepted with no known methods")
	}
	p, err := Parse([]byte("rules:\n  - principals: [a]\n    methods: ['*']\n"), nil)
	if err != nil || !allows(p, "a", "Anything") {
		t.Errorf("\"*\" with no known methods: %v", err)
	}
}
