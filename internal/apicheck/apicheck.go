// Package apicheck checks wabulk's public Go API from outside: no exported name of a public
// package may mention an internal type (another module could not use it), and the example
// module in examples/ must build and run against the real packages.
package apicheck

import (
	"fmt"
	"go/types"
	"slices"
	"strings"
)

// InternalUses lists every exported name of pkg whose type reaches a type of an internal package
// (a path holding "/internal/" or ending in "/internal"), as "Name: internal/pkg.Type". It
// follows signatures, exported struct fields, interface methods, the exported methods of the
// package's own types and type parameters' constraints; types of other public packages are
// checked where they are declared.
func InternalUses(pkg *types.Package) []string {
	var out []string
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		obj := scope.Lookup(name)
		if !obj.Exported() {
			continue
		}
		w := walker{home: pkg, seen: map[types.Type]bool{}}
		switch o := obj.(type) {
		case *types.TypeName:
			w.typ(types.Unalias(o.Type()), true)
		default:
			w.typ(o.Type(), false)
		}
		for _, f := range w.found {
			out = append(out, name+": "+f)
		}
	}
	return out
}

type walker struct {
	home  *types.Package
	seen  map[types.Type]bool
	found []string
}

func internalPath(path string) bool {
	return strings.Contains(path, "/internal/") || strings.HasSuffix(path, "/internal")
}

// typ walks t. declared is true for a type the package itself declares: its underlying type and
// exported methods are part of the API.
func (w *walker) typ(t types.Type, declared bool) {
	if t == nil || w.seen[t] {
		return
	}
	w.seen[t] = true
	switch t := t.(type) {
	case *types.Alias:
		w.typ(types.Unalias(t), false)
	case *types.Named:
		obj := t.Obj()
		if obj.Pkg() != nil && internalPath(obj.Pkg().Path()) {
			f := fmt.Sprintf("%s.%s", obj.Pkg().Path(), obj.Name())
			if !slices.Contains(w.found, f) {
				w.found = append(w.found, f)
			}
			return
		}
		if ta := t.TypeArgs(); ta != nil {
			for i := range ta.Len() {
				w.typ(ta.At(i), false)
			}
		}
		if !declared || obj.Pkg() != w.home {
			return // another package's type: checked where it is declared
		}
		if tp := t.TypeParams(); tp != nil {
			for i := range tp.Len() {
				w.typ(tp.At(i).Constraint(), false)
			}
		}
		w.typ(t.Underlying(), false)
		for i := range t.NumMethods() {
			if m := t.Method(i); m.Exported() {
				w.typ(m.Type(), false)
			}
		}
	case *types.Pointer:
		w.typ(t.Elem(), false)
	case *types.Slice:
		w.typ(t.Elem(), false)
	case *types.Array:
		w.typ(t.Elem(), false)
	case *types.Map:
		w.typ(t.Key(), false)
		w.typ(t.Elem(), false)
	case *types.Chan:
		w.typ(t.Elem(), false)
	case *types.Signature:
		if tp := t.TypeParams(); tp != nil {
			for i := range tp.Len() {
				w.typ(tp.At(i).Constraint(), false)
			}
		}
		w.tuple(t.Params())
		w.tuple(t.Results())
	case *types.Struct:
		for i := range t.NumFields() {
			if f := t.Field(i); f.Exported() || f.Embedded() {
				w.typ(f.Type(), false)
			}
		}
	case *types.Interface:
		for i := range t.NumMethods() {
			if m := t.Method(i); m.Exported() {
				w.typ(m.Type(), false)
			}
		}
		for i := range t.NumEmbeddeds() {
			w.typ(t.EmbeddedType(i), false)
		}
	case *types.Union:
		for i := range t.Len() {
			w.typ(t.Term(i).Type(), false)
		}
	case *types.TypeParam:
		w.typ(t.Constraint(), false)
	}
}

func (w *walker) tuple(t *types.Tuple) {
	for i := range t.Len() {
		w.typ(t.At(i).Type(), false)
	}
}
