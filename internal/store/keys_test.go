package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestKeyTableMatchesTheKeyBuilders holds docs/design.md's "Redis keys" table and keys.go to each
// other: every key a builder of keys.go makes is a row of the table, every row is made by a
// builder, and every builder of keys.go is called here.
func TestKeyTableMatchesTheKeyBuilders(t *testing.T) {
	// Sample arguments are the table's placeholders: N the namespace, S a lane, C a campaign
	// scope (<N>:<campaign>), <…> a value.
	l := &Ledger{queue: "N"}
	const campaign = "cmp" // campaign scope "N:cmp", written C
	one := func(k string) []string { return []string{k} }
	built := map[string][]string{
		"countsKey":             one(countsKey("S")),
		"deadKey":               one(deadKey("S")),
		"deadCodesKey":          one(deadCodesKey("S")),
		"dlvKey":                one(dlvKey("S")),
		"failCodesKey":          one(failCodesKey("S")),
		"suppressingKey":        one(suppressingKey("S")),
		"cancelledKey":          one(cancelledKey("S")),
		"liveKey":               one(liveKey("S")),
		"cancelledJobsKey":      one(cancelledJobsKey("S")),
		"keys":                  keys("S"),
		"recentKey":             one(recentKey("S")),
		"ReconcileMark":         one(l.ReconcileMark("S")),
		"migratedKey":           one(migratedKey("S")),
		"campaignSuppressedKey": one(l.campaignSuppressedKey(campaign)),
		"campaignsKey":          one(l.campaignsKey()),
		"campaignKey":           one(l.campaignKey("<id>")),
		"stateKey":              one(l.stateKey("<id>")),
		"activeKey":             one(l.activeKey()),
		"finishedKey":           one(l.finishedKey()),
		"scheduledKey":          one(l.scheduledKey()),
		"lanesInfoKey":          one(l.lanesInfoKey()),
		"lanesLiveKey":          one(l.lanesLiveKey()),
		"lanesDoneKey":          one(l.lanesDoneKey()),
		"pausedLanesKey":        one(l.pausedLanesKey()),
		"lanesChannel":          one(l.lanesChannel()),
		"dueKey":                one(l.dueKey()),
		"leasedKey":             one(l.leasedKey()),
		"callbacksKey":          one(l.callbacksKey()),
		"suppressedKey":         one(l.suppressedKey()),
		// The names the store's callers lock and lease: worker's lane supervisor and
		// internal/metrics' exporter (metrics.LeaseName).
		"lockKey":        {l.lockKey("lanes:lock"), l.lockKey("exporter")},
		"ratesKey":       one(l.ratesKey()),
		"defaultRateKey": one(l.defaultRateKey()),
		"sendsKey":       one(strings.Replace(l.sendsKey(29000000), "29000000", "<unix minute>", 1)),
		"mediaCacheKey":  one(l.mediaCacheKey("<sender digits>", "<file SHA-256>", "<scope>")),
		"migLanesKey":    one(l.migLanesKey()),
		"mapKey":         one(l.mapKey("<message id>")),
		"mapKeyPattern":  one(strings.Replace(l.mapKeyPattern(), "*", "<message id>}", 1)),
		"parkKey":        one(l.parkKey("<message id>")),
	}
	// Keys of an old version that only wabulk migrate reads and deletes: not in the table.
	old := map[string]bool{"sentKey": true, "oldActiveKey": true, "oldRetryKey": true}
	// The generic builders the named ones use.
	generic := map[string]bool{"key": true, "nsKey": true}

	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "keys.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		name := fd.Name.Name
		if _, ok := built[name]; !ok && !old[name] && !generic[name] {
			t.Errorf("keys.go's %s is not called by this test: add it (and its key to docs/design.md's table)", name)
		}
	}

	norm := strings.NewReplacer("{N:"+campaign+"}", "{C}")
	made := map[string]string{}
	for name, ks := range built {
		for _, k := range ks {
			made[norm.Replace(k)] = name
		}
	}

	doc, err := os.ReadFile("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Redis keys\n")
	if !ok {
		t.Fatal(`docs/design.md has no "## Redis keys" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	cellKey := regexp.MustCompile("`(wabulk:[^`]+)`")
	table := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `wabulk:") {
			continue
		}
		first := strings.Split(line, " | ")[0]
		for _, m := range cellKey.FindAllStringSubmatch(first, -1) {
			if strings.HasPrefix(m[1], "wabulk:rl:") {
				continue // internal/ratelimit's
			}
			table[m[1]] = true
		}
	}
	if len(table) == 0 {
		t.Fatal("found no key in docs/design.md's Redis keys table")
	}
	for _, k := range slices.Sorted(maps.Keys(made)) {
		if !table[k] {
			t.Errorf("%s makes %s, which docs/design.md's Redis keys table lacks", made[k], k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(table)) {
		if _, ok := made[k]; !ok {
			t.Errorf("docs/design.md's Redis keys table has %s, which no builder in keys.go makes", k)
		}
	}
}
