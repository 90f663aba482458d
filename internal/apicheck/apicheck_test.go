package apicheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wabulk/wabulk/internal/redistest"
	"github.com/wabulk/wabulk/internal/sandbox"
)

const module = "github.com/wabulk/wabulk"

// listed is what `go list -export` says of one package.
type listed struct {
	ImportPath, Name, Export string
	Standard                 bool
}

// loadModule type-checks the module's packages from the compiler's export data (as another
// module importing them would see them) and returns every package by path.
func loadModule(t *testing.T) map[string]*types.Package {
	t.Helper()
	cmd := exec.Command("go", "list", "-export", "-deps", "-json=ImportPath,Name,Export,Standard", module+"/...")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	exports := map[string]string{}
	var ours []listed
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		exports[p.ImportPath] = p.Export
		if p.ImportPath == module || strings.HasPrefix(p.ImportPath, module+"/") {
			ours = append(ours, p)
		}
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, errors.New("no export data for " + path)
		}
		return os.Open(f)
	}).(types.ImporterFrom)
	pkgs := map[string]*types.Package{}
	for _, p := range ours {
		if p.Name == "main" || p.Export == "" { // a command, or a package of tests only
			continue
		}
		pkg, err := imp.ImportFrom(p.ImportPath, "", 0)
		if err != nil {
			t.Fatalf("import %s: %v", p.ImportPath, err)
		}
		pkgs[p.ImportPath] = pkg
	}
	return pkgs
}

// TestPublicAPIHasNoInternalTypes: every exported name of a public package can be used from
// another module, because none of them mentions an internal type.
func TestPublicAPIHasNoInternalTypes(t *testing.T) {
	pkgs := loadModule(t)
	var public []string
	for path, pkg := range pkgs {
		if internalPath(path) {
			continue
		}
		public = append(public, path)
		for _, use := range InternalUses(pkg) {
			t.Errorf("%s.%s", path, use)
		}
	}
	for _, want := range []string{module + "/producer", module + "/worker", module + "/job"} {
		if _, ok := pkgs[want]; !ok {
			t.Errorf("public package %s not found (public: %v)", want, public)
		}
	}
	// The check can fail: an internal package whose API shows other internal types is caught.
	if uses := InternalUses(pkgs[module+"/internal/ops"]); len(uses) == 0 {
		t.Error("no internal type found in internal/ops's API, which shows store.Counts: the check is blind")
	}
}

// TestExampleModuleRuns builds and runs examples/campaign, a separate module that uses wabulk
// only through its public packages, against a real Redis and the sandbox, and checks that every
// valid recipient was sent exactly once.
func TestExampleModuleRuns(t *testing.T) {
	rs := redistest.StartWith(t, redistest.Options{TCP: true})
	sb, err := sandbox.Start(sandbox.Config{Balance: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./campaign", "-redis", rs.Addr, "-kaleyra-url", sb.URL,
		"-sid", sandbox.DefaultSID, "-key", sandbox.DefaultAPIKey, "-from", "+"+sandbox.DefaultSender)
	cmd.Dir = "../../examples"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./campaign: %v\n%s", err, out)
	}
	for _, want := range []string{"enqueued 2, duplicates 0, rejected 1", "campaign welcome: sent 4, dead 0 of 4"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	st := sb.Stats()
	if st.Accepted != 4 || len(st.Duplicates()) != 0 {
		t.Errorf("sandbox accepted %d (duplicates %v), want 4 distinct", st.Accepted, st.Duplicates())
	}
}

// TestServeDoesNotLinkTestWorlds: the HTTP API (`wabulk serve`) links neither the embedded Redis
// (miniredis) nor the fake Kaleyra: those belong to `wabulk send`, the demo and the tests.
func TestServeDoesNotLinkTestWorlds(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", module+"/internal/httpapi").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/producer") {
		t.Fatalf("go list -deps lists no producer: %v", deps)
	}
	for _, bad := range []string{"github.com/alicebob/miniredis/v2", module + "/internal/sandbox", module + "/internal/embedded", module + "/internal/inprocess"} {
		if slices.Contains(deps, bad) {
			t.Errorf("internal/httpapi links %s", bad)
		}
	}
}
