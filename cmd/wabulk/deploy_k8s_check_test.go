package main

// checkManifests and the checks it runs: each function checks one thing of a set of Kubernetes
// objects against the program (config.Vars, config.Load, the subcommands, the ports and paths it
// serves) or against the other objects (Services, PDBs and autoscalers select what exists).

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/store"
)

// checkManifests checks a complete set of objects, as applied together.
func checkManifests(m *manifests, root *cobra.Command) error {
	var p problems
	checkConfigMapKeys(&p, m)
	workers := map[string]config.Config{} // Deployment name → config of its worker container
	for _, d := range m.deployments {
		checkDeployment(&p, m, root, d, workers)
	}
	checkServices(&p, m)
	checkPDBs(&p, m)
	checkAutoscalers(&p, m, workers)
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

// checkDeployment checks a Deployment and each of its containers, recording in workers the
// configuration of a container that runs `wabulk worker`.
func checkDeployment(p *problems, m *manifests, root *cobra.Command, d *appsv1.Deployment, workers map[string]config.Config) {
	dn := "Deployment " + d.Name
	if !podSelector(d.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		p.addf("%s: spec.selector does not select its own pod template", dn)
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		p.addf("%s: no containers", dn)
	}
	for i := range d.Spec.Template.Spec.Containers {
		sub, cfg, ok := checkContainer(p, m, root, d, &d.Spec.Template.Spec.Containers[i])
		if ok && sub == "worker" {
			workers[d.Name] = cfg
		}
	}
}

// checkContainer checks one container of d: how it is locked down and sized, the subcommand it
// runs, its environment, and, for the subcommands that serve, its ports and probes. It returns
// the subcommand and its configuration, ok false when either is unknown.
func checkContainer(p *problems, m *manifests, root *cobra.Command, d *appsv1.Deployment, c *corev1.Container) (sub string, cfg config.Config, ok bool) {
	cn := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
	ps := &d.Spec.Template.Spec
	checkContainerSecurity(p, cn, ps, c)
	checkResources(p, cn, c)
	sub, err := containerSubcommand(root, c)
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
func containerSubcommand(root *cobra.Command, c *corev1.Container) (string, error) {
	if len(c.Command) > 0 && path.Base(c.Command[0]) != "wabulk" {
		return "", fmt.Errorf("command %q does not run wabulk", c.Command)
	}
	args := c.Args
	if len(c.Command) > 1 {
		args = append(slices.Clone(c.Command[1:]), args...)
	}
	return subcommandOf(root, args)
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

// checkAutoscalers checks the ScaledObjects and HPAs, and that no two scale one Deployment.
func checkAutoscalers(p *problems, m *manifests, workers map[string]config.Config) {
	scaled := map[string]string{} // Deployment name → what scales it
	for _, so := range m.scaledObjects {
		what := "ScaledObject " + so.Name
		ref := so.Spec.ScaleTargetRef
		claimTarget(p, m, scaled, what, ref.Kind, ref.Name)
		checkScaledObject(p, what, so, workers)
	}
	for _, h := range m.hpas {
		what := "HorizontalPodAutoscaler " + h.Name
		claimTarget(p, m, scaled, what, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		checkHPA(p, m, what, h)
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

// checkScaledObject checks that a ScaledObject scales a worker Deployment on a redis trigger that
// watches that worker's queue.
func checkScaledObject(p *problems, what string, so *scaledObject, workers map[string]config.Config) {
	cfg, ok := workers[so.Spec.ScaleTargetRef.Name]
	if !ok {
		p.addf("%s: its target runs no wabulk worker", what)
		return
	}
	redisTriggers := 0
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "redis" {
			continue
		}
		redisTriggers++
		if err := checkKEDARedis(tr.Metadata, cfg); err != nil {
			p.addf("%s: %v", what, err)
		}
	}
	if redisTriggers == 0 {
		p.addf("%s: no redis trigger watches the worker's queue", what)
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
		return errors.Join(append(errs, err)...)
	}
	if ro, ok := opt.(asynq.RedisClientOpt); ok && !strings.HasPrefix(cfg.RedisURL, "redis-socket:") {
		errs = append(errs, checkKEDAServer(md, ro))
	}
	return errors.Join(errs...)
}

// checkKEDAServer checks that a redis trigger's address, databaseIndex and enableTLS name the
// server, database and scheme of WABULK_REDIS_URL (as ro holds them).
func checkKEDAServer(md map[string]string, ro asynq.RedisClientOpt) error {
	var errs []error
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
	if db := md["databaseIndex"]; db != strconv.Itoa(ro.DB) && (db != "" || ro.DB != 0) {
		errs = append(errs, fmt.Errorf("databaseIndex %q, but %s uses database %d", db, config.EnvRedisURL, ro.DB))
	}
	if (ro.TLSConfig != nil) != (md["enableTLS"] == "true") {
		errs = append(errs, fmt.Errorf("enableTLS %q does not match %s's scheme", md["enableTLS"], config.EnvRedisURL))
	}
	return errors.Join(errs...)
}
