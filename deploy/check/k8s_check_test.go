package check

// checkManifests and the checks it runs: each function checks one thing of a set of Kubernetes
// objects against the program (config.Vars, config.Load, the subcommands, the ports and paths it
// serves) or against the other objects (Services, PDBs and autoscalers select what exists).

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/metrics"
)

// checkManifests checks a complete set of objects, as applied together.
func checkManifests(m *manifests, w cli) error {
	var p problems
	checkConfigMapKeys(&p, m)
	workers := map[string]config.Config{} // Deployment name → config of its worker container
	serves := map[string]config.Config{}  // the same for serve
	for _, d := range m.deployments {
		checkDeployment(&p, m, w, d, workers, serves)
	}
	checkServices(&p, m)
	checkPDBs(&p, m)
	checkAutoscalers(&p, m, workers)
	checkMonitors(&p, m, workers, serves)
	checkRules(&p, m)
	return p.err()
}

// checkConfigMapKeys checks that every ConfigMap key is a variable wabulk reads.
func checkConfigMapKeys(p *problems, m *manifests) {
	for _, cm := range m.configMaps {
		for k := range cm.Data {
			if !knownVar(k) {
				p.addf("ConfigMap %s: %s is not a variable wabulk reads (config.Vars)", cm.Name, k)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Deployments and their containers.

// checkDeployment checks a Deployment and each of its containers, recording in workers (serves)
// the configuration of a container that runs `wabulk worker` (`wabulk serve`).
func checkDeployment(p *problems, m *manifests, w cli, d *appsv1.Deployment, workers, serves map[string]config.Config) {
	dn := "Deployment " + d.Name
	if !podSelector(d.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		p.addf("%s: spec.selector does not select its own pod template", dn)
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		p.addf("%s: no containers", dn)
	}
	for i := range d.Spec.Template.Spec.Containers {
		sub, cfg, ok := checkContainer(p, m, w, d, &d.Spec.Template.Spec.Containers[i])
		if ok && sub == "worker" {
			workers[d.Name] = cfg
		}
		if ok && sub == "serve" {
			serves[d.Name] = cfg
		}
	}
}

// checkContainer checks one container of d: how it is locked down and sized, the subcommand it
// runs, its environment, and, for the subcommands that serve, its ports and probes. It returns
// the subcommand and its configuration, ok false when either is unknown.
func checkContainer(p *problems, m *manifests, w cli, d *appsv1.Deployment, c *corev1.Container) (sub string, cfg config.Config, ok bool) {
	cn := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
	ps := &d.Spec.Template.Spec
	checkContainerSecurity(p, cn, ps, c)
	checkResources(p, cn, c)
	sub, err := containerSubcommand(w, c)
	if err != nil {
		p.addf("%s: %v", cn, err)
		return "", cfg, false
	}
	env := containerEnv(p, m, cn, c)
	for _, err := range checkRequired(sub, env) {
		p.addf("%s: %v", cn, err)
	}
	cfg, err = loadConfig(env)
	if err != nil {
		p.addf("%s: config.Load: %v", cn, err)
		return sub, cfg, false
	}
	checkSecretFiles(p, m, cn, ps, c, env)
	if sub == "worker" || sub == "serve" {
		checkServing(p, d, c, sub, cfg)
	}
	return sub, cfg, true
}

// containerSubcommand returns the wabulk subcommand c runs: its args, after the rest of its
// command if it sets one (which must run wabulk).
func containerSubcommand(w cli, c *corev1.Container) (string, error) {
	if len(c.Command) > 0 && path.Base(c.Command[0]) != "wabulk" {
		return "", fmt.Errorf("command %q does not run wabulk", c.Command)
	}
	args := c.Args
	if len(c.Command) > 1 {
		args = append(slices.Clone(c.Command[1:]), args...)
	}
	return w.subcommand(args)
}

// containerEnv returns the variables c sees, from envFrom and env, reporting any that wabulk does
// not read. A variable whose value comes from a Secret or a field is present with value "".
func containerEnv(p *problems, m *manifests, cn string, c *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		addEnvFrom(p, m, cn, ef, env)
	}
	for _, e := range c.Env {
		if !knownVar(e.Name) {
			p.addf("%s: env %s is not a variable wabulk reads (config.Vars)", cn, e.Name)
			continue
		}
		env[e.Name] = e.Value
	}
	return env
}

// addEnvFrom adds to env the variables one envFrom source gives.
func addEnvFrom(p *problems, m *manifests, cn string, ef corev1.EnvFromSource, env map[string]string) {
	switch {
	case ef.Prefix != "":
		p.addf("%s: envFrom prefix %q would rename the variables", cn, ef.Prefix)
	case ef.ConfigMapRef != nil:
		cm := byName(m.configMaps, ef.ConfigMapRef.Name)
		if cm == nil {
			p.addf("%s: envFrom ConfigMap %s is not among the manifests", cn, ef.ConfigMapRef.Name)
			return
		}
		maps.Copy(env, cm.Data)
	case ef.SecretRef != nil:
		// A Secret created out of band is not among the manifests: nothing to check then.
		s := byName(m.secrets, ef.SecretRef.Name)
		if s == nil {
			return
		}
		for _, k := range secretKeys(s) {
			if !knownVar(k) {
				p.addf("%s: Secret %s key %s is not a variable wabulk reads", cn, s.Name, k)
			}
			env[k] = ""
		}
	}
}

// secretKeys lists the keys of s, from data and stringData.
func secretKeys(s *corev1.Secret) []string {
	keys := slices.Collect(maps.Keys(s.Data))
	keys = append(keys, slices.Collect(maps.Keys(s.StringData))...)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// checkContainerSecurity checks that c runs as non-root (its own setting or the pod's), on a
// read-only root filesystem, without privilege escalation and with every capability dropped.
func checkContainerSecurity(p *problems, cn string, ps *corev1.PodSpec, c *corev1.Container) {
	sc := c.SecurityContext
	if sc == nil {
		p.addf("%s: no securityContext", cn)
		return
	}
	podNonRoot := ps.SecurityContext != nil && isTrue(ps.SecurityContext.RunAsNonRoot)
	if !podNonRoot && !isTrue(sc.RunAsNonRoot) {
		p.addf("%s: runAsNonRoot is not set", cn)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		p.addf("%s: readOnlyRootFilesystem is not true", cn)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.addf("%s: allowPrivilegeEscalation is not false", cn)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		p.addf("%s: capabilities do not drop ALL", cn)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// checkResources checks that c requests and limits CPU and memory, each request within its limit
// (the API server rejects a request above the limit).
func checkResources(p *problems, cn string, c *corev1.Container) {
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		switch {
		case !okReq || !okLim || req.IsZero() || lim.IsZero():
			p.addf("%s: resources.requests and .limits need %s", cn, r)
		case req.Cmp(lim) > 0:
			p.addf("%s: %s request %s exceeds its limit %s", cn, r, req.String(), lim.String())
		}
	}
}

// checkSecretFiles checks that the files the program reads (the Kaleyra API key, the API tokens
// as "@file") come from a Secret mounted where the variable says.
func checkSecretFiles(p *problems, m *manifests, cn string, ps *corev1.PodSpec, c *corev1.Container, env map[string]string) {
	if f, ok := env[config.EnvAPIKeyFile]; ok {
		if err := checkSecretFile(m, ps, c, f); err != nil {
			p.addf("%s: %s: %v", cn, config.EnvAPIKeyFile, err)
		}
	}
	if t, ok := env[config.EnvAPITokens]; ok && strings.HasPrefix(t, "@") {
		if err := checkSecretFile(m, ps, c, strings.TrimPrefix(t, "@")); err != nil {
			p.addf("%s: %s: %v", cn, config.EnvAPITokens, err)
		}
	}
}

// checkSecretFile checks that file is a key of a Secret volume mounted at its directory, and, if
// that Secret is among the manifests, that it has the key.
func checkSecretFile(m *manifests, ps *corev1.PodSpec, c *corev1.Container, file string) error {
	dir, base := path.Dir(file), path.Base(file)
	i := slices.IndexFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == dir })
	if i < 0 {
		return fmt.Errorf("no volume is mounted at %s", dir)
	}
	vm := c.VolumeMounts[i]
	j := slices.IndexFunc(ps.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
	if j < 0 {
		return fmt.Errorf("volumeMount %s names no volume", vm.Name)
	}
	v := ps.Volumes[j]
	if v.Secret == nil {
		return fmt.Errorf("%s is mounted from volume %s, which is not a Secret", dir, v.Name)
	}
	key := base
	if len(v.Secret.Items) > 0 {
		k := slices.IndexFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == base })
		if k < 0 {
			return fmt.Errorf("Secret volume %s has no item with path %s", v.Name, base)
		}
		key = v.Secret.Items[k].Key
	}
	if s := byName(m.secrets, v.Secret.SecretName); s != nil && !slices.Contains(secretKeys(s), key) {
		return fmt.Errorf("Secret %s has no key %s", s.Name, key)
	}
	return nil
}

// checkServing checks a container that serves probes and metrics (worker, serve): the grace
// period outlasts the shutdown timeout, and the port, probes and scrape annotations match the
// address the program listens on.
func checkServing(p *problems, d *appsv1.Deployment, c *corev1.Container, sub string, cfg config.Config) {
	dn := "Deployment " + d.Name
	cn := fmt.Sprintf("%s container %s", dn, c.Name)
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if time.Duration(grace)*time.Second <= cfg.ShutdownTimeout {
		p.addf("%s: terminationGracePeriodSeconds %d must exceed %s (%v)", dn, grace, config.EnvShutdown, cfg.ShutdownTimeout)
	}
	varName, port, err := servedPort(sub, cfg)
	if err != nil {
		p.addf("%s: %v", cn, err)
		return
	}
	checkProbesAndPorts(p, cn, c, varName, port)
	checkScrapeAnnotations(p, dn, d.Spec.Template.Annotations, varName, port)
}

// checkProbesAndPorts checks that the container exposes the port the program listens on and that
// its probes ask that port for the paths the program serves.
func checkProbesAndPorts(p *problems, cn string, c *corev1.Container, varName string, port int) {
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == port }) {
		p.addf("%s: no containerPort %d, where %s listens", cn, port, varName)
	}
	for _, pr := range []struct {
		kind  string
		probe *corev1.Probe
		want  string
	}{{"livenessProbe", c.LivenessProbe, livenessPath}, {"readinessProbe", c.ReadinessProbe, readinessPath}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			p.addf("%s: no %s.httpGet", cn, pr.kind)
			continue
		}
		get := pr.probe.HTTPGet
		if get.Path != pr.want {
			p.addf("%s: %s path %q, want %s", cn, pr.kind, get.Path, pr.want)
		}
		if got, ok := resolvePort(c.Ports, get.Port); !ok || got != port {
			p.addf("%s: %s port %q is not %d, where %s listens", cn, pr.kind, get.Port.String(), port, varName)
		}
	}
}

// checkScrapeAnnotations checks that a pod template that asks Prometheus to scrape it names the
// port and path the program serves metrics on.
func checkScrapeAnnotations(p *problems, dn string, a map[string]string, varName string, port int) {
	if a["prometheus.io/scrape"] != "true" {
		return
	}
	if a["prometheus.io/port"] != strconv.Itoa(port) {
		p.addf("%s: prometheus.io/port %q, but %s listens on %d", dn, a["prometheus.io/port"], varName, port)
	}
	if mp := a["prometheus.io/path"]; mp != "" && mp != metricsPath {
		p.addf("%s: prometheus.io/path %q, want %s", dn, mp, metricsPath)
	}
}

// resolvePort turns a port number or name into the number of one of ports.
func resolvePort(ports []corev1.ContainerPort, port intstr.IntOrString) (int, bool) {
	for _, cp := range ports {
		if (port.Type == intstr.String && port.StrVal == cp.Name) || (port.Type == intstr.Int && port.IntVal == cp.ContainerPort) {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// ---------------------------------------------------------------------------------------------
// Services and PodDisruptionBudgets select pods that exist.

// podSelector turns a label selector into a labels.Selector. A missing, empty or invalid one
// selects nothing: an empty selector on a PDB or Deployment is a mistake here, not "every pod".
func podSelector(ls *metav1.LabelSelector) labels.Selector {
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		return labels.Nothing()
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return labels.Nothing()
	}
	return sel
}

// selectedDeployment returns the first Deployment whose pods sel selects, or nil.
func (m *manifests) selectedDeployment(sel labels.Selector) *appsv1.Deployment {
	for _, d := range m.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			return d
		}
	}
	return nil
}

// checkServices checks that each Service selects a Deployment's pods and targets ports they have.
func checkServices(p *problems, m *manifests) {
	for _, s := range m.services {
		sn := "Service " + s.Name
		sel := labels.Nothing()
		if len(s.Spec.Selector) > 0 {
			sel = labels.SelectorFromSet(s.Spec.Selector)
		}
		target := m.selectedDeployment(sel)
		if target == nil {
			p.addf("%s: selector %v matches no Deployment's pods", sn, s.Spec.Selector)
			continue
		}
		var ports []corev1.ContainerPort
		for _, c := range target.Spec.Template.Spec.Containers {
			ports = append(ports, c.Ports...)
		}
		for _, sp := range s.Spec.Ports {
			if _, ok := resolvePort(ports, sp.TargetPort); !ok {
				p.addf("%s: targetPort %q is no container port of Deployment %s", sn, sp.TargetPort.String(), target.Name)
			}
		}
	}
}

// checkPDBs checks that each PodDisruptionBudget sets a budget and selects a Deployment's pods.
func checkPDBs(p *problems, m *manifests) {
	for _, pdb := range m.pdbs {
		if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
			p.addf("PodDisruptionBudget %s: set minAvailable or maxUnavailable", pdb.Name)
		}
		if m.selectedDeployment(podSelector(pdb.Spec.Selector)) == nil {
			p.addf("PodDisruptionBudget %s: selector matches no Deployment's pods", pdb.Name)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Autoscalers.

// checkAutoscalers checks the ScaledObjects and HPAs, that no two scale one Deployment, and that
// a Deployment they scale sets no replicas (an apply would reset their count to it).
func checkAutoscalers(p *problems, m *manifests, workers map[string]config.Config) {
	scaled := map[string]string{} // Deployment name → what scales it
	for _, so := range m.scaledObjects {
		what := "ScaledObject " + so.Name
		ref := so.Spec.ScaleTargetRef
		claimTarget(p, m, scaled, what, ref.Kind, ref.Name)
		checkScaledObject(p, m, what, so, workers)
	}
	for _, h := range m.hpas {
		what := "HorizontalPodAutoscaler " + h.Name
		claimTarget(p, m, scaled, what, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		checkHPA(p, m, what, h)
	}
	for name, what := range scaled {
		if d := byName(m.deployments, name); d != nil && d.Spec.Replicas != nil {
			p.addf("Deployment %s sets replicas %d, but %s owns its count: every apply would reset it", name, *d.Spec.Replicas, what)
		}
	}
}

// claimTarget records that what scales Deployment name, reporting a target that is not among the
// manifests or that something else already scales.
func claimTarget(p *problems, m *manifests, scaled map[string]string, what, kind, name string) {
	if kind != "Deployment" || byName(m.deployments, name) == nil {
		p.addf("%s: scaleTargetRef %s/%s is not among the manifests", what, kind, name)
		return
	}
	if prev, ok := scaled[name]; ok {
		p.addf("%s and %s both scale Deployment %s: they would fight over replicas", prev, what, name)
	}
	scaled[name] = what
}

// checkScaledObject checks that a ScaledObject scales a worker Deployment on a prometheus trigger
// whose query reads that worker's runnable backlog, and that an authenticationRef names a
// TriggerAuthentication among the manifests.
func checkScaledObject(p *problems, m *manifests, what string, so *scaledObject, workers map[string]config.Config) {
	cfg, ok := workers[so.Spec.ScaleTargetRef.Name]
	if !ok {
		p.addf("%s: its target runs no wabulk worker", what)
		return
	}
	found := 0
	for _, tr := range so.Spec.Triggers {
		if ref := tr.AuthenticationRef; ref != nil && (ref.Kind == "" || ref.Kind == "TriggerAuthentication") && byName(m.triggerAuths, ref.Name) == nil {
			p.addf("%s: authenticationRef %s is no TriggerAuthentication among the manifests", what, ref.Name)
		}
		if tr.Type != "prometheus" {
			continue
		}
		found++
		if err := checkKEDAPrometheus(tr.Metadata, so.Namespace, cfg); err != nil {
			p.addf("%s: %v", what, err)
		}
	}
	if found == 0 {
		p.addf("%s: no prometheus trigger reads the runnable backlog", what)
	}
}

// checkHPA checks an HPA's replica range and that the containers it scales request each resource
// it scales on (utilisation is measured against the request).
func checkHPA(p *problems, m *manifests, what string, h *autoscalingv2.HorizontalPodAutoscaler) {
	var minReplicas int32 // an unset minReplicas counts as 0: the HPA must state its floor
	if h.Spec.MinReplicas != nil {
		minReplicas = *h.Spec.MinReplicas
	}
	if minReplicas < 1 || h.Spec.MaxReplicas < minReplicas {
		p.addf("%s: replicas %d..%d", what, minReplicas, h.Spec.MaxReplicas)
	}
	d := byName(m.deployments, h.Spec.ScaleTargetRef.Name)
	if d == nil {
		return
	}
	for _, mt := range h.Spec.Metrics {
		if mt.Resource == nil {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if _, ok := c.Resources.Requests[mt.Resource.Name]; !ok {
				p.addf("%s: scales on %s utilisation, but container %s requests no %s", what, mt.Resource.Name, c.Name, mt.Resource.Name)
			}
		}
	}
}

// kedaQuery is the form of the trigger's query: the max over exporting processes of the
// runnable backlog, selected by label matchers.
var kedaQuery = regexp.MustCompile(`^max\(` + metrics.Runnable.Name + `\{([^}]*)\}\)$`)

// labelMatcher is one name="value" matcher.
var labelMatcher = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"\s*$`)

// checkKEDAPrometheus checks a KEDA prometheus trigger against the worker's configuration: the
// query reads wabulk_runnable_tasks of WABULK_QUEUE in the ScaledObject's own namespace (when it
// has one: the base leaves it to the overlay), as max (one process exports it, two during a
// handover); the threshold is a positive number; the server address a URL.
func checkKEDAPrometheus(md map[string]string, namespace string, cfg config.Config) error {
	var errs []error
	q := strings.TrimSpace(md["query"])
	mm := kedaQuery.FindStringSubmatch(q)
	if mm == nil {
		errs = append(errs, fmt.Errorf("query %q: want max(%s{namespace=\"…\", queue=\"…\"})", q, metrics.Runnable.Name))
	} else {
		got := map[string]string{}
		for _, part := range strings.Split(mm[1], ",") {
			lm := labelMatcher.FindStringSubmatch(part)
			if lm == nil {
				errs = append(errs, fmt.Errorf("query %q: matcher %q is not name=\"value\"", q, part))
				continue
			}
			got[lm[1]] = lm[2]
		}
		if got["queue"] != cfg.Queue {
			errs = append(errs, fmt.Errorf("query selects queue %q, but the worker serves %s=%s", got["queue"], config.EnvQueue, cfg.Queue))
		}
		if _, ok := got["namespace"]; !ok {
			errs = append(errs, fmt.Errorf("query %q selects no namespace: another installation's backlog would count", q))
		} else if namespace != "" && got["namespace"] != namespace {
			errs = append(errs, fmt.Errorf("query selects namespace %q, but the ScaledObject is in %q", got["namespace"], namespace))
		}
	}
	if n, err := strconv.ParseFloat(md["threshold"], 64); err != nil || n <= 0 {
		errs = append(errs, fmt.Errorf("threshold %q must be a positive number", md["threshold"]))
	}
	if u, err := url.Parse(md["serverAddress"]); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("serverAddress %q is not an http(s) URL", md["serverAddress"]))
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------------------------------------
// Monitors and rules.

// The job names the dashboard and the alert rules select (up{job=…}): the monitors set them.
const (
	workerJob = "wabulk-worker"
	serveJob  = "wabulk-serve"
)

// setsJob reports whether relabelings set the job label to job.
func setsJob(rs []relabeling, job string) bool {
	return slices.ContainsFunc(rs, func(r relabeling) bool {
		return r.TargetLabel == "job" && r.Replacement != nil && *r.Replacement == job && (r.Action == "" || r.Action == "replace")
	})
}

// checkMonitors checks that each PodMonitor scrapes worker pods on the port WABULK_METRICS_ADDR
// listens on, and each ServiceMonitor serve's Service with a bearer token serve accepts; both as
// the job names the dashboard and rules use.
func checkMonitors(p *problems, m *manifests, workers, serves map[string]config.Config) {
	for _, pm := range m.podMonitors {
		what := "PodMonitor " + pm.Name
		d := m.selectedDeployment(podSelector(&pm.Spec.Selector))
		if d == nil {
			p.addf("%s: selects no Deployment's pods", what)
			continue
		}
		cfg, ok := workers[d.Name]
		if !ok {
			p.addf("%s: selects Deployment %s, which runs no wabulk worker", what, d.Name)
			continue
		}
		_, port, _ := servedPort("worker", cfg)
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			var ports []corev1.ContainerPort
			for _, c := range d.Spec.Template.Spec.Containers {
				ports = append(ports, c.Ports...)
			}
			if got, ok := resolvePort(ports, intstr.FromString(ep.Port)); !ok || got != port {
				p.addf("%s: port %q is not the container port %d, where %s listens", what, ep.Port, port, config.EnvMetricsAddr)
			}
			if ep.Path != metricsPath {
				p.addf("%s: path %q, want %s", what, ep.Path, metricsPath)
			}
			if !setsJob(ep.Relabelings, workerJob) {
				p.addf("%s: relabelings do not set job=%s, the job the dashboard and alerts select", what, workerJob)
			}
		}
	}
	for _, sm := range m.svcMonitors {
		what := "ServiceMonitor " + sm.Name
		sel := podSelector(&sm.Spec.Selector)
		i := slices.IndexFunc(m.services, func(s *corev1.Service) bool { return sel.Matches(labels.Set(s.Labels)) })
		if i < 0 {
			p.addf("%s: selects no Service", what)
			continue
		}
		svc := m.services[i]
		d := m.selectedDeployment(labels.SelectorFromSet(svc.Spec.Selector))
		if d == nil || !slices.Contains(slices.Collect(maps.Keys(serves)), d.Name) {
			p.addf("%s: Service %s does not lead to wabulk serve", what, svc.Name)
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == ep.Port }) {
				p.addf("%s: port %q is no port of Service %s", what, ep.Port, svc.Name)
			}
			if ep.Path != metricsPath {
				p.addf("%s: path %q, want %s", what, ep.Path, metricsPath)
			}
			if !setsJob(ep.Relabelings, serveJob) {
				p.addf("%s: relabelings do not set job=%s, the job the dashboard and alerts select", what, serveJob)
			}
			checkScrapeToken(p, m, what, d, ep.Authorization)
		}
	}
}

// checkScrapeToken checks that a ServiceMonitor of serve sends a bearer token from a Secret key,
// and, when that Secret is among the manifests, that the token is one serve accepts: a line of
// the file WABULK_API_TOKENS names.
func checkScrapeToken(p *problems, m *manifests, what string, d *appsv1.Deployment, auth *struct {
	Type        string                    `json:"type"`
	Credentials *corev1.SecretKeySelector `json:"credentials"`
}) {
	if auth == nil || !strings.EqualFold(auth.Type, "Bearer") || auth.Credentials == nil {
		p.addf("%s: serve's /metrics needs a bearer token (authorization type Bearer with credentials)", what)
		return
	}
	s := byName(m.secrets, auth.Credentials.Name)
	if s == nil {
		return // created out of band
	}
	token, ok := s.StringData[auth.Credentials.Key]
	if !ok {
		p.addf("%s: Secret %s has no key %s", what, s.Name, auth.Credentials.Key)
		return
	}
	// The key of the same Secret that serve mounts as its tokens file.
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret == nil || v.Secret.SecretName != s.Name {
			continue
		}
		for _, it := range v.Secret.Items {
			if !slices.Contains(strings.Split(s.StringData[it.Key], "\n"), strings.TrimSpace(token)) {
				p.addf("%s: the token in Secret %s key %s is not a line of key %s, the tokens serve accepts", what, s.Name, auth.Credentials.Key, it.Key)
			}
		}
	}
}

// alertsFile is the plain rules file a PrometheusRule must mirror.
const alertsFile = "deploy/monitoring/alerts.yaml"

// checkRules checks that each PrometheusRule holds exactly the groups of alertsFile.
func checkRules(p *problems, m *manifests) {
	if len(m.rules) == 0 {
		return
	}
	b, err := readRepo(alertsFile)
	if err != nil {
		p.add(err)
		return
	}
	var want ruleGroups
	if err := decodeStrict(b, &want); err != nil {
		p.addf("%s: %v", alertsFile, err)
		return
	}
	for _, r := range m.rules {
		if !reflect.DeepEqual(r.Spec, want) {
			p.addf("PrometheusRule %s: its groups differ from %s; keep the two identical", r.Name, alertsFile)
		}
	}
}
