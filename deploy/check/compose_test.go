package check

// Tests of docker-compose.yml: decoded strictly into the structs below, then each wabulk service
// is checked against the program (variables, subcommand, ports, grace period), the workers
// against the sandbox they talk to, the Redis service against what the rest expects of it, every
// image and host port for what a laptop needs (pinned, loopback, no clash), and the monitoring
// profile's Prometheus and Grafana against deploy/monitoring and the wabulk services.

import (
	"bytes"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wabulk/wabulk/internal/config"
)

const composeFileName = "docker-compose.yml"

// composeFile holds the parts of the compose specification docker-compose.yml uses; decoding it
// with KnownFields makes any other field an error.
type composeFile struct {
	Name string `yaml:"name"`
	// The YAML anchor the wabulk services share.
	WabulkImage composeService            `yaml:"x-wabulk-image"`
	Services    map[string]composeService `yaml:"services"`
	Volumes     map[string]*struct{}      `yaml:"volumes"`
	Configs     map[string]struct {
		Content string `yaml:"content"`
		File    string `yaml:"file"`
	} `yaml:"configs"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command         []string            `yaml:"command"`
	Environment     map[string]string   `yaml:"environment"`
	Ports           []string            `yaml:"ports"`
	Volumes         []string            `yaml:"volumes"`
	Healthcheck     *composeHealthcheck `yaml:"healthcheck"`
	Restart         string              `yaml:"restart"`
	ReadOnly        bool                `yaml:"read_only"`
	Tmpfs           []string            `yaml:"tmpfs"`
	SecurityOpt     []string            `yaml:"security_opt"`
	CapDrop         []string            `yaml:"cap_drop"`
	Profiles        []string            `yaml:"profiles"`
	StopGracePeriod string              `yaml:"stop_grace_period"`
	Deploy          *struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Configs []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"configs"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// decodeCompose decodes the file strictly with yaml.v3, which reads YAML 1.2 as compose does (an
// unquoted yes is a string); sigs.k8s.io/yaml reads YAML 1.1, as kubectl does.
func decodeCompose(data []byte) (*composeFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	f := new(composeFile)
	if err := dec.Decode(f); err != nil {
		return nil, fmt.Errorf("%s: %w", composeFileName, err)
	}
	return f, nil
}

// interpolate resolves compose's ${VAR:-default} and ${VAR-default} to their defaults, as
// `docker compose up` does with nothing set; a bare ${VAR} is an error, the file must work as is.
func interpolate(v string) (string, error) {
	var out strings.Builder
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			out.WriteString(v)
			return out.String(), nil
		}
		j := strings.Index(v[i:], "}")
		if j < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", v)
		}
		expr := v[i+2 : i+j]
		_, def, ok := strings.Cut(expr, "-")
		if !ok {
			return "", fmt.Errorf("${%s} has no default", expr)
		}
		out.WriteString(v[:i] + strings.TrimPrefix(def, "-"))
		v = v[i+j+1:]
	}
}

// composeContainerPort is the container side of a ports entry such as "127.0.0.1:8080:8080".
func composeContainerPort(p string) (int, error) {
	p, _, _ = strings.Cut(p, "/")
	parts := strings.Split(p, ":")
	return strconv.Atoi(parts[len(parts)-1])
}

// flagValue returns the value of --name (as "--name v" or "--name=v") in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// checkCompose checks the whole file; it returns every problem found.
func checkCompose(data []byte, w cli) error {
	f, err := decodeCompose(data)
	if err != nil {
		return err
	}
	var p problems
	subs := map[string]string{} // service → wabulk subcommand
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		checkComposeDependsOn(&p, f, name)
		checkComposeVolumes(&p, f, name)
		if sub, ok := checkComposeWabulk(&p, w, name, f.Services[name]); ok {
			subs[name] = sub
		}
	}
	for name, sub := range subs {
		if sub == "worker" {
			checkComposeSandboxAccount(&p, f, subs, name)
		}
	}
	for _, want := range []string{"worker", "serve", "sandbox"} {
		if !slices.Contains(slices.Collect(maps.Values(subs)), want) {
			p.addf("no service runs wabulk %s", want)
		}
	}
	checkComposeRedis(&p, f)
	checkComposeImagesAndPorts(&p, f)
	checkComposeMonitoring(&p, f, subs)
	return p.err()
}

// checkComposeDependsOn checks that each service name depends on exists and, where it is waited
// for until healthy, has a healthcheck.
func checkComposeDependsOn(p *problems, f *composeFile, name string) {
	for dep, d := range f.Services[name].DependsOn {
		ds, ok := f.Services[dep]
		switch {
		case !ok:
			p.addf("service %s depends on %s, which is not a service", name, dep)
		case d.Condition == "service_healthy" && ds.Healthcheck == nil:
			p.addf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
		case d.Condition != "service_healthy" && d.Condition != "service_started" && d.Condition != "service_completed_successfully":
			p.addf("service %s: depends_on %s condition %q", name, dep, d.Condition)
		}
	}
}

// checkComposeVolumes checks that every named volume a service mounts is declared.
func checkComposeVolumes(p *problems, f *composeFile, name string) {
	for _, v := range f.Services[name].Volumes {
		src, _, _ := strings.Cut(v, ":")
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			continue // a bind mount
		}
		if _, ok := f.Volumes[src]; !ok {
			p.addf("service %s mounts volume %s, which volumes: does not declare", name, src)
		}
	}
}

// checkComposeWabulk checks a service built from deploy/Dockerfile: its subcommand, its
// environment and, for worker and serve, what they need of compose. It returns the subcommand,
// ok false for a service that is not the wabulk image or whose subcommand is unknown.
func checkComposeWabulk(p *problems, w cli, name string, s composeService) (string, bool) {
	if s.Build == nil {
		return "", false // not the wabulk image
	}
	sn := "service " + name
	if s.Build.Dockerfile != "deploy/Dockerfile" || s.Build.Context != "." {
		p.addf("%s builds %s/%s, want deploy/Dockerfile from the repository root", sn, s.Build.Context, s.Build.Dockerfile)
	}
	sub, err := w.subcommand(s.Command)
	if err != nil {
		p.addf("%s: %v", sn, err)
		return "", false
	}
	env := composeEnv(p, sn, s)
	if sub != "worker" && sub != "serve" {
		return sub, true
	}
	for _, err := range checkRequired(sub, env) {
		p.addf("%s: %v", sn, err)
	}
	cfg, err := loadConfig(env)
	if err != nil {
		p.addf("%s: config.Load: %v", sn, err)
		return sub, true
	}
	if s.DependsOn["redis"].Condition != "service_healthy" {
		p.addf("%s must wait for redis to be healthy", sn)
	}
	if sub == "worker" {
		checkComposeWorker(p, sn, s, cfg)
	} else {
		checkComposeServe(p, sn, s, cfg)
	}
	return sub, true
}

// composeEnv returns a service's environment with defaults interpolated, reporting variables
// wabulk does not read.
func composeEnv(p *problems, sn string, s composeService) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if !knownVar(k) {
			p.addf("%s: environment %s is not a variable wabulk reads (config.Vars)", sn, k)
			continue
		}
		iv, err := interpolate(v)
		if err != nil {
			p.addf("%s: %s: %v", sn, k, err)
		}
		env[k] = iv
	}
	return env
}

// checkComposeWorker checks the worker service: two replicas, a stop grace period beyond the
// shutdown timeout, and no host ports (replicas would collide on them).
func checkComposeWorker(p *problems, sn string, s composeService, cfg config.Config) {
	if s.Deploy == nil || s.Deploy.Replicas != 2 {
		p.addf("%s: want deploy.replicas 2", sn)
	}
	grace := 10 * time.Second // compose's default
	if s.StopGracePeriod != "" {
		var err error
		if grace, err = time.ParseDuration(s.StopGracePeriod); err != nil {
			p.addf("%s: stop_grace_period: %v", sn, err)
		}
	}
	if grace <= cfg.ShutdownTimeout {
		p.addf("%s: stop_grace_period %v must exceed %s (%v)", sn, grace, config.EnvShutdown, cfg.ShutdownTimeout)
	}
	if len(s.Ports) > 0 {
		p.addf("%s: a replicated service cannot publish host ports", sn)
	}
}

// checkComposeServe checks that the serve service publishes the port WABULK_ADDR listens on.
func checkComposeServe(p *problems, sn string, s composeService, cfg config.Config) {
	_, port, err := servedPort("serve", cfg)
	if err != nil {
		p.addf("%s: %v", sn, err)
		return
	}
	if !slices.ContainsFunc(s.Ports, func(ps string) bool { n, err := composeContainerPort(ps); return err == nil && n == port }) {
		p.addf("%s: %s listens on %d, which ports %v do not publish", sn, config.EnvAddr, port, s.Ports)
	}
}

// checkComposeSandboxAccount checks that a worker pointed at the sandbox (KALEYRA_BASE_URL) uses
// the sandbox's port and the account the sandbox was started with, and waits for it to start.
func checkComposeSandboxAccount(p *problems, f *composeFile, subs map[string]string, name string) {
	env := f.Services[name].Environment
	base := env[config.EnvBaseURL]
	if base == "" {
		return // pointed at the real Kaleyra
	}
	u, err := url.Parse(base)
	if err != nil {
		p.addf("service %s: %s: %v", name, config.EnvBaseURL, err)
		return
	}
	sb, ok := f.Services[u.Hostname()]
	if !ok || subs[u.Hostname()] != "sandbox" {
		p.addf("service %s: %s=%s names no sandbox service", name, config.EnvBaseURL, base)
		return
	}
	addr := flagValue(sb.Command, "addr")
	if port, err := listenPort(addr); err != nil || strconv.Itoa(port) != u.Port() {
		p.addf("service %s: %s port %s, but the sandbox listens on %q", name, config.EnvBaseURL, u.Port(), addr)
	}
	for v, flag := range map[string]string{config.EnvSID: "sid", config.EnvAPIKey: "api-key", config.EnvFrom: "senders"} {
		if got := flagValue(sb.Command, flag); !slices.Contains(strings.Split(got, ","), env[v]) {
			p.addf("service %s: %s=%q, but the sandbox runs with --%s %q", name, v, env[v], flag, got)
		}
	}
	if _, ok := f.Services[name].DependsOn[u.Hostname()]; !ok {
		p.addf("service %s does not depend on %s", name, u.Hostname())
	}
}

// checkComposeRedis checks the redis service: AOF on, /data on a volume, a redis-cli ping
// healthcheck for the others to wait on.
func checkComposeRedis(p *problems, f *composeFile) {
	redis, ok := f.Services["redis"]
	if !ok {
		p.addf("no redis service")
		return
	}
	if flagValue(redis.Command, "appendonly") != "yes" {
		p.addf("redis: AOF is off (want --appendonly yes)")
	}
	if !slices.ContainsFunc(redis.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/data") }) {
		p.addf("redis: /data is not on a volume")
	}
	if hc := redis.Healthcheck; hc == nil || !slices.Contains(hc.Test, "redis-cli") || !slices.Contains(hc.Test, "ping") {
		p.addf("redis: want a redis-cli ping healthcheck")
	}
	if len(redis.Ports) > 0 {
		p.addf("redis: publishes %v; a Redis already running on the host would clash, and nothing outside compose needs it (docker compose exec redis redis-cli)", redis.Ports)
	}
}

// checkComposeImagesAndPorts checks that every image is pinned to a version (not latest, not
// untagged), and that every published port binds 127.0.0.1 on a host port taken from a variable
// with a default, no two services on the same default.
func checkComposeImagesAndPorts(p *problems, f *composeFile) {
	hostPorts := map[string]string{} // default host port → service
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		s := f.Services[name]
		if _, tag, ok := strings.Cut(path.Base(s.Image), ":"); !ok || tag == "" || tag == "latest" {
			p.addf("service %s: image %q is not pinned to a version", name, s.Image)
		}
		for _, ps := range s.Ports {
			rest, ok := strings.CutPrefix(ps, "127.0.0.1:")
			i := strings.LastIndexByte(rest, ':')
			if !ok || i < 0 {
				p.addf("service %s: port %q does not bind 127.0.0.1", name, ps)
				continue
			}
			hostPart := rest[:i]
			if !strings.HasPrefix(hostPart, "${") {
				p.addf("service %s: host port %q is fixed; take it from a variable with a default (${…_PORT:-%s}) so a port in use can move", name, hostPart, hostPart)
			}
			host, err := interpolate(hostPart)
			if err != nil {
				p.addf("service %s: port %q: %v", name, ps, err)
				continue
			}
			if prev, ok := hostPorts[host]; ok {
				p.addf("services %s and %s both publish host port %s", prev, name, host)
			}
			hostPorts[host] = name
		}
	}
}

// The monitoring profile's files, and where compose mounts them.
const (
	composePromConfig = "deploy/monitoring/prometheus.yml"
	composeAlerts     = "deploy/monitoring/alerts.yaml"
	grafanaDashboard  = "deploy/monitoring/grafana/wabulk.json"
	grafanaProvision  = "deploy/monitoring/grafana/provisioning"
)

// promConfig is the part of a Prometheus configuration deploy/monitoring/prometheus.yml uses.
type promConfig struct {
	Global        map[string]string `yaml:"global"`
	RuleFiles     []string          `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		Authorization *struct {
			Type            string `yaml:"type"`
			CredentialsFile string `yaml:"credentials_file"`
		} `yaml:"authorization"`
		DNSSDConfigs []struct {
			Names           []string `yaml:"names"`
			Type            string   `yaml:"type"`
			Port            int      `yaml:"port"`
			RefreshInterval string   `yaml:"refresh_interval"`
		} `yaml:"dns_sd_configs"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// bindMounts maps the container paths a service bind-mounts to their sources.
func bindMounts(s composeService) map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
			out[parts[1]] = strings.TrimPrefix(parts[0], "./")
		}
	}
	return out
}

// checkComposeMonitoring checks the monitoring profile: Prometheus mounts prometheus.yml and the
// alert rules beside it and scrapes every worker replica and serve, with a token serve accepts,
// as the jobs the dashboard and rules select; Grafana mounts the provisioning and the dashboard.
func checkComposeMonitoring(p *problems, f *composeFile, subs map[string]string) {
	prom, okP := f.Services["prometheus"]
	graf, okG := f.Services["grafana"]
	if !okP || !okG || !slices.Contains(prom.Profiles, "monitoring") || !slices.Contains(graf.Profiles, "monitoring") {
		p.addf("want prometheus and grafana services in the profile monitoring")
		return
	}
	mounts := bindMounts(prom)
	if mounts["/etc/prometheus/prometheus.yml"] != composePromConfig || mounts["/etc/prometheus/alerts.yaml"] != composeAlerts {
		p.addf("prometheus: want %s and %s mounted at /etc/prometheus/", composePromConfig, composeAlerts)
	}
	for _, src := range mounts {
		if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
			p.addf("prometheus mounts %s: %v", src, err)
		}
	}
	b, err := readRepo(composePromConfig)
	if err != nil {
		p.add(err)
		return
	}
	var pc promConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&pc); err != nil {
		p.addf("%s: %v", composePromConfig, err)
		return
	}
	if !slices.Contains(pc.RuleFiles, "alerts.yaml") {
		p.addf("%s: rule_files lacks alerts.yaml", composePromConfig)
	}
	jobs := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		jobs[sc.JobName] = true
		switch sc.JobName {
		case workerJob:
			checkComposeWorkerScrape(p, f, subs, sc.DNSSDConfigs)
		case serveJob:
			checkComposeServeScrape(p, f, prom, sc.StaticConfigs, sc.Authorization)
		}
	}
	if !jobs[workerJob] || !jobs[serveJob] {
		p.addf("%s: want jobs %s and %s, the jobs the dashboard and rules select", composePromConfig, workerJob, serveJob)
	}
	gm := bindMounts(graf)
	if gm["/etc/grafana/provisioning"] != grafanaProvision || gm["/etc/grafana/dashboards/wabulk.json"] != grafanaDashboard {
		p.addf("grafana: want %s at /etc/grafana/provisioning and %s at /etc/grafana/dashboards/", grafanaProvision, grafanaDashboard)
	}
	for _, src := range gm {
		if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
			p.addf("grafana mounts %s: %v", src, err)
		}
	}
}

// checkComposeWorkerScrape checks that the worker job finds every worker replica by the service
// name, on the port WABULK_METRICS_ADDR listens on.
func checkComposeWorkerScrape(p *problems, f *composeFile, subs map[string]string, sds []struct {
	Names           []string `yaml:"names"`
	Type            string   `yaml:"type"`
	Port            int      `yaml:"port"`
	RefreshInterval string   `yaml:"refresh_interval"`
}) {
	for name, sub := range subs {
		if sub != "worker" {
			continue
		}
		cfg, err := loadConfig(composeEnv(&problems{}, name, f.Services[name]))
		if err != nil {
			return
		}
		_, port, _ := servedPort("worker", cfg)
		if !slices.ContainsFunc(sds, func(sd struct {
			Names           []string `yaml:"names"`
			Type            string   `yaml:"type"`
			Port            int      `yaml:"port"`
			RefreshInterval string   `yaml:"refresh_interval"`
		}) bool {
			return slices.Contains(sd.Names, name) && sd.Port == port && sd.Type == "A"
		}) {
			p.addf("%s: job %s does not find service %s's replicas by DNS (type A) on port %d", composePromConfig, workerJob, name, port)
		}
	}
}

// checkComposeServeScrape checks that the serve job scrapes serve's port with a bearer token
// read from a compose config whose content is one of serve's WABULK_API_TOKENS.
func checkComposeServeScrape(p *problems, f *composeFile, prom composeService, statics []struct {
	Targets []string `yaml:"targets"`
}, auth *struct {
	Type            string `yaml:"type"`
	CredentialsFile string `yaml:"credentials_file"`
}) {
	serve := f.Services["serve"]
	cfg, err := loadConfig(composeEnv(&problems{}, "serve", serve))
	if err != nil {
		return
	}
	_, port, _ := servedPort("serve", cfg)
	if !slices.ContainsFunc(statics, func(sc struct {
		Targets []string `yaml:"targets"`
	}) bool {
		return slices.Contains(sc.Targets, "serve:"+strconv.Itoa(port))
	}) {
		p.addf("%s: job %s does not scrape serve:%d", composePromConfig, serveJob, port)
	}
	if auth == nil || auth.Type != "Bearer" || auth.CredentialsFile == "" {
		p.addf("%s: job %s sends no bearer token; serve's /metrics needs one", composePromConfig, serveJob)
		return
	}
	target := path.Join("/etc/prometheus", auth.CredentialsFile)
	i := slices.IndexFunc(prom.Configs, func(c struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	}) bool {
		return c.Target == target
	})
	if i < 0 {
		p.addf("prometheus: no config is mounted at %s, the token file of job %s", target, serveJob)
		return
	}
	token, err := interpolate(f.Configs[prom.Configs[i].Source].Content)
	if err != nil || token == "" {
		p.addf("config %s: no token (%v)", prom.Configs[i].Source, err)
		return
	}
	if !slices.ContainsFunc(cfg.APITokens, func(s config.Secret) bool { return s.Reveal() == token }) {
		p.addf("config %s: the token Prometheus sends is not one of serve's %s", prom.Configs[i].Source, config.EnvAPITokens)
	}
}

func TestCompose(t *testing.T) {
	checkShipped(t, composeFileName, checkCompose)
}

func TestComposeCheckerCatchesMistakes(t *testing.T) {
	checkMistakes(t, composeFileName, checkCompose, []mistake{
		{"misspelt variable", "WABULK_CONCURRENCY:", "WABULK_CONCURENCY:", "WABULK_CONCURENCY"},
		{"unknown subcommand", `command: ["serve"]`, `command: ["server"]`, "server"},
		{"misspelt field", "stop_grace_period:", "stop_grace_periode:", "stop_grace_periode"},
		{"grace period within the shutdown timeout", "stop_grace_period: 45s", "stop_grace_period: 20s", "stop_grace_period"},
		{"worker and sandbox disagree on the SID", "KALEYRA_SID: HXSANDBOX00001", "KALEYRA_SID: HXOTHER", "--sid"},
		{"sandbox on another port", "KALEYRA_BASE_URL: http://sandbox:8089", "KALEYRA_BASE_URL: http://sandbox:9999", "sandbox listens"},
		{"serve's port not published", `"127.0.0.1:${WABULK_PORT:-8080}:8080"`, `"127.0.0.1:${WABULK_PORT:-8080}:8000"`, "do not publish"},
		{"AOF off", `"--appendonly", "yes"`, `"--appendonly", "no"`, "AOF"},
		{"serve does not wait for redis", "      - \"127.0.0.1:${WABULK_PORT:-8080}:8080\"\n    depends_on:\n      redis:\n        condition: service_healthy\n",
			"      - \"127.0.0.1:${WABULK_PORT:-8080}:8080\"\n", "wait for redis"},
		{"variable without a default", "${WABULK_API_TOKENS:-dev-token-change-me-0123456789}", "${WABULK_API_TOKENS}", "has no default"},
		{"Redis published on the host", "      - redis-data:/data\n", "      - redis-data:/data\n    ports:\n      - \"127.0.0.1:${WABULK_REDIS_PORT:-6379}:6379\"\n", "redis: publishes"},
		{"image not pinned", "image: grafana/grafana:12.1.1", "image: grafana/grafana:latest", "not pinned"},
		{"image without a tag", "image: prom/prometheus:v3.5.0", "image: prom/prometheus", "not pinned"},
		{"port on every interface", `"127.0.0.1:${WABULK_GRAFANA_PORT:-3000}:3000"`, `"${WABULK_GRAFANA_PORT:-3000}:3000"`, "does not bind 127.0.0.1"},
		{"fixed host port", `"127.0.0.1:${WABULK_GRAFANA_PORT:-3000}:3000"`, `"127.0.0.1:3000:3000"`, "is fixed"},
		{"two services on one host port", `"127.0.0.1:${WABULK_GRAFANA_PORT:-3000}:3000"`, `"127.0.0.1:${WABULK_GRAFANA_PORT:-8080}:3000"`, "both publish host port 8080"},
		{"Prometheus scrapes with a token serve refuses", "${WABULK_METRICS_TOKEN:-metrics-token-change-me-0123456789}\n\nvolumes", "${WABULK_METRICS_TOKEN:-another-token-0123456789}\n\nvolumes", "not one of serve's"},
		{"Prometheus without the rules", "      - ./deploy/monitoring/alerts.yaml:/etc/prometheus/alerts.yaml:ro\n", "", "mounted at /etc/prometheus/"},
		{"Grafana without the dashboard", "./deploy/monitoring/grafana/wabulk.json:", "./deploy/monitoring/grafana/dashboard.json:", "grafana"},
	})
}
