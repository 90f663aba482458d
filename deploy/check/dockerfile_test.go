package check

// Tests of deploy/Dockerfile: parsed into stages, then the build stage is checked for how it
// builds wabulk and the runtime stage for what it runs and as whom.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const dockerfileName = "deploy/Dockerfile"

// dockerInstruction is one Dockerfile instruction with its continuation lines joined.
type dockerInstruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, USER, ENTRYPOINT, …
	args string
}

// dockerStage is one FROM and the instructions after it.
type dockerStage struct {
	image, name string
	ins         []dockerInstruction
}

// parseDockerfile splits a Dockerfile into instructions: comments and blank lines dropped,
// backslash continuations joined (comment lines inside a continuation are skipped, as Docker does).
func parseDockerfile(data []byte) ([]dockerInstruction, error) {
	var out []dockerInstruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, errors.New("the last instruction ends in a continuation")
	}
	return out, nil
}

// splitStages groups instructions by the FROM they follow; only ARG may come before the first.
func splitStages(ins []dockerInstruction) ([]*dockerStage, error) {
	var stages []*dockerStage
	var errs []error
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			f := slices.DeleteFunc(strings.Fields(in.args), func(s string) bool { return strings.HasPrefix(s, "--") })
			if len(f) == 0 {
				errs = append(errs, fmt.Errorf("line %d: FROM names no image", in.line))
				continue
			}
			st := &dockerStage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
		case len(stages) > 0:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		case in.cmd != "ARG":
			errs = append(errs, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd))
		}
	}
	return stages, errors.Join(errs...)
}

// execForm decodes an exec-form (JSON array) argument such as ["/usr/local/bin/wabulk"].
func execForm(args string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		return nil, fmt.Errorf("want exec form [\"…\"], got %s", args)
	}
	return out, nil
}

func checkDockerfile(data []byte, w cli) error {
	ins, err := parseDockerfile(data)
	if err != nil {
		return err
	}
	var p problems
	stages, err := splitStages(ins)
	p.add(err)
	if len(stages) < 2 {
		p.addf("want a multi-stage build, got %d stage(s)", len(stages))
		return p.err()
	}
	binary := checkBuildStages(&p, stages[:len(stages)-1])
	checkRuntimeStage(&p, w, stages[len(stages)-1], binary)
	return p.err()
}

// checkBuildStages checks the go build of ./cmd/wabulk: cgo off, trimmed paths, the version
// stamped. It returns the path go build writes the binary to.
func checkBuildStages(p *problems, stages []*dockerStage) (binary string) {
	built := false
	for _, st := range stages {
		for _, in := range st.ins {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			built = true
			f := strings.Fields(in.args)
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/wabulk"} {
				if !slices.Contains(f, want) {
					p.addf("line %d: go build lacks %s", in.line, want)
				}
			}
			if !strings.Contains(in.args, "-X main.version=") {
				p.addf("line %d: go build does not stamp -X main.version", in.line)
			}
			if i := slices.Index(f, "-o"); i >= 0 && i+1 < len(f) {
				binary = f[i+1]
			}
		}
	}
	if !built {
		p.addf("no build stage runs go build")
	}
	return binary
}

// runtimeStage is what the last stage sets.
type runtimeStage struct {
	user, entry string
	cmd         []string
	copied      map[string]string // destination → source, of COPY --from
}

// readRuntimeStage collects what the runtime stage sets, reporting any command it runs.
func readRuntimeStage(p *problems, st *dockerStage) runtimeStage {
	rt := runtimeStage{copied: map[string]string{}}
	for _, in := range st.ins {
		switch in.cmd {
		case "USER":
			rt.user = in.args
		case "ENTRYPOINT":
			e, err := execForm(in.args)
			if err != nil || len(e) != 1 {
				p.addf("line %d: ENTRYPOINT: want [\"…/wabulk\"]: %v", in.line, err)
				continue
			}
			rt.entry = e[0]
		case "CMD":
			var err error
			if rt.cmd, err = execForm(in.args); err != nil {
				p.addf("line %d: CMD: %v", in.line, err)
			}
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) >= 3 && strings.HasPrefix(f[0], "--from=") {
				rt.copied[f[len(f)-1]] = f[len(f)-2]
			}
		case "RUN":
			p.addf("line %d: the runtime stage runs commands; keep it to the binary", in.line)
		}
	}
	return rt
}

// checkRuntimeStage checks the image that ships: a numeric non-root user, the binary go build
// wrote as the entrypoint, a wabulk subcommand as the default CMD, a minimal base with CA
// certificates.
func checkRuntimeStage(p *problems, w cli, st *dockerStage, binary string) {
	rt := readRuntimeStage(p, st)
	uid, _, _ := strings.Cut(rt.user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		p.addf("runtime USER %q: want a numeric non-root uid (Kubernetes' runAsNonRoot checks it)", rt.user)
	}
	if path.Base(rt.entry) != "wabulk" {
		p.addf("ENTRYPOINT %q is not wabulk", rt.entry)
	} else if binary == "" || rt.copied[rt.entry] != binary {
		p.addf("ENTRYPOINT %s is not the binary go build wrote (%s)", rt.entry, binary)
	}
	if _, err := w.subcommand(rt.cmd); err != nil {
		p.addf("CMD: %v", err)
	}
	if !strings.Contains(st.image, "distroless/static") && !strings.Contains(st.image, "alpine") {
		p.addf("runtime image %s: want distroless static or alpine (with CA certificates)", st.image)
	}
}

func TestDockerfile(t *testing.T) {
	checkShipped(t, dockerfileName, checkDockerfile)
}

func TestDockerfileCheckerCatchesMistakes(t *testing.T) {
	checkMistakes(t, dockerfileName, checkDockerfile, []mistake{
		{"cgo on", "CGO_ENABLED=0", "CGO_ENABLED=1", "CGO_ENABLED=0"},
		{"root", "USER 65532:65532", "USER 0", "non-root"},
		{"named user", "USER 65532:65532", "USER nonroot", "non-root"},
		{"another package", "./cmd/wabulk", "./cmd/other", "./cmd/wabulk"},
		{"no version", "-X main.version=${VERSION}", "", "main.version"},
		{"unknown default subcommand", `CMD ["worker"]`, `CMD ["work"]`, "work"},
		{"entrypoint in shell form", `ENTRYPOINT ["/usr/local/bin/wabulk"]`, `ENTRYPOINT /usr/local/bin/wabulk`, "ENTRYPOINT"},
		{"entrypoint not the built binary", "COPY --from=build /out/wabulk /usr/local/bin/wabulk", "COPY --from=build /out/other /usr/local/bin/wabulk", "not the binary go build wrote"},
		{"a command in the runtime stage", "USER 65532:65532", "RUN true\nUSER 65532:65532", "runs commands"},
		{"single stage", "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build\n", "", "multi-stage"},
	})
}

// TestDockerfileStampsVersion builds ./cmd/wabulk with the -ldflags of the Dockerfile's go build
// and runs `wabulk version`: -X main.version silently stamps nothing when package main has no
// string variable named version, and no Docker daemon is needed to see it.
func TestDockerfileStampsVersion(t *testing.T) {
	b, err := readRepo(dockerfileName)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := parseDockerfile(b)
	if err != nil {
		t.Fatal(err)
	}
	var ldflags string
	re := regexp.MustCompile(`go build .*-ldflags "([^"]*)"`)
	for _, in := range ins {
		if m := re.FindStringSubmatch(in.args); in.cmd == "RUN" && m != nil {
			ldflags = m[1]
		}
	}
	const v = "deploy-check"
	if !strings.Contains(ldflags, "-X main.version=${VERSION}") {
		t.Fatalf("%s: no go build -ldflags \"… -X main.version=${VERSION}\" (got %q)", dockerfileName, ldflags)
	}
	bin := filepath.Join(t.TempDir(), "wabulk")
	build := exec.Command("go", "build", "-ldflags", strings.ReplaceAll(ldflags, "${VERSION}", v), "-o", bin, "./cmd/wabulk")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "wabulk "+v {
		t.Fatalf("wabulk version: %v: %q, want %q", err, out, "wabulk "+v)
	}
}

// TestDockerfileImageRunsVersion builds the image as deploy/README.md says and runs
// `wabulk version` in it, when a Docker daemon answers. The build pulls the base images, so
// without a daemon, or without access to their registry, it skips and says why.
func TestDockerfileImageRunsVersion(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("SKIPPED: no docker on PATH; the image is checked statically by TestDockerfile")
	}
	if out, err := exec.Command(docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: docker is installed but no daemon answers (%v: %s); the image is checked statically by TestDockerfile",
			err, bytes.TrimSpace(out))
	}
	if testing.Short() {
		t.Skip("SKIPPED in -short: building the image takes minutes")
	}
	v := fmt.Sprintf("test-%d", time.Now().UnixNano())
	tag := "wabulk-deploy-test:" + v
	build := exec.Command(docker, "build", "-f", dockerfileName, "--build-arg", "VERSION="+v, "-t", tag, ".")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		if pullFailed(out) {
			t.Skipf("SKIPPED: the build could not pull its base images (no registry access here):\n%s", tail(out, 20))
		}
		t.Fatalf("docker build: %v\n%s", err, tail(out, 40))
	}
	defer exec.Command(docker, "rmi", "-f", tag).Run()
	out, err := exec.Command(docker, "run", "--rm", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", tag, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "wabulk "+v {
		t.Fatalf("docker run %s version: %v: %q, want %q", tag, err, out, "wabulk "+v)
	}
}

// pullFailed reports whether a docker build failed fetching an image rather than building.
func pullFailed(out []byte) bool {
	s := strings.ToLower(string(out))
	for _, m := range []string{"failed to resolve source metadata", "pull access denied", "failed to do request",
		"error pulling image", "dial tcp", "no such host", "tls handshake timeout"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
