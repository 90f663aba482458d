package main

// Tests of docker-compose.yml: decoded strictly into the structs below, then each wabulk service
// is checked against the program (variables, subcommand, ports, grace period), the workers
// against the sandbox they talk to, and the Redis and asynqmon services against what the rest
// expects of them.

import (
	"bytes"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
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
func checkCompose(data []byte, root *cobra.Command) error {
	f, err := decodeCompose(data)
	if err != nil {
		return err
	}
	var p problems
	subs := map[string]string{} // service → wabulk subcommand
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		checkComposeDependsOn(&p, f, name)
		checkComposeVolumes(&p, f, name)
		if sub, ok := checkComposeWabulk(&p, root, name, f.Services[name]); ok {
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
	checkComposeAsynqmon(&p, f)
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
func checkComposeWabulk(p *problems, root *cobra.Command, name string, s composeService) (string, bool) {
	if s.Build == nil {
		return "", false // not the wabulk image
	}
	sn := "service " + name
	if s.Build.Dockerfile != "deploy/Dockerfile" || s.Build.Context != "." {
		p.addf("%s builds %s/%s, want deploy/Dockerfile from the repository root", sn, s.Build.Context, s.Build.Dockerfile)
	}
	sub, err := subcommandOf(root, s.Command)
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
}

// checkComposeAsynqmon checks the optional asynqmon service: the official image, in the monitor
// profile, pointed at the redis service.
func checkComposeAsynqmon(p *problems, f *composeFile) {
	mon, ok := f.Services["asynqmon"]
	switch {
	case !ok:
		p.addf("no asynqmon service")
	case !strings.HasPrefix(mon.Image, "hibiken/asynqmon"):
		p.addf("asynqmon: image %q is not the official hibiken/asynqmon", mon.Image)
	case !slices.Contains(mon.Profiles, "monitor"):
		p.addf("asynqmon: want it in the optional profile monitor")
	case flagValue(mon.Command, "redis-addr") != "redis:6379":
		p.addf("asynqmon: --redis-addr %q is not the redis service", flagValue(mon.Command, "redis-addr"))
	}
}

func TestCompose(t *testing.T) {
	b, err := readRepo(composeFileName)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkCompose(b, newRootCmd()); err != nil {
		t.Fatalf("%s:\n%v", composeFileName, err)
	}
}

func TestComposeCheckerCatchesMistakes(t *testing.T) {
	for _, tc := range []struct{ name, old, new, want string }{
		{"misspelt variable", "WABULK_CONCURRENCY:", "WABULK_CONCURENCY:", "WABULK_CONCURENCY"},
		{"unknown subcommand", `command: ["serve"]`, `command: ["server"]`, "server"},
		{"misspelt field", "stop_grace_period:", "stop_grace_periode:", "stop_grace_periode"},
		{"grace period within the shutdown timeout", "stop_grace_period: 45s", "stop_grace_period: 20s", "stop_grace_period"},
		{"worker and sandbox disagree on the SID", "KALEYRA_SID: HXSANDBOX00001", "KALEYRA_SID: HXOTHER", "--sid"},
		{"sandbox on another port", "KALEYRA_BASE_URL: http://sandbox:8089", "KALEYRA_BASE_URL: http://sandbox:9999", "sandbox listens"},
		{"serve's port not published", `"127.0.0.1:8080:8080"`, `"127.0.0.1:8080:8000"`, "do not publish"},
		{"AOF off", `"--appendonly", "yes"`, `"--appendonly", "no"`, "AOF"},
		{"serve does not wait for redis", "      WABULK_API_TOKENS: ${WABULK_API_TOKENS:-dev-token-change-me-0123456789}\n    ports:\n      - \"127.0.0.1:8080:8080\"\n    depends_on:\n      redis:\n        condition: service_healthy\n",
			"      WABULK_API_TOKENS: ${WABULK_API_TOKENS:-dev-token-change-me-0123456789}\n    ports:\n      - \"127.0.0.1:8080:8080\"\n", "wait for redis"},
		{"variable without a default", "${WABULK_API_TOKENS:-dev-token-change-me-0123456789}", "${WABULK_API_TOKENS}", "has no default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := mutate(t, composeFileName, tc.old, tc.new)(composeFileName)
			if err != nil {
				t.Fatal(err)
			}
			wantError(t, checkCompose(b, newRootCmd()), tc.want)
		})
	}
}
