package check

// Tests of the kustomize base and overlay under deploy/k8s. Each manifest is decoded strictly into
// the Kubernetes API's own Go types, the base and the overlay are built in-process as
// `kubectl kustomize` builds them, and checkManifests (k8s_check_test.go) checks the result
// against the program.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/wabulk/wabulk/internal/config"
)

const (
	k8sDir        = "deploy/k8s"
	baseDir       = k8sDir + "/base"
	overlaysDir   = k8sDir + "/overlays"
	overlayDir    = overlaysDir + "/example"
	componentsDir = k8sDir + "/components"
	// hpaFallback is the documented alternative to the KEDA ScaledObject, kept out of the base's
	// resources so the two never scale the workers together.
	hpaFallback = baseDir + "/worker-hpa-cpu.yaml"
	kedaFile    = baseDir + "/worker-keda.yaml"
	// baseKustomization lists kedaFile; swapping that line for hpaFallback is the documented way
	// to run without KEDA.
	baseKustomization = baseDir + "/kustomization.yaml"
	kedaResource      = "- worker-keda.yaml"
	hpaResource       = "- worker-hpa-cpu.yaml"
)

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) the base uses, because
// KEDA's own API package imports controller-runtime, client-go and its metrics webhook: some 550
// more packages and a build several times slower, for one struct.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Fallback        *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback"`
		Triggers []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is KEDA's TriggerAuthentication (keda.sh/v1alpha1), the part the
// components use.
type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// The Prometheus Operator's PodMonitor, ServiceMonitor and PrometheusRule
// (monitoring.coreos.com/v1), the fields components/monitoring uses: the operator's API package
// requires controller-runtime and apiextensions-apiserver, the weight KEDA's would bring.
type relabeling struct {
	SourceLabels []string `json:"sourceLabels,omitempty"`
	TargetLabel  string   `json:"targetLabel,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
	Regex        string   `json:"regex,omitempty"`
}

type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port        string       `json:"port"`
			Path        string       `json:"path"`
			Interval    string       `json:"interval"`
			Relabelings []relabeling `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			Authorization *struct {
				Type        string                    `json:"type"`
				Credentials *corev1.SecretKeySelector `json:"credentials"`
			} `json:"authorization"`
			Relabelings []relabeling `json:"relabelings"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// ruleGroups is the groups of a Prometheus rules file, as both deploy/monitoring/alerts.yaml and
// a PrometheusRule's spec hold them.
type ruleGroups struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

// object is what every decoded manifest has: a name, a namespace, an apiVersion and kind.
type object interface {
	GetName() string
	GetNamespace() string
	GroupVersionKind() schema.GroupVersionKind
}

// manifests is a set of Kubernetes objects as one `kubectl apply` would see them.
type manifests struct {
	all           []object
	namespaces    []*corev1.Namespace
	configMaps    []*corev1.ConfigMap
	secrets       []*corev1.Secret
	deployments   []*appsv1.Deployment
	services      []*corev1.Service
	pdbs          []*policyv1.PodDisruptionBudget
	scaledObjects []*scaledObject
	hpas          []*autoscalingv2.HorizontalPodAutoscaler
	triggerAuths  []*triggerAuthentication
	podMonitors   []*podMonitor
	svcMonitors   []*serviceMonitor
	rules         []*prometheusRule
}

// appendNew appends a new zero object to list and returns it.
func appendNew[T any, P interface {
	*T
	object
}](list *[]P) object {
	o := P(new(T))
	*list = append(*list, o)
	return o
}

// newObject returns a new object of the Go type for apiVersion and kind, appended to its list,
// or nil for a pair no check knows.
func (m *manifests) newObject(apiVersion, kind string) object {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return appendNew(&m.namespaces)
	case "v1 ConfigMap":
		return appendNew(&m.configMaps)
	case "v1 Secret":
		return appendNew(&m.secrets)
	case "apps/v1 Deployment":
		return appendNew(&m.deployments)
	case "v1 Service":
		return appendNew(&m.services)
	case "policy/v1 PodDisruptionBudget":
		return appendNew(&m.pdbs)
	case "keda.sh/v1alpha1 ScaledObject":
		return appendNew(&m.scaledObjects)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return appendNew(&m.hpas)
	case "keda.sh/v1alpha1 TriggerAuthentication":
		return appendNew(&m.triggerAuths)
	case "monitoring.coreos.com/v1 PodMonitor":
		return appendNew(&m.podMonitors)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return appendNew(&m.svcMonitors)
	case "monitoring.coreos.com/v1 PrometheusRule":
		return appendNew(&m.rules)
	}
	return nil
}

// add decodes every document of one file strictly, by apiVersion and kind. An unknown pair is an
// error too, so a new kind of manifest comes with its type and its checks.
func (m *manifests) add(name string, data []byte) error {
	docs, err := splitDocs(data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for i, doc := range docs {
		// Enough of the object to pick its Go type and to name it in errors.
		var head struct {
			metav1.TypeMeta
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := sigsyaml.Unmarshal(doc, &head); err != nil {
			return fmt.Errorf("%s doc %d: %w", name, i+1, err)
		}
		what := fmt.Sprintf("%s doc %d (%s %s)", name, i+1, head.Kind, head.Metadata.Name)
		o := m.newObject(head.APIVersion, head.Kind)
		if o == nil {
			return fmt.Errorf("%s: apiVersion %s kind %s has no Go type in k8s_test.go", what, head.APIVersion, head.Kind)
		}
		if err := decodeStrict(doc, o); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		m.all = append(m.all, o)
	}
	return nil
}

// byName returns the object of objs named name, or nil.
func byName[P interface{ GetName() string }](objs []P, name string) P {
	for _, o := range objs {
		if o.GetName() == name {
			return o
		}
	}
	var none P
	return none
}

// decodeStrict decodes one YAML document into out the way the API server reads a manifest: YAML
// to JSON, then field names matched case-sensitively, an unknown or duplicate field an error.
// sigs.k8s.io/yaml's own UnmarshalStrict decodes with encoding/json, which matches field names
// case-insensitively and so would take "ReadinessProbe" for readinessProbe.
func decodeStrict(doc []byte, out any) error {
	j, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, out)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// splitDocs returns the non-empty documents of a multi-document YAML stream, as kubectl splits
// them.
func splitDocs(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := sigsyaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := string(bytes.TrimSpace(j)); s != "null" && s != "" {
			docs = append(docs, doc)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Kustomize.

// readKustomization decodes dir/kustomization.yaml strictly into kustomize's own type.
func readKustomization(read readFunc, dir string) (*kusttypes.Kustomization, error) {
	b, err := read(dir + "/kustomization.yaml")
	if err != nil {
		return nil, err
	}
	k := new(kusttypes.Kustomization)
	if err := decodeStrict(b, k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	return k, nil
}

// repoFiles lists the slash paths, relative to the repository root, of the files under dir.
func repoFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(repoRoot, p)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	return files, err
}

// kustomize builds the kustomization in dir as `kubectl kustomize` does, in-process, from the
// files under deploy/k8s as read returns them, and decodes the result strictly. Building with
// kustomize's own library checks what `kubectl apply -k` would apply (the overlay's patches
// merged, its namespace set) on machines without kubectl, and lets a test edit kustomization.yaml
// as its comments document (the HPA fallback in place of KEDA).
func kustomize(read readFunc, dir string) (*manifests, error) {
	files, err := repoFiles(k8sDir)
	if err != nil {
		return nil, err
	}
	fsys := filesys.MakeFsInMemory()
	for _, f := range files {
		b, err := read(f)
		if err != nil {
			return nil, err
		}
		if err := fsys.WriteFile("/"+f, b); err != nil {
			return nil, err
		}
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, "/"+dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		return nil, err
	}
	m := new(manifests)
	return m, m.add("kustomize build "+dir, out)
}

// ---------------------------------------------------------------------------------------------
// Tests.

func TestK8sBase(t *testing.T) {
	m, err := kustomize(readRepo, baseDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkManifests(m, newCLI(t)); err != nil {
		t.Fatalf("base:\n%v", err)
	}
	// What the base must hold, beyond consistency: a worker and serve, a PDB, autoscaling.
	if len(m.pdbs) == 0 || len(m.scaledObjects) == 0 || len(m.services) == 0 {
		t.Errorf("base lacks a PodDisruptionBudget, a ScaledObject or a Service")
	}
	for _, want := range []string{"worker", "serve"} {
		if !slices.ContainsFunc(m.deployments, func(d *appsv1.Deployment) bool {
			return slices.ContainsFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool {
				return len(c.Args) > 0 && c.Args[0] == want
			})
		}) {
			t.Errorf("no Deployment runs wabulk %s", want)
		}
	}
	// The ConfigMap is generated with a hash suffix, so a change of setting rolls the pods.
	if len(m.configMaps) != 1 || !strings.HasPrefix(m.configMaps[0].Name, "wabulk-config-") {
		t.Errorf("want one generated ConfigMap wabulk-config-<hash>, got %d", len(m.configMaps))
	}
}

func TestK8sBaseWithHPAFallback(t *testing.T) {
	m, err := kustomize(mutate(t, baseKustomization, kedaResource, hpaResource), baseDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.hpas) != 1 || len(m.scaledObjects) != 0 {
		t.Fatalf("after the swap: %d HPAs, %d ScaledObjects", len(m.hpas), len(m.scaledObjects))
	}
	if err := checkManifests(m, newCLI(t)); err != nil {
		t.Fatalf("base with %s:\n%v", hpaFallback, err)
	}
}

// kustomizationDirs lists the directories under deploy/k8s that hold a kustomization.yaml.
func kustomizationDirs(t *testing.T) []string {
	t.Helper()
	files, err := repoFiles(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, f := range files {
		if path.Base(f) == "kustomization.yaml" {
			dirs = append(dirs, path.Dir(f))
		}
	}
	return dirs
}

// TestK8sEveryFileIsUsed decodes every YAML file under deploy/k8s strictly and checks each is a
// kustomization, is referenced by one, or is the documented HPA fallback; and that every
// kustomization is the base, an overlay, or a component under components/ (which
// TestK8sOverlayWithEachComponent builds).
func TestK8sEveryFileIsUsed(t *testing.T) {
	files, err := repoFiles(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{hpaFallback: true}
	for _, dir := range kustomizationDirs(t) {
		k, err := readKustomization(readRepo, dir)
		if err != nil {
			t.Error(err)
			continue
		}
		switch {
		case dir == baseDir, path.Dir(dir) == overlaysDir:
			if k.Kind != kusttypes.KustomizationKind {
				t.Errorf("%s: kind %q, want %s", dir, k.Kind, kusttypes.KustomizationKind)
			}
		case path.Dir(dir) == componentsDir:
			if k.Kind != kusttypes.ComponentKind {
				t.Errorf("%s: kind %q, want %s", dir, k.Kind, kusttypes.ComponentKind)
			}
		default:
			t.Errorf("%s: a kustomization outside base, overlays/* and components/*", dir)
		}
		for _, r := range kustomizationFiles(k) {
			used[path.Clean(dir+"/"+r)] = true
		}
	}
	for _, f := range files {
		switch {
		case !strings.HasSuffix(f, ".yaml") && !strings.HasSuffix(f, ".yml"):
			t.Errorf("%s: only YAML belongs under %s", f, k8sDir)
		case path.Base(f) == "kustomization.yaml":
		case !used[f]:
			t.Errorf("%s: no kustomization lists it", f)
		default:
			if b, err := readRepo(f); err != nil {
				t.Error(err)
			} else if err := new(manifests).add(f, b); err != nil {
				t.Error(err)
			}
		}
	}
}

// kustomizationFiles is what k lists, relative to its directory: resources (files or
// directories), components and patch files.
func kustomizationFiles(k *kusttypes.Kustomization) []string {
	files := slices.Clone(k.Resources)
	files = append(files, k.Components...)
	for _, p := range k.Patches {
		if p.Path != "" {
			files = append(files, p.Path)
		}
	}
	return files
}

// overlays lists the overlays under deploy/k8s/overlays: every one is built and checked.
func overlays(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, dir := range kustomizationDirs(t) {
		if path.Dir(dir) == overlaysDir {
			out = append(out, dir)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no overlay under %s", overlaysDir)
	}
	return out
}

// TestK8sOverlays checks each overlay's own files, then the overlay as kustomize renders it.
func TestK8sOverlays(t *testing.T) {
	for _, dir := range overlays(t) {
		t.Run(path.Base(dir), func(t *testing.T) { checkOverlay(t, readRepo, dir) })
	}
}

// checkOverlay checks the overlay in dir as read gives it and returns it rendered.
func checkOverlay(t *testing.T, read readFunc, dir string) *manifests {
	t.Helper()
	k, err := readKustomization(read, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(k.Resources, "../../base") {
		t.Errorf("the overlay does not build on ../../base: %v", k.Resources)
	}
	for _, r := range kustomizationFiles(k) {
		if !strings.HasPrefix(r, "..") {
			checkOverlayFile(t, read, dir+"/"+r)
		}
	}
	for _, g := range k.ConfigMapGenerator {
		for _, kv := range g.LiteralSources {
			if key, _, _ := strings.Cut(kv, "="); !knownVar(key) {
				t.Errorf("%s: configMapGenerator %s: %s is not a variable wabulk reads", dir, g.Name, key)
			}
		}
	}
	m, err := kustomize(read, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkManifests(m, newCLI(t)); err != nil {
		t.Fatalf("rendered %s:\n%v", dir, err)
	}
	for _, o := range m.all {
		if o.GroupVersionKind().Kind != "Namespace" && o.GetNamespace() != k.Namespace {
			t.Errorf("rendered %s %s is in namespace %q, want %q", o.GroupVersionKind().Kind, o.GetName(), o.GetNamespace(), k.Namespace)
		}
	}
	if byName(m.secrets, "wabulk-kaleyra") == nil || byName(m.secrets, "wabulk-api-tokens") == nil {
		t.Errorf("the rendered overlay lacks the placeholder Secrets the base mounts")
	}
	return m
}

// TestK8sOverlayNamespaceAndQueueFollow renders the example overlay with another namespace and
// another WABULK_QUEUE: every object moves, and the KEDA query selects the new namespace's and
// queue's backlog (checkManifests checks the query against both).
func TestK8sOverlayNamespaceAndQueueFollow(t *testing.T) {
	file := overlayDir + "/kustomization.yaml"
	read := mutate(t, file, "namespace: wabulk\n", "namespace: marketing\n")
	b, _ := read(file)
	changed := strings.Replace(string(b), "      - WABULK_RATE=80\n", "      - WABULK_RATE=80\n      - WABULK_QUEUE=promo\n", 1)
	read2 := func(name string) ([]byte, error) {
		if name == file {
			return []byte(changed), nil
		}
		return read(name)
	}
	m := checkOverlay(t, read2, overlayDir)
	q := m.scaledObjects[0].Spec.Triggers[0].Metadata["query"]
	if !strings.Contains(q, `namespace="marketing"`) || !strings.Contains(q, `queue="promo"`) {
		t.Fatalf("query %q does not follow the namespace and the queue", q)
	}
}

// The optional components an overlay may add, each built onto the example overlay.
var optionalComponents = []string{"scale-to-zero", "keda-prometheus-auth"}

func TestK8sOverlayWithEachComponent(t *testing.T) {
	file := overlayDir + "/kustomization.yaml"
	for _, c := range optionalComponents {
		t.Run(c, func(t *testing.T) {
			m := checkOverlay(t, mutate(t, file, "  # - ../../components/"+c+"\n", "  - ../../components/"+c+"\n"), overlayDir)
			so := m.scaledObjects[0]
			switch c {
			case "scale-to-zero":
				if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 0 {
					t.Errorf("minReplicaCount %v, want 0", so.Spec.MinReplicaCount)
				}
			case "keda-prometheus-auth":
				if so.Spec.Triggers[0].AuthenticationRef == nil || len(m.triggerAuths) != 1 {
					t.Errorf("no authenticationRef to a TriggerAuthentication")
				}
			}
		})
	}
	// Every component is one of them or listed by an overlay.
	for _, dir := range kustomizationDirs(t) {
		if path.Dir(dir) == componentsDir && !slices.Contains(optionalComponents, path.Base(dir)) && path.Base(dir) != "monitoring" {
			t.Errorf("%s: a component no test builds", dir)
		}
	}
}

// checkOverlayFile checks one of the overlay's own files. Patches are fragments: it checks the
// variable names they set, not completeness; the rendered overlay is checked as a whole.
func checkOverlayFile(t *testing.T, read readFunc, name string) {
	t.Helper()
	b, err := read(name)
	if err != nil {
		t.Error(err)
		return
	}
	m := new(manifests)
	if err := m.add(name, b); err != nil {
		t.Error(err)
		return
	}
	for _, cm := range m.configMaps {
		for key := range cm.Data {
			if !knownVar(key) {
				t.Errorf("%s: ConfigMap key %s is not a variable wabulk reads", name, key)
			}
		}
	}
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if !knownVar(e.Name) {
					t.Errorf("%s: env %s is not a variable wabulk reads", name, e.Name)
				}
			}
		}
	}
	// The example Secrets hold placeholders, never a real credential.
	for _, s := range m.secrets {
		if len(s.Data) > 0 {
			t.Errorf("%s: Secret %s has data; the example holds stringData placeholders only", name, s.Name)
		}
		for key, v := range s.StringData {
			if !strings.Contains(v, "REPLACE") {
				t.Errorf("%s: Secret %s key %s is not a REPLACE… placeholder", name, s.Name, key)
			}
		}
	}
}

// TestK8sCheckerCatchesMistakes feeds the checker manifests with one deliberate mistake each.
func TestK8sCheckerCatchesMistakes(t *testing.T) {
	const (
		kust    = baseKustomization
		worker  = baseDir + "/worker-deployment.yaml"
		serve   = baseDir + "/serve-deployment.yaml"
		svc     = baseDir + "/serve-service.yaml"
		pdb     = baseDir + "/worker-pdb.yaml"
		podMon  = componentsDir + "/monitoring/podmonitor.yaml"
		svcMon  = componentsDir + "/monitoring/servicemonitor.yaml"
		promRul = componentsDir + "/monitoring/prometheusrule.yaml"
		secrets = overlayDir + "/secrets.example.yaml"
	)
	for _, tc := range []struct {
		name, file, old, new string
		want                 string // the error must mention this
		overlay              bool   // build the example overlay (with components/monitoring), not the base
	}{
		{"misspelt variable in the ConfigMap", kust, "- WABULK_RATE=", "- WABULK_RATES=", "WABULK_RATES", false},
		{"misspelt variable in a container's env", worker, "name: KALEYRA_API_KEY_FILE", "name: KALEYRA_APIKEY_FILE", "KALEYRA_APIKEY_FILE", false},
		{"required variable missing", kust, "      - KALEYRA_FROM=SET-IN-OVERLAY\n", "", config.EnvFrom, false},
		{"bad value for a variable", kust, "- WABULK_RATE=80", "- WABULK_RATE=fast", config.EnvRate, false},
		{"misspelt field", worker, "readinessProbe:", "readinesProbe:", "readinesProbe", false},
		{"field in the wrong case", worker, "readinessProbe:", "ReadinessProbe:", "ReadinessProbe", false},
		{"unknown apiVersion for the kind", pdb, "apiVersion: policy/v1", "apiVersion: policy/v1beta1", "policy/v1beta1", false},
		{"unknown subcommand", worker, `args: ["worker"]`, `args: ["wroker"]`, "wroker", false},
		{"probe on a path nobody serves", worker, "path: /readyz", "path: /ready", "/ready", false},
		{"metrics port moved but not the container port", kust, "- WABULK_METRICS_ADDR=:9090", "- WABULK_METRICS_ADDR=:9191", "9191", false},
		{"grace period within the shutdown timeout", worker, "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds", false},
		{"shutdown timeout beyond the grace period", kust, "- WABULK_SHUTDOWN_TIMEOUT=30s", "- WABULK_SHUTDOWN_TIMEOUT=2m", "terminationGracePeriodSeconds", false},
		{"key file outside the Secret mount", worker, "value: /etc/wabulk/kaleyra/api-key", "value: /etc/kaleyra/api-key", "no volume is mounted at /etc/kaleyra", false},
		{"tokens file not in the Secret", serve, "@/etc/wabulk/api-tokens/tokens", "@/etc/wabulk/api-tokens/token", "no item with path token", false},
		{"Service targets a port the pod lacks", svc, "targetPort: http", "targetPort: web", "targetPort", false},
		{"Service selects no pods", svc, "app.kubernetes.io/component: serve\n  ports:", "app.kubernetes.io/component: web\n  ports:", "matches no Deployment", false},
		{"PDB selects no pods", pdb, "app.kubernetes.io/component: worker", "app.kubernetes.io/component: wrk", "matches no Deployment", false},
		{"replicas beside the autoscaler", worker, "spec:\n  revisionHistoryLimit: 5", "spec:\n  replicas: 2\n  revisionHistoryLimit: 5", "replicas", false},
		{"KEDA scales on another metric", kedaFile, "max(wabulk_runnable_tasks{", "max(wabulk_queue_tasks{", "wabulk_runnable_tasks", false},
		{"KEDA sums what one process exports", kedaFile, "query: max(", "query: sum(", "max(", false},
		{"KEDA watches another queue", kedaFile, `queue="whatsapp"`, `queue="whatsap"`, "WABULK_QUEUE", false},
		{"KEDA watches another namespace", overlayDir + "/kustomization.yaml", "      fieldPath: metadata.namespace", "      fieldPath: metadata.name", `selects namespace "wabulk-worker"`, true},
		{"KEDA threshold not a number", kedaFile, `threshold: "500"`, `threshold: "many"`, "threshold", false},
		{"KEDA has no prometheus trigger", kedaFile, "type: prometheus", "type: redis", "no prometheus trigger", false},
		{"root filesystem writable", worker, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem", false},
		{"capabilities kept", worker, `drop: ["ALL"]`, `drop: ["NET_RAW"]`, "drop ALL", false},
		{"no memory limit", worker, "              memory: 256Mi\n", "", "memory", false},
		{"request above the limit", worker, "cpu: 100m", "cpu: \"2\"", "exceeds its limit", false},
		{"KEDA and the HPA together", baseKustomization, kedaResource, kedaResource + "\n  " + hpaResource, "fight over replicas", false},
		{"PodMonitor on a port the worker lacks", podMon, "- port: metrics", "- port: metric", "port", true},
		{"PodMonitor selects no pods", podMon, "app.kubernetes.io/component: worker", "app.kubernetes.io/component: wrk", "selects no", true},
		{"PodMonitor under another job name", podMon, "replacement: wabulk-worker", "replacement: worker", "job", true},
		{"ServiceMonitor without the token", svcMon, "      authorization:\n        type: Bearer\n        credentials:\n          name: wabulk-api-tokens\n          key: metrics\n", "", "bearer", true},
		{"ServiceMonitor's token not accepted by serve", secrets, "  metrics: REPLACE-WITH-THE-METRICS-TOKEN", "  metrics: REPLACE-WITH-ANOTHER-TOKEN", "not a line", true},
		{"PrometheusRule differs from alerts.yaml", promRul, "> 0.05", "> 0.5", "alerts.yaml", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := baseDir
			if tc.overlay {
				dir = overlayDir
			}
			m, err := kustomize(mutate(t, tc.file, tc.old, tc.new), dir)
			if err == nil {
				err = checkManifests(m, newCLI(t))
			}
			wantError(t, err, tc.want)
		})
	}
}
