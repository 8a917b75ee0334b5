package pipeline

import "testing"

func TestTable(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All() {
		if p.Name == "" || seen[p.Name] {
			t.Errorf("row %+v: empty or repeated name", p)
		}
		seen[p.Name] = true
		if p.DefaultModel == "" || p.Timeout <= 0 {
			t.Errorf("row %s: no default model or timeout", p.Name)
		}
		if got, ok := Get(p.Name); !ok || got != p {
			t.Errorf("Get(%q) = %+v, %v", p.Name, got, ok)
		}
	}
	if len(StudioNames())+len(NotOnStudio()) != len(Names()) {
		t.Error("Studio and non-Studio pipelines do not add up")
	}
	if _, ok := Get("live-video-to-video"); ok {
		t.Error("live video is a media protocol, not a pipeline genservice serves")
	}
}
