package main

// Tests of the kustomize base and overlay under deploy/k8s: every manifest is decoded strictly (an
// unknown or misspelt field fails) into the typed structs below, then checked against config.Vars
// and config.Load, the subcommands of newRootCmd, and each other (probes, ports, Services,
// autoscalers, Secrets mounted as files).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/store"
)

// ---------------------------------------------------------------------------------------------
// Strict YAML decoding.

// decodeStrict decodes every YAML document in data into a fresh value from newDoc, rejecting
// fields the target struct does not declare.
func decodeStrict(data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(out)
}

// splitDocs returns each non-empty document of a multi-document YAML stream re-encoded on its own,
// so each can be decoded strictly into the struct its kind calls for.
func splitDocs(data []byte) ([][]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs [][]byte
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(n.Content) == 0 {
			continue
		}
		b, err := yaml.Marshal(&n)
		if err != nil {
			return nil, err
		}
		docs = append(docs, b)
	}
}

// intOrString is Kubernetes' IntOrString: a port number or a port name.
type intOrString string

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a name", n.Line)
	}
	*v = intOrString(n.Value)
	return nil
}

// ---------------------------------------------------------------------------------------------
// Kubernetes types: only the fields the manifests use; strict decoding makes any other an error.

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type namespaceObj struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
}

type configMapObj struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta        `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

type secretObj struct {
	typeMeta   `yaml:",inline"`
	Metadata   objectMeta        `yaml:"metadata"`
	Type       string            `yaml:"type"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional *bool  `yaml:"optional"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		FieldRef        *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type envFromSource struct {
	Prefix       string  `yaml:"prefix"`
	ConfigMapRef *keyRef `yaml:"configMapRef"`
	SecretRef    *keyRef `yaml:"secretRef"`
}

type probe struct {
	HTTPGet *struct {
		Path   string      `yaml:"path"`
		Port   intOrString `yaml:"port"`
		Scheme string      `yaml:"scheme"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
	SuccessThreshold    int `yaml:"successThreshold"`
}

type container struct {
	Name            string          `yaml:"name"`
	Image           string          `yaml:"image"`
	ImagePullPolicy string          `yaml:"imagePullPolicy"`
	Command         []string        `yaml:"command"`
	Args            []string        `yaml:"args"`
	EnvFrom         []envFromSource `yaml:"envFrom"`
	Env             []envVar        `yaml:"env"`
	Ports           []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		Capabilities             *struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		DefaultMode *int   `yaml:"defaultMode"`
		Optional    *bool  `yaml:"optional"`
		Items       []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir *struct {
		Medium    string `yaml:"medium"`
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
	AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
	ServiceAccountName            string `yaml:"serviceAccountName"`
	SecurityContext               *struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	TopologySpreadConstraints []struct {
		MaxSkew           int           `yaml:"maxSkew"`
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	Containers []container `yaml:"containers"`
	Volumes    []volume    `yaml:"volumes"`
}

type deploymentObj struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Replicas             *int          `yaml:"replicas"`
		RevisionHistoryLimit *int          `yaml:"revisionHistoryLimit"`
		Selector             labelSelector `yaml:"selector"`
		Strategy             *struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxUnavailable intOrString `yaml:"maxUnavailable"`
				MaxSurge       intOrString `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type serviceObj struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
			Protocol   string      `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type pdbObj struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		MinAvailable   *intOrString  `yaml:"minAvailable"`
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type scaleTargetRef struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Name       string `yaml:"name"`
}

type scaledObjectObj struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		ScaleTargetRef  scaleTargetRef `yaml:"scaleTargetRef"`
		MinReplicaCount *int           `yaml:"minReplicaCount"`
		MaxReplicaCount *int           `yaml:"maxReplicaCount"`
		PollingInterval *int           `yaml:"pollingInterval"`
		CooldownPeriod  *int           `yaml:"cooldownPeriod"`
		Triggers        []struct {
			Type              string            `yaml:"type"`
			Metadata          map[string]string `yaml:"metadata"`
			AuthenticationRef *struct {
				Name string `yaml:"name"`
				Kind string `yaml:"kind"`
			} `yaml:"authenticationRef"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

type hpaObj struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		ScaleTargetRef scaleTargetRef `yaml:"scaleTargetRef"`
		MinReplicas    int            `yaml:"minReplicas"`
		MaxReplicas    int            `yaml:"maxReplicas"`
		Metrics        []struct {
			Type     string `yaml:"type"`
			Resource *struct {
				Name   string `yaml:"name"`
				Target struct {
					Type               string `yaml:"type"`
					AverageUtilization *int   `yaml:"averageUtilization"`
				} `yaml:"target"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
		Behavior *struct {
			ScaleDown *struct {
				StabilizationWindowSeconds *int `yaml:"stabilizationWindowSeconds"`
			} `yaml:"scaleDown"`
			ScaleUp *struct {
				StabilizationWindowSeconds *int `yaml:"stabilizationWindowSeconds"`
			} `yaml:"scaleUp"`
		} `yaml:"behavior"`
	} `yaml:"spec"`
}

type kustomizationObj struct {
	typeMeta  `yaml:",inline"`
	Namespace string `yaml:"namespace"`
	Labels    []struct {
		Pairs            map[string]string `yaml:"pairs"`
		IncludeSelectors bool              `yaml:"includeSelectors"`
	} `yaml:"labels"`
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
		Digest  string `yaml:"digest"`
	} `yaml:"images"`
	Patches []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
}

// manifests is a set of Kubernetes objects as one `kubectl apply` would see them.
type manifests struct {
	namespaces    []*namespaceObj
	configMaps    []*configMapObj
	secrets       []*secretObj
	deployments   []*deploymentObj
	services      []*serviceObj
	pdbs          []*pdbObj
	scaledObjects []*scaledObjectObj
	hpas          []*hpaObj
}

// add decodes every document of one file strictly, by kind. An unknown kind is an error too, so a
// new kind of manifest comes with its struct and its checks.
func (m *manifests) add(name string, data []byte) error {
	docs, err := splitDocs(data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for i, doc := range docs {
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return fmt.Errorf("%s doc %d: %w", name, i+1, err)
		}
		var target any
		switch tm.Kind {
		case "Namespace":
			o := new(namespaceObj)
			m.namespaces, target = append(m.namespaces, o), o
		case "ConfigMap":
			o := new(configMapObj)
			m.configMaps, target = append(m.configMaps, o), o
		case "Secret":
			o := new(secretObj)
			m.secrets, target = append(m.secrets, o), o
		case "Deployment":
			o := new(deploymentObj)
			m.deployments, target = append(m.deployments, o), o
		case "Service":
			o := new(serviceObj)
			m.services, target = append(m.services, o), o
		case "PodDisruptionBudget":
			o := new(pdbObj)
			m.pdbs, target = append(m.pdbs, o), o
		case "ScaledObject":
			o := new(scaledObjectObj)
			m.scaledObjects, target = append(m.scaledObjects, o), o
		case "HorizontalPodAutoscaler":
			o := new(hpaObj)
			m.hpas, target = append(m.hpas, o), o
		default:
			return fmt.Errorf("%s doc %d: kind %q has no struct in deploy_k8s_test.go", name, i+1, tm.Kind)
		}
		if err := decodeStrict(doc, target); err != nil {
			return fmt.Errorf("%s doc %d (%s): %w", name, i+1, tm.Kind, err)
		}
	}
	return nil
}

func (m *manifests) configMap(name string) *configMapObj {
	for _, c := range m.configMaps {
		if c.Metadata.Name == name {
			return c
		}
	}
	return nil
}

func (m *manifests) secret(name string) *secretObj {
	for _, s := range m.secrets {
		if s.Metadata.Name == name {
			return s
		}
	}
	return nil
}

func (m *manifests) deployment(name string) *deploymentObj {
	for _, d := range m.deployments {
		if d.Metadata.Name == name {
			return d
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes checker.

// checkManifests checks a complete set of objects, as applied together.
func checkManifests(m *manifests, root *cobra.Command) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	workerCfg := map[string]config.Config{} // Deployment name → config of its worker container

	for _, cm := range m.configMaps {
		for k := range cm.Data {
			if !knownVar(k) {
				fail("ConfigMap %s: %s is not a variable wabulk reads (config.Vars)", cm.Metadata.Name, k)
			}
		}
	}
	for _, d := range m.deployments {
		dn := "Deployment " + d.Metadata.Name
		tmpl := d.Spec.Template
		if len(d.Spec.Selector.MatchLabels) == 0 || !selects(d.Spec.Selector.MatchLabels, tmpl.Metadata.Labels) {
			fail("%s: spec.selector does not select its own pod template", dn)
		}
		ps := tmpl.Spec
		podNonRoot := ps.SecurityContext != nil && ps.SecurityContext.RunAsNonRoot != nil && *ps.SecurityContext.RunAsNonRoot
		grace := 30 // Kubernetes' default
		if ps.TerminationGracePeriodSeconds != nil {
			grace = *ps.TerminationGracePeriodSeconds
		}
		if len(ps.Containers) == 0 {
			fail("%s: no containers", dn)
		}
		for _, c := range ps.Containers {
			cn := fmt.Sprintf("%s container %s", dn, c.Name)
			if len(c.Command) > 0 && path.Base(c.Command[0]) != "wabulk" {
				fail("%s: command %q does not run wabulk", cn, c.Command)
			}
			args := c.Args
			if len(c.Command) > 1 {
				args = append(slices.Clone(c.Command[1:]), args...)
			}
			sub, err := subcommandOf(root, args)
			if err != nil {
				fail("%s: %v", cn, err)
				continue
			}
			env := map[string]string{}
			for _, ef := range c.EnvFrom {
				switch {
				case ef.Prefix != "":
					fail("%s: envFrom prefix %q would rename the variables", cn, ef.Prefix)
				case ef.ConfigMapRef != nil:
					cm := m.configMap(ef.ConfigMapRef.Name)
					if cm == nil {
						fail("%s: envFrom ConfigMap %s is not among the manifests", cn, ef.ConfigMapRef.Name)
						continue
					}
					for k, v := range cm.Data {
						env[k] = v
					}
				case ef.SecretRef != nil:
					if s := m.secret(ef.SecretRef.Name); s != nil {
						for k := range s.StringData {
							if !knownVar(k) {
								fail("%s: Secret %s key %s is not a variable wabulk reads", cn, s.Metadata.Name, k)
							}
							env[k] = ""
						}
					}
				}
			}
			for _, e := range c.Env {
				if !knownVar(e.Name) {
					fail("%s: env %s is not a variable wabulk reads (config.Vars)", cn, e.Name)
					continue
				}
				env[e.Name] = e.Value
			}
			errs = append(errs, checkRequired(sub, env)...)
			cfg, err := loadConfig(env)
			if err != nil {
				fail("%s: config.Load: %v", cn, err)
				continue
			}
			if sub == "worker" {
				workerCfg[d.Metadata.Name] = cfg
			}
			// Files the program reads must come from a Secret mounted where the variable says.
			if f, ok := env[config.EnvAPIKeyFile]; ok {
				if err := checkSecretFile(m, ps, c, f); err != nil {
					fail("%s: %s: %v", cn, config.EnvAPIKeyFile, err)
				}
			}
			if t, ok := env[config.EnvAPITokens]; ok && strings.HasPrefix(t, "@") {
				if err := checkSecretFile(m, ps, c, strings.TrimPrefix(t, "@")); err != nil {
					fail("%s: %s: %v", cn, config.EnvAPITokens, err)
				}
			}
			if sub == "worker" || sub == "serve" {
				if time.Duration(grace)*time.Second <= cfg.ShutdownTimeout {
					fail("%s: terminationGracePeriodSeconds %d must exceed %s (%v)", dn, grace, config.EnvShutdown, cfg.ShutdownTimeout)
				}
				varName, port, err := servedPort(sub, cfg)
				if err != nil {
					fail("%s: %v", cn, err)
				} else {
					checkProbesAndPorts(fail, cn, c, varName, port)
					if a := tmpl.Metadata.Annotations; a["prometheus.io/scrape"] == "true" {
						if a["prometheus.io/port"] != strconv.Itoa(port) {
							fail("%s: prometheus.io/port %q, but %s listens on %d", dn, a["prometheus.io/port"], varName, port)
						}
						if p := a["prometheus.io/path"]; p != "" && p != metricsPath {
							fail("%s: prometheus.io/path %q, want %s", dn, p, metricsPath)
						}
					}
				}
			}
			sc := c.SecurityContext
			switch {
			case sc == nil:
				fail("%s: no securityContext", cn)
			default:
				if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
					fail("%s: runAsNonRoot is not set", cn)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					fail("%s: readOnlyRootFilesystem is not true", cn)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					fail("%s: allowPrivilegeEscalation is not false", cn)
				}
				if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					fail("%s: capabilities do not drop ALL", cn)
				}
			}
			for _, r := range []string{"cpu", "memory"} {
				if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
					fail("%s: resources.requests and .limits need %s", cn, r)
				}
			}
		}
	}
	for _, s := range m.services {
		sn := "Service " + s.Metadata.Name
		var target *deploymentObj
		for _, d := range m.deployments {
			if len(s.Spec.Selector) > 0 && selects(s.Spec.Selector, d.Spec.Template.Metadata.Labels) {
				target = d
			}
		}
		if target == nil {
			fail("%s: selector %v matches no Deployment's pods", sn, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			if _, ok := resolvePort(target.Spec.Template.Spec.Containers, p.TargetPort); !ok {
				fail("%s: targetPort %q is no container port of Deployment %s", sn, p.TargetPort, target.Metadata.Name)
			}
		}
	}
	for _, p := range m.pdbs {
		if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
			fail("PodDisruptionBudget %s: set minAvailable or maxUnavailable", p.Metadata.Name)
		}
		if !slices.ContainsFunc(m.deployments, func(d *deploymentObj) bool {
			return len(p.Spec.Selector.MatchLabels) > 0 && selects(p.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
		}) {
			fail("PodDisruptionBudget %s: selector matches no Deployment's pods", p.Metadata.Name)
		}
	}
	scaled := map[string]string{} // Deployment name → what scales it
	claim := func(what string, ref scaleTargetRef) {
		if ref.Kind != "Deployment" || m.deployment(ref.Name) == nil {
			fail("%s: scaleTargetRef %s/%s is not among the manifests", what, ref.Kind, ref.Name)
			return
		}
		if prev, ok := scaled[ref.Name]; ok {
			fail("%s and %s both scale Deployment %s: they would fight over replicas", prev, what, ref.Name)
		}
		scaled[ref.Name] = what
	}
	for _, so := range m.scaledObjects {
		what := "ScaledObject " + so.Metadata.Name
		claim(what, so.Spec.ScaleTargetRef)
		cfg, ok := workerCfg[so.Spec.ScaleTargetRef.Name]
		if !ok {
			fail("%s: its target runs no wabulk worker", what)
			continue
		}
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "redis" {
				continue
			}
			if err := checkKEDARedis(tr.Metadata, cfg); err != nil {
				fail("%s: %v", what, err)
			}
		}
	}
	for _, h := range m.hpas {
		what := "HorizontalPodAutoscaler " + h.Metadata.Name
		claim(what, h.Spec.ScaleTargetRef)
		if h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < h.Spec.MinReplicas {
			fail("%s: replicas %d..%d", what, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		if d := m.deployment(h.Spec.ScaleTargetRef.Name); d != nil {
			for _, mt := range h.Spec.Metrics {
				if mt.Resource == nil {
					continue
				}
				for _, c := range d.Spec.Template.Spec.Containers {
					if c.Resources.Requests[mt.Resource.Name] == "" {
						fail("%s: scales on %s utilisation, but container %s requests no %s", what, mt.Resource.Name, c.Name, mt.Resource.Name)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkProbesAndPorts checks that the container exposes the port the program listens on and that
// its probes ask that port for the paths the program serves.
func checkProbesAndPorts(fail func(string, ...any), cn string, c container, varName string, port int) {
	if !slices.ContainsFunc(c.Ports, func(p struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	}) bool {
		return p.ContainerPort == port
	}) {
		fail("%s: no containerPort %d, where %s listens", cn, port, varName)
	}
	for _, pr := range []struct {
		kind string
		p    *probe
		want string
	}{{"livenessProbe", c.LivenessProbe, livenessPath}, {"readinessProbe", c.ReadinessProbe, readinessPath}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			fail("%s: no %s.httpGet", cn, pr.kind)
			continue
		}
		if pr.p.HTTPGet.Path != pr.want {
			fail("%s: %s path %q, want %s", cn, pr.kind, pr.p.HTTPGet.Path, pr.want)
		}
		if got, ok := resolvePort([]container{c}, pr.p.HTTPGet.Port); !ok || got != port {
			fail("%s: %s port %q is not %d, where %s listens", cn, pr.kind, pr.p.HTTPGet.Port, port, varName)
		}
	}
}

// checkSecretFile checks that file is a key of a Secret volume mounted at its directory.
func checkSecretFile(m *manifests, ps podSpec, c container, file string) error {
	dir, base := path.Dir(file), path.Base(file)
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret == nil {
				return fmt.Errorf("%s is mounted from volume %s, which is not a Secret", dir, v.Name)
			}
			key := base
			if len(v.Secret.Items) > 0 {
				i := slices.IndexFunc(v.Secret.Items, func(it struct {
					Key  string `yaml:"key"`
					Path string `yaml:"path"`
				}) bool {
					return it.Path == base
				})
				if i < 0 {
					return fmt.Errorf("Secret volume %s has no item with path %s", v.Name, base)
				}
				key = v.Secret.Items[i].Key
			}
			if s := m.secret(v.Secret.SecretName); s != nil {
				if _, ok := s.StringData[key]; !ok {
					if _, ok := s.Data[key]; !ok {
						return fmt.Errorf("Secret %s has no key %s", s.Metadata.Name, key)
					}
				}
			}
			return nil
		}
		return fmt.Errorf("volumeMount %s names no volume", vm.Name)
	}
	return fmt.Errorf("no volume is mounted at %s", dir)
}

// checkKEDARedis checks a KEDA redis trigger against the worker's own configuration: the list it
// watches is asynq's pending list of WABULK_QUEUE, on the server and database of WABULK_REDIS_URL.
func checkKEDARedis(md map[string]string, cfg config.Config) error {
	var errs []error
	if want := store.PendingKey(cfg.Queue); md["listName"] != want {
		errs = append(errs, fmt.Errorf("listName %q, but the worker serves %s=%s whose pending list is %s",
			md["listName"], config.EnvQueue, cfg.Queue, want))
	}
	if n, err := strconv.Atoi(md["listLength"]); err != nil || n < 1 {
		errs = append(errs, fmt.Errorf("listLength %q must be a positive integer", md["listLength"]))
	}
	opt, err := cfg.RedisConnOpt()
	if err != nil {
		return err
	}
	if ro, ok := opt.(asynq.RedisClientOpt); ok && !strings.HasPrefix(cfg.RedisURL, "redis-socket:") {
		wantHost, wantPort, _ := net.SplitHostPort(ro.Addr)
		host, port, err := net.SplitHostPort(md["address"])
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("address %q: %v", md["address"], err))
		// KEDA's operator resolves names from its own namespace, so a short Service name in the
		// URL may appear fully qualified here.
		case port != wantPort || (host != wantHost && !strings.HasPrefix(host, wantHost+".")):
			errs = append(errs, fmt.Errorf("address %q is not the server of %s (%s)", md["address"], config.EnvRedisURL, ro.Addr))
		}
		if md["databaseIndex"] != strconv.Itoa(ro.DB) && !(md["databaseIndex"] == "" && ro.DB == 0) {
			errs = append(errs, fmt.Errorf("databaseIndex %q, but %s uses database %d", md["databaseIndex"], config.EnvRedisURL, ro.DB))
		}
		if (ro.TLSConfig != nil) != (md["enableTLS"] == "true") {
			errs = append(errs, fmt.Errorf("enableTLS %q does not match %s's scheme", md["enableTLS"], config.EnvRedisURL))
		}
	}
	return errors.Join(errs...)
}

// selects reports whether every label of sel is on labels.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolvePort turns a port number or name into a container port number.
func resolvePort(cs []container, p intOrString) (int, bool) {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if string(p) == cp.Name || string(p) == strconv.Itoa(cp.ContainerPort) {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// ---------------------------------------------------------------------------------------------
// Kustomize trees.

const (
	baseDir    = "deploy/k8s/base"
	overlayDir = "deploy/k8s/overlays/example"
	// hpaFallback is the documented alternative to the KEDA ScaledObject, kept out of the base's
	// resources so the two never scale the workers together.
	hpaFallback = baseDir + "/worker-hpa-cpu.yaml"
	kedaFile    = baseDir + "/worker-keda.yaml"
)

func readKustomization(read readFunc, dir string) (*kustomizationObj, error) {
	b, err := read(dir + "/kustomization.yaml")
	if err != nil {
		return nil, err
	}
	k := new(kustomizationObj)
	if err := decodeStrict(b, k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	return k, nil
}

// loadBase reads the base's resources as its kustomization lists them; swap replaces one listed
// file by another (the HPA fallback for the ScaledObject).
func loadBase(read readFunc, swap map[string]string) (*manifests, error) {
	k, err := readKustomization(read, baseDir)
	if err != nil {
		return nil, err
	}
	m := new(manifests)
	for _, r := range k.Resources {
		name := baseDir + "/" + r
		if s, ok := swap[name]; ok {
			name = s
		}
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		if err := m.add(name, b); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func TestK8sBase(t *testing.T) {
	m, err := loadBase(readRepo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkManifests(m, newRootCmd()); err != nil {
		t.Fatalf("base:\n%v", err)
	}
	// What the brief asks of the base, beyond consistency: a worker and serve, a PDB, autoscaling.
	if len(m.pdbs) == 0 || len(m.scaledObjects) == 0 || len(m.services) == 0 {
		t.Errorf("base lacks a PodDisruptionBudget, a ScaledObject or a Service")
	}
	for _, want := range []string{"worker", "serve"} {
		if !slices.ContainsFunc(m.deployments, func(d *deploymentObj) bool {
			return slices.ContainsFunc(d.Spec.Template.Spec.Containers, func(c container) bool {
				return len(c.Args) > 0 && c.Args[0] == want
			})
		}) {
			t.Errorf("no Deployment runs wabulk %s", want)
		}
	}
}

func TestK8sBaseWithHPAFallback(t *testing.T) {
	m, err := loadBase(readRepo, map[string]string{kedaFile: hpaFallback})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.hpas) != 1 || len(m.scaledObjects) != 0 {
		t.Fatalf("after the swap: %d HPAs, %d ScaledObjects", len(m.hpas), len(m.scaledObjects))
	}
	if err := checkManifests(m, newRootCmd()); err != nil {
		t.Fatalf("base with %s:\n%v", hpaFallback, err)
	}
}

// TestK8sEveryFileIsUsed decodes every YAML file under deploy/k8s strictly and checks each is a
// kustomization, is referenced by one, or is the documented HPA fallback.
func TestK8sEveryFileIsUsed(t *testing.T) {
	used := map[string]bool{hpaFallback: true}
	var walkErr error
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy/k8s"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		dir, _ := filepath.Rel(repoRoot, filepath.Dir(p))
		dir = filepath.ToSlash(dir)
		k, err := readKustomization(readRepo, dir)
		if err != nil {
			walkErr = errors.Join(walkErr, err)
			return nil
		}
		used[dir+"/kustomization.yaml"] = true
		for _, r := range k.Resources {
			used[path.Clean(dir+"/"+r)] = true
		}
		for _, p := range k.Patches {
			used[path.Clean(dir+"/"+p.Path)] = true
		}
		return nil
	})
	if err := errors.Join(err, walkErr); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(repoRoot, "deploy/k8s"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			// A directory a kustomization lists as a resource (../../base) counts as used.
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		rel = filepath.ToSlash(rel)
		if !strings.HasSuffix(rel, ".yaml") && !strings.HasSuffix(rel, ".yml") {
			t.Errorf("%s: only YAML belongs under deploy/k8s", rel)
			return nil
		}
		if d.Name() == "kustomization.yaml" {
			return nil
		}
		if !used[rel] {
			t.Errorf("%s: no kustomization lists it", rel)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := new(manifests).add(rel, b); err != nil {
			t.Error(err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestK8sOverlay checks the example overlay's own files and, where kubectl is on PATH, the
// rendered overlay as a whole.
func TestK8sOverlay(t *testing.T) {
	k, err := readKustomization(readRepo, overlayDir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(k.Resources, "../../base") {
		t.Errorf("the overlay does not build on ../../base: %v", k.Resources)
	}
	for _, r := range append(slices.Clone(k.Resources), func() []string {
		var ps []string
		for _, p := range k.Patches {
			ps = append(ps, p.Path)
		}
		return ps
	}()...) {
		if strings.HasPrefix(r, "..") {
			continue
		}
		name := overlayDir + "/" + r
		b, err := readRepo(name)
		if err != nil {
			t.Error(err)
			continue
		}
		m := new(manifests)
		if err := m.add(name, b); err != nil {
			t.Error(err)
			continue
		}
		// Patches are fragments: check the names they set, not completeness.
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
				t.Errorf("%s: Secret %s has data; the example holds stringData placeholders only", name, s.Metadata.Name)
			}
			for key, v := range s.StringData {
				if !strings.Contains(v, "REPLACE") {
					t.Errorf("%s: Secret %s key %s is not a REPLACE… placeholder", name, s.Metadata.Name, key)
				}
			}
		}
	}

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH: the rendered overlay is not checked (the base and the overlay's files are)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Join(repoRoot, overlayDir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.Bytes())
	}
	m := new(manifests)
	if err := m.add("rendered overlay", out); err != nil {
		t.Fatal(err)
	}
	if err := checkManifests(m, newRootCmd()); err != nil {
		t.Fatalf("rendered overlay:\n%v", err)
	}
	for _, d := range m.deployments {
		if d.Metadata.Namespace != k.Namespace {
			t.Errorf("rendered Deployment %s is in namespace %q, want %q", d.Metadata.Name, d.Metadata.Namespace, k.Namespace)
		}
	}
}

// TestK8sCheckerCatchesMistakes feeds the checker manifests with one deliberate mistake each.
func TestK8sCheckerCatchesMistakes(t *testing.T) {
	const (
		cm     = baseDir + "/configmap.yaml"
		worker = baseDir + "/worker-deployment.yaml"
		serve  = baseDir + "/serve-deployment.yaml"
		svc    = baseDir + "/serve-service.yaml"
	)
	for _, tc := range []struct {
		name, file, old, new string
		want                 string // the error must mention this
	}{
		{"misspelt variable in the ConfigMap", cm, "WABULK_RATE:", "WABULK_RATES:", "WABULK_RATES"},
		{"misspelt variable in a container's env", worker, "name: KALEYRA_API_KEY_FILE", "name: KALEYRA_APIKEY_FILE", "KALEYRA_APIKEY_FILE"},
		{"required variable missing", cm, "  KALEYRA_FROM: SET-IN-OVERLAY\n", "", config.EnvFrom},
		{"bad value for a variable", cm, "WABULK_RATE: \"80\"", "WABULK_RATE: \"fast\"", config.EnvRate},
		{"misspelt field", worker, "readinessProbe:", "readinesProbe:", "readinesProbe"},
		{"unknown subcommand", worker, `args: ["worker"]`, `args: ["wroker"]`, "wroker"},
		{"probe on a path nobody serves", worker, "path: /readyz", "path: /ready", "/ready"},
		{"metrics port moved but not the container port", cm, `WABULK_METRICS_ADDR: ":9090"`, `WABULK_METRICS_ADDR: ":9191"`, "9191"},
		{"grace period within the shutdown timeout", worker, "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds"},
		{"shutdown timeout beyond the grace period", cm, "WABULK_SHUTDOWN_TIMEOUT: 30s", "WABULK_SHUTDOWN_TIMEOUT: 2m", "terminationGracePeriodSeconds"},
		{"key file outside the Secret mount", worker, "value: /etc/wabulk/kaleyra/api-key", "value: /etc/kaleyra/api-key", "no volume is mounted at /etc/kaleyra"},
		{"tokens file not in the Secret", serve, "@/etc/wabulk/api-tokens/tokens", "@/etc/wabulk/api-tokens/token", "no item with path token"},
		{"Service targets a port the pod lacks", svc, "targetPort: http", "targetPort: web", "targetPort"},
		{"KEDA watches the wrong list", kedaFile, "listName: asynq:{whatsapp}:pending", "listName: asynq:whatsapp:pending", "listName"},
		{"KEDA watches another server", kedaFile, "address: redis.wabulk", "address: cache.wabulk", "address"},
		{"root filesystem writable", worker, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"capabilities kept", worker, `drop: ["ALL"]`, `drop: ["NET_RAW"]`, "drop ALL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := loadBase(mutate(t, tc.file, tc.old, tc.new), nil)
			if err == nil {
				err = checkManifests(m, newRootCmd())
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("KEDA and the HPA together", func(t *testing.T) {
		m, err := loadBase(readRepo, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := readRepo(hpaFallback)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.add(hpaFallback, b); err != nil {
			t.Fatal(err)
		}
		if err := checkManifests(m, newRootCmd()); err == nil || !strings.Contains(err.Error(), "fight over replicas") {
			t.Fatalf("got %v, want the double autoscaler reported", err)
		}
	})
}
