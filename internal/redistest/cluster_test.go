package redistest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestClusterSpreadsSlotsOverItsMastersAndMasterOfAgreesWithTheNodes(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Nodes) != 3 || strings.Count(c.Addrs(), ",") != 2 {
		t.Fatalf("nodes %v, addrs %q: want 3", c.Nodes, c.Addrs())
	}
	for _, a := range c.Nodes {
		if strings.HasSuffix(a, ":6379") {
			t.Fatalf("node %s uses Redis's standard port", a)
		}
	}
	ctx := context.Background()
	cc := c.Client(t)
	// A key per slot range: where MasterOf says it lives is where the cluster client put it.
	seen := map[string]bool{}
	for i := range 60 {
		key := fmt.Sprintf("k%d", i)
		if err := cc.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		m := c.MasterOf(t, key)
		if !slices.Contains(c.Nodes, m) {
			t.Fatalf("MasterOf(%s) = %s, not a node of %v", key, m, c.Nodes)
		}
		seen[m] = true
		if n, err := c.Node(t, m).Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Fatalf("%s is not on %s, the master MasterOf names (slot %d): %d, %v", key, m, c.Slot(t, key), n, err)
		}
		if mc, err := cc.MasterForKey(ctx, key); err != nil || mc.Options().Addr != m {
			t.Fatalf("go-redis puts %s on %v (%v), MasterOf says %s", key, mc, err, m)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("60 keys landed on %d masters, want all 3", len(seen))
	}
	// Keys of one hash tag share a slot; a script over two tags is refused, as on any cluster.
	if c.Slot(t, "a:{x}:1") != c.Slot(t, "b:{x}:2") {
		t.Fatal("keys with one hash tag are in different slots")
	}
	if c.Slot(t, "{k0}") == c.Slot(t, "{k1}") {
		t.Fatal("{k0} and {k1} share a slot")
	}
	err := cc.Eval(ctx, "return redis.call('MSET', KEYS[1], 1, KEYS[2], 2)", []string{"{k0}", "{k1}"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("a script over two slots answered %v, want CROSSSLOT", err)
	}
}
