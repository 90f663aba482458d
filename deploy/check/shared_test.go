package check

// Helpers shared by the tests of what ships in deploy/ and docker-compose.yml (k8s_test.go,
// compose_test.go, dockerfile_test.go). No Docker engine or cluster runs where these tests run,
// so each file is decoded strictly (an unknown or misspelt field fails) and checked against the
// program itself: config.Vars and config.Load, the subcommands of the wabulk binary, the ports and
// probe paths the program serves.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/config"
	"github.com/wabulk/wabulk/internal/proctest"
)

// repoRoot is where deploy/ and docker-compose.yml live, seen from this package's directory.
const repoRoot = "../.."

// The paths `wabulk worker` (on WABULK_METRICS_ADDR) and `wabulk serve` (on WABULK_ADDR) serve:
// liveness, readiness and Prometheus metrics.
const (
	livenessPath  = "/healthz"
	readinessPath = "/readyz"
	metricsPath   = "/metrics"
)

// requiredEnv lists, per subcommand, the variables a deployment must set; each entry is a set of
// alternatives, one of which must be present.
var requiredEnv = map[string][][]string{
	"worker": {{config.EnvSID}, {config.EnvAPIKey, config.EnvAPIKeyFile}, {config.EnvFrom}, {config.EnvRedisURL}},
	"serve":  {{config.EnvAPITokens}, {config.EnvRedisURL}},
}

// readFunc reads a file by its slash path relative to the repository root; tests swap it to feed
// the checkers a modified file.
type readFunc func(name string) ([]byte, error)

func readRepo(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(name)))
}

// mutate returns a readFunc that serves file with old replaced by new (which must be there).
func mutate(t *testing.T, file, old, new string) readFunc {
	t.Helper()
	b, err := readRepo(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q: update the test", file, old)
	}
	changed := bytes.Replace(b, []byte(old), []byte(new), 1)
	return func(name string) ([]byte, error) {
		if name == file {
			return changed, nil
		}
		return readRepo(name)
	}
}

// problems collects what a checker finds, so that one run reports every mistake, not the first.
type problems []error

func (p *problems) addf(format string, a ...any) { *p = append(*p, fmt.Errorf(format, a...)) }

func (p *problems) add(errs ...error) {
	for _, err := range errs {
		if err != nil {
			*p = append(*p, err)
		}
	}
}

func (p problems) err() error { return errors.Join(p...) }

func knownVar(name string) bool { return slices.Contains(config.Vars, name) }

// cli is the wabulk binary, which the checkers ask what subcommand a container's args or a compose
// command run. Package main cannot be imported, so they run it rather than walk its commands.
type cli struct{ bin string }

// newCLI returns the binary internal/proctest builds from ./cmd/wabulk (once per test process).
func newCLI(t testing.TB) cli { return cli{bin: proctest.Binary(t)} }

// resolved caches subcommand's answers by args: the overlays run the same few commands.
var resolved sync.Map // string → subcommandResult

type subcommandResult struct {
	name string
	err  error
}

// subcommand returns the subcommand that args (a container's args, or a compose command) run,
// checking it is one wabulk has and, where that subcommand defines flags, that they parse. It
// runs `wabulk --help=true args…`: cobra finds the subcommand and parses its flags as it would to
// run it, then prints its usage instead ("Usage:\n  wabulk worker [flags]") and exits 0. The
// subcommand's path is the words that usage line and args's words other than flags begin with
// alike (wabulk's commands have no aliases).
func (w cli) subcommand(args []string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("no subcommand given (the image's CMD would be used; name it explicitly)")
	}
	key := strings.Join(args, "\x00")
	if r, ok := resolved.Load(key); ok {
		return r.(subcommandResult).name, r.(subcommandResult).err
	}
	name, err := w.resolve(args)
	resolved.Store(key, subcommandResult{name, err})
	return name, err
}

func (w cli) resolve(args []string) (string, error) {
	// A subcommand that ignored --help would run: the timeout ends it rather than the test.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"--help=true"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			return "", err
		}
		msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("wabulk %s: %s", strings.Join(args, " "), strings.TrimPrefix(msg, "wabulk: "))
	}
	_, usage, ok := strings.Cut(stdout.String(), "Usage:\n")
	usage, _, _ = strings.Cut(usage, "\n")
	words := strings.Fields(usage)
	if !ok || len(words) == 0 || words[0] != "wabulk" {
		return "", fmt.Errorf("wabulk --help=true %s: no usage line in %q", strings.Join(args, " "), stdout.String())
	}
	name := ""
	for i, a := range slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, "-") }) {
		if i+1 >= len(words) || words[i+1] != a {
			break
		}
		name = a
	}
	if name == "" {
		return "", fmt.Errorf("%q is not a wabulk subcommand", args[0])
	}
	return name, nil
}

// checkRequired reports required variables of subcommand that env lacks.
func checkRequired(subcommand string, env map[string]string) []error {
	var errs []error
	for _, alts := range requiredEnv[subcommand] {
		if !slices.ContainsFunc(alts, func(v string) bool { _, ok := env[v]; return ok }) {
			errs = append(errs, fmt.Errorf("wabulk %s needs %s set", subcommand, strings.Join(alts, " or ")))
		}
	}
	return errs
}

// loadConfig runs config.Load over env, leaving out the variables that name files which exist
// only inside the container (they are checked against the mounts instead).
func loadConfig(env map[string]string) (config.Config, error) {
	return config.Load(func(k string) (string, bool) {
		v, ok := env[k]
		if k == config.EnvAPIKeyFile || (k == config.EnvAPITokens && strings.HasPrefix(v, "@")) {
			return "", false
		}
		return v, ok
	})
}

// listenPort is the port of a Go listen address such as ":9090" or "0.0.0.0:8089".
func listenPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// servedPort returns the variable that sets the address the subcommand serves its probes and
// metrics on, and that address's port.
func servedPort(subcommand string, cfg config.Config) (string, int, error) {
	name, addr := config.EnvMetricsAddr, cfg.MetricsAddr
	if subcommand == "serve" {
		name, addr = config.EnvAddr, cfg.Addr
	}
	p, err := listenPort(addr)
	if err != nil {
		return name, 0, fmt.Errorf("%s=%q: %v", name, addr, err)
	}
	return name, p, nil
}

// fileChecker checks one shipped file's bytes against the program.
type fileChecker func(b []byte, w cli) error

// checkShipped fails t with what check finds in the repository's file.
func checkShipped(t *testing.T, file string, check fileChecker) {
	t.Helper()
	b, err := readRepo(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(b, newCLI(t)); err != nil {
		t.Fatalf("%s:\n%v", file, err)
	}
}

// mistake is one deliberate edit of a shipped file and what its checker's error must mention.
type mistake struct{ name, old, new, want string }

// checkMistakes requires check to reject file with each mistake made in it.
func checkMistakes(t *testing.T, file string, check fileChecker, mistakes []mistake) {
	for _, m := range mistakes {
		t.Run(m.name, func(t *testing.T) {
			b, err := mutate(t, file, m.old, m.new)(file)
			if err != nil {
				t.Fatal(err)
			}
			wantError(t, check(b, newCLI(t)), m.want)
		})
	}
}

// wantError fails t unless err mentions want: the CheckerCatchesMistakes tests use it to prove a
// checker rejects a deliberate mistake.
func wantError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v, want one mentioning %q", err, want)
	}
}
