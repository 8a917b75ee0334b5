package kubernetes

// A renderer for the subset of kustomize the manifests use (resources, patches by path
// as strategic merge patches, images), so the overlays are checked as they are applied
// without kustomize (its module is not a dependency of genservice). Anything outside
// that subset fails the test rather than rendering differently from kustomize, and
// TestRendererMatchesKustomize compares the output with the real kustomize whenever
// kubectl or kustomize is installed.
//
// The strategic merge follows the Kubernetes API types' patchStrategy and patchMergeKey
// struct tags (found by reflection, as kubectl does): lists with a merge key merge
// element by element, "$patch: delete" removes an element, null removes a map key, and
// every other list or value is replaced.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// object is one rendered manifest, as generic JSON-compatible data.
type object = map[string]any

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches"`
	Images []imageRule `json:"images"`
}

type imageRule struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
	Digest  string `json:"digest"`
}

// apiTypes are the types strategic merge patches may target.
var apiTypes = map[string]reflect.Type{
	"apps/v1/Deployment":                 reflect.TypeFor[appsv1.Deployment](),
	"v1/Service":                         reflect.TypeFor[corev1.Service](),
	"v1/ConfigMap":                       reflect.TypeFor[corev1.ConfigMap](),
	"policy/v1/PodDisruptionBudget":      reflect.TypeFor[policyv1.PodDisruptionBudget](),
	"networking.k8s.io/v1/NetworkPolicy": reflect.TypeFor[networkingv1.NetworkPolicy](),
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// splitYAML returns the documents of a multi-document YAML file, without empty ones.
func splitYAML(data []byte) []string {
	var parts []string
	for _, part := range docSep.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(part)) != "" {
			parts = append(parts, part)
		}
	}
	return parts
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// render builds the kustomization in dir.
func render(dir string) ([]object, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml uses more than this renderer supports (resources, patches with path, images): %v", dir, err)
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			sub, err := render(p)
			if err != nil {
				return nil, err
			}
			objs = append(objs, sub...)
			continue
		}
		file, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		for _, part := range splitYAML(file) {
			var o object
			if err := yaml.Unmarshal([]byte(part), &o); err != nil {
				return nil, fmt.Errorf("%s: %v", p, err)
			}
			objs = append(objs, o)
		}
	}
	for _, pt := range k.Patches {
		p := filepath.Join(dir, pt.Path)
		file, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		parts := splitYAML(file)
		if len(parts) != 1 {
			return nil, fmt.Errorf("%s: a patch file must hold one document", p)
		}
		var patch object
		if err := yaml.Unmarshal([]byte(parts[0]), &patch); err != nil {
			return nil, fmt.Errorf("%s: %v", p, err)
		}
		key := gvk(patch)
		t, ok := apiTypes[key]
		if !ok {
			return nil, fmt.Errorf("%s: no strategic merge for %s", p, key)
		}
		found := false
		for i, o := range objs {
			if gvk(o) == key && name(o) == name(patch) {
				merged, err := smp(o, patch, t)
				if err != nil {
					return nil, fmt.Errorf("%s: %v", p, err)
				}
				objs[i], found = merged.(object), true
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: no %s %q to patch", p, key, name(patch))
		}
	}
	for _, img := range k.Images {
		for _, o := range objs {
			setImage(o, img.Name, img.NewName, img.NewTag, img.Digest)
		}
	}
	return objs, nil
}

func gvk(o object) string {
	return fmt.Sprint(o["apiVersion"]) + "/" + fmt.Sprint(o["kind"])
}

func name(o object) string {
	md, _ := o["metadata"].(object)
	return fmt.Sprint(md["name"])
}

// imageName is an image reference without its tag or digest.
func imageName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

func setImage(o object, match, newName, newTag, digest string) {
	if gvk(o) != "apps/v1/Deployment" {
		return
	}
	spec, _ := dig(o, "spec", "template", "spec").(object)
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := spec[field].([]any)
		for _, c := range list {
			c := c.(object)
			ref := fmt.Sprint(c["image"])
			if imageName(ref) != match {
				continue
			}
			n, tagged := imageName(ref), strings.TrimPrefix(ref, imageName(ref))
			if newName != "" {
				n = newName
			}
			switch {
			case digest != "":
				tagged = "@" + digest
			case newTag != "":
				tagged = ":" + newTag
			}
			c["image"] = n + tagged
		}
	}
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(object)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// smp applies a strategic merge patch to orig, both generic data of API type t.
func smp(orig, patch any, t reflect.Type) (any, error) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	pm, ok := patch.(object)
	if !ok || t == nil || (t.Kind() != reflect.Struct && t.Kind() != reflect.Map) {
		return patch, nil // a scalar, a list replaced whole, or a type without fields
	}
	om, _ := orig.(object)
	out := object{}
	for k, v := range om {
		out[k] = v
	}
	for k, pv := range pm {
		if strings.HasPrefix(k, "$") {
			return nil, fmt.Errorf("directive %s: only \"$patch: delete\" in a merged list is supported", k)
		}
		if pv == nil {
			delete(out, k)
			continue
		}
		var ft reflect.Type
		var tag reflect.StructTag
		if t.Kind() == reflect.Map {
			ft = t.Elem()
		} else {
			f, ok := field(t, k)
			if !ok {
				return nil, fmt.Errorf("%s has no field %q", t, k)
			}
			ft, tag = f.Type, f.Tag
		}
		if pl, ok := pv.([]any); ok && strings.Contains(tag.Get("patchStrategy"), "merge") {
			merged, err := mergeList(out[k], pl, tag.Get("patchMergeKey"), ft.Elem())
			if err != nil {
				return nil, fmt.Errorf("%s: %v", k, err)
			}
			out[k] = merged
			continue
		}
		merged, err := smp(out[k], pv, ft)
		if err != nil {
			return nil, fmt.Errorf("%s.%v", k, err)
		}
		if m, ok := merged.(object); ok && len(m) == 0 && len(pv.(object)) > 0 {
			delete(out, k) // as kustomize does, a map emptied by the patch goes
			continue
		}
		out[k] = merged
	}
	return out, nil
}

// field finds a struct field by its JSON name, looking into inlined structs.
func field(t reflect.Type, jsonName string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		n, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if n == jsonName {
			return f, true
		}
		if n == "" && (f.Anonymous || strings.Contains(opts, "inline")) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if sub, ok := field(ft, jsonName); ok {
					return sub, true
				}
			}
		}
	}
	return reflect.StructField{}, false
}

// mergeList merges patch into orig element by element, matching on key. As in kubectl
// and kustomize, the patch's elements come first, in the patch's order, then the
// original's others. Without a key (a list of scalars) it is a union.
func mergeList(orig any, patch []any, key string, elem reflect.Type) (any, error) {
	ol, _ := orig.([]any)
	if key == "" {
		out := append([]any{}, patch...)
		for _, o := range ol {
			if !containsValue(out, o) {
				out = append(out, o)
			}
		}
		return out, nil
	}
	rest := append([]any{}, ol...)
	var head []any
	for _, p := range patch {
		pm, ok := p.(object)
		if !ok || pm[key] == nil {
			return nil, fmt.Errorf("an element without its merge key %q", key)
		}
		idx := -1
		for i, o := range rest {
			if om, ok := o.(object); ok && reflect.DeepEqual(om[key], pm[key]) {
				idx = i
				break
			}
		}
		if d, ok := pm["$patch"]; ok {
			if d != "delete" || len(pm) != 2 {
				return nil, fmt.Errorf("%s=%v: only a bare \"$patch: delete\" is supported", key, pm[key])
			}
			if idx < 0 {
				// kustomize ignores it; a delete that matches nothing is a typo here.
				return nil, fmt.Errorf("%s=%v: \"$patch: delete\" matches no element", key, pm[key])
			}
			rest = append(rest[:idx], rest[idx+1:]...)
			continue
		}
		var base any
		if idx >= 0 {
			base = rest[idx]
			rest = append(rest[:idx], rest[idx+1:]...)
		}
		merged, err := smp(base, pm, elem)
		if err != nil {
			return nil, err
		}
		head = append(head, merged)
	}
	return append(head, rest...), nil
}

func containsValue(list []any, v any) bool {
	for _, x := range list {
		if reflect.DeepEqual(x, v) {
			return true
		}
	}
	return false
}

// normalize round-trips data through JSON, so rendered objects and kustomize's output
// compare with reflect.DeepEqual.
func normalize(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}
