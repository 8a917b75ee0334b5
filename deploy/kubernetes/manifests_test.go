// Package kubernetes holds the deployment manifests; its test validates them offline:
// every built-in object is decoded strictly into the Kubernetes API types (an unknown or
// misspelled field fails), the Deployment is checked for the properties genservice's
// rotation and security rely on, every genservice flag the manifests use exists, and
// the example policy parses.
package kubernetes

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"genservice/authz"
	"genservice/server"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

type doc struct {
	file string
	raw  []byte
	typeMeta
}

func loadDocs(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("examples/*.yaml")
	files = append(files, more...)
	var docs []doc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			d := doc{file: f, raw: []byte(part)}
			if err := yaml.Unmarshal(d.raw, &d.typeMeta); err != nil {
				t.Fatalf("%s: not YAML: %v", f, err)
			}
			if d.APIVersion == "" || d.Kind == "" {
				t.Fatalf("%s: a document without apiVersion/kind", f)
			}
			docs = append(docs, d)
		}
	}
	if len(docs) < 8 {
		t.Fatalf("found only %d manifests", len(docs))
	}
	return docs
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

func TestManifestsDecodeStrictly(t *testing.T) {
	for _, d := range loadDocs(t) {
		var target any
		switch d.APIVersion + "/" + d.Kind {
		case "apps/v1/Deployment":
			target = &appsv1.Deployment{}
		case "v1/Service":
			target = &corev1.Service{}
		case "v1/ConfigMap":
			target = &corev1.ConfigMap{}
		case "policy/v1/PodDisruptionBudget":
			target = &policyv1.PodDisruptionBudget{}
		case "kustomize.config.k8s.io/v1beta1/Kustomization",
			"cert-manager.io/v1/Issuer", "cert-manager.io/v1/Certificate",
			"security.istio.io/v1/PeerAuthentication", "security.istio.io/v1/AuthorizationPolicy":
			// Custom resources: no schema offline; apiVersion, kind and name suffice.
			if d.Metadata.Name == "" && d.Kind != "Kustomization" {
				t.Errorf("%s: %s without metadata.name", d.file, d.Kind)
			}
			continue
		default:
			t.Errorf("%s: unexpected kind %s %s", d.file, d.APIVersion, d.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict(d.raw, target); err != nil {
			t.Errorf("%s: %s %q does not match the Kubernetes API: %v", d.file, d.Kind, d.Metadata.Name, err)
		}
	}
}

func TestDeploymentIsSafeAndRotatable(t *testing.T) {
	data, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(data, &dep); err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template.Spec
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pod must set runAsNonRoot")
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container must have a read-only root filesystem")
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must disallow privilege escalation")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("container must request CPU and memory and limit memory")
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe must be an HTTP GET on the admin port (kubelet has no client certificate)", name)
		}
	}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("volume %s is mounted with subPath: Kubernetes never updates subPath mounts, so rotation would not reach genservice", m.Name)
		}
	}
	var keyFile string
	for _, e := range c.Env {
		if e.Name == "LIVEPEER_API_KEY" {
			t.Error("the key must come from a mounted file (LIVEPEER_API_KEY_FILE), which rotates; an env var does not")
		}
		if e.Name == "LIVEPEER_API_KEY_FILE" {
			keyFile = e.Value
		}
	}
	if keyFile == "" {
		t.Error("LIVEPEER_API_KEY_FILE not set")
	}
	grace := int64(0)
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if grace < 35 {
		t.Errorf("terminationGracePeriodSeconds %d is shorter than drain delay + shutdown grace (35s)", grace)
	}
}

// TestManifestFlagsExist runs the real binary's help and checks every --flag the
// manifests pass to genservice.
func TestManifestFlagsExist(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "genservice")
	build := exec.Command("go", "build", "-o", bin, "genservice/cmd/genservice")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var help bytes.Buffer
	cmd := exec.Command(bin, "serve", "--help")
	cmd.Stdout, cmd.Stderr = &help, &help
	_ = cmd.Run()
	flagRe := regexp.MustCompile(`(?m)^\s*- --([a-z0-9-]+)`)
	for _, d := range loadDocs(t) {
		for _, m := range flagRe.FindAllStringSubmatch(string(d.raw), -1) {
			if !strings.Contains(help.String(), "--"+m[1]+" ") {
				t.Errorf("%s: genservice has no flag --%s", d.file, m[1])
			}
		}
	}
}

func TestExamplePolicyParses(t *testing.T) {
	data, err := os.ReadFile("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	if _, err := authz.Parse([]byte(cm.Data["policy.yaml"]), server.MethodNames()); err != nil {
		t.Fatalf("example policy: %v", err)
	}
}
