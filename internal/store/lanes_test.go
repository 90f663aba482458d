package store

import (
	"context"
	"slices"
	"testing"
)

func laneNames(t *testing.T, l *Ledger) []string {
	t.Helper()
	live, err := l.LiveLanes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ln := range live {
		names = append(names, ln.Name)
	}
	return names
}

func TestALaneWrittenButNeverRegisteredIsCountedAndRevived(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	ln := Lane{Campaign: "c", Sender: "+919000000001"}
	// A producer that dies between writing a lane's first tasks and registering it.
	if err := l.DeclareLane(ctx, ln, true); err != nil {
		t.Fatal(err)
	}
	name := l.LaneName("c", "+919000000001")
	enq := l.Enqueuer("t", 3)
	if _, live, err := enq.Enqueue(ctx, name, []Task{{ID: "c:919000000001:1", Payload: []byte("{}")}}, true); err != nil || live {
		t.Fatalf("enqueue: live=%v %v; want not live", live, err)
	}
	if got := laneNames(t, l); len(got) != 0 {
		t.Fatalf("live lanes %v before any registration", got)
	}
	if c := l.mustCounts(t); c.Enqueued != 1 || c.Pending != 1 {
		t.Fatalf("counts %+v: the declared lane's task must count at once", c)
	}
	revived, err := l.ReviveOrphans(ctx)
	if err != nil || !slices.Equal(revived, []string{name}) {
		t.Fatalf("revived %v, %v; want [%s]", revived, err, name)
	}
	if got := laneNames(t, l); !slices.Equal(got, []string{name}) {
		t.Fatalf("live lanes %v, want [%s]", got, name)
	}
	// Registered: the next enqueue sees the lane live and need not register it.
	if _, live, err := enq.Enqueue(ctx, name, []Task{{ID: "c:919000000001:2", Payload: []byte("{}")}}, true); err != nil || !live {
		t.Fatalf("enqueue after registering: live=%v %v; want live", live, err)
	}
	// A lane with work is never retired; an empty one is, and is not revived. A retirement
	// look clears the flag first, so the enqueue after it registers the lane again.
	if retired, err := l.RetireDrained(ctx, []Lane{{Name: name, Campaign: "c", Sender: "919000000001"}}); err != nil || len(retired) != 0 {
		t.Fatalf("retired %v, %v; want none while the lane holds a task", retired, err)
	}
	if _, live, err := enq.Enqueue(ctx, name, []Task{{ID: "c:919000000001:3", Payload: []byte("{}")}}, true); err != nil || live {
		t.Fatalf("enqueue after a retirement look: live=%v %v; want not live", live, err)
	}
	empty := Lane{Campaign: "e", Sender: "+919000000001"}
	if err := l.RegisterLane(ctx, empty, false); err != nil {
		t.Fatal(err)
	}
	emptyName := l.LaneName("e", "+919000000001")
	if retired, err := l.RetireDrained(ctx, []Lane{{Name: emptyName, Campaign: "e", Sender: "919000000001"}}); err != nil || !slices.Equal(retired, []string{emptyName}) {
		t.Fatalf("retired %v, %v; want [%s]", retired, err, emptyName)
	}
	if revived, err := l.ReviveOrphans(ctx); err != nil || len(revived) != 0 {
		t.Fatalf("revived %v, %v; want none", revived, err)
	}
	if got := laneNames(t, l); !slices.Equal(got, []string{name}) {
		t.Fatalf("live lanes %v, want [%s]", got, name)
	}
}

func TestPriorityIsParsedAndKeptByARedrive(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	for _, bad := range []string{"urgent", "HIGH!", "1", "high\x00"} {
		if _, err := ParsePriority(bad); err == nil {
			t.Errorf("ParsePriority(%q) accepted", bad)
		}
	}
	if p, err := ParsePriority(" High "); err != nil || p != PriorityHigh {
		t.Errorf("ParsePriority(\" High \") = %q, %v", p, err)
	}
	if err := l.RegisterLane(ctx, Lane{Campaign: "c", Sender: "+919000000001", Priority: PriorityHigh}, false); err != nil {
		t.Fatal(err)
	}
	// A redrive (keep) does not lower it; an enqueue that names a priority sets it.
	if err := l.RegisterLane(ctx, Lane{Campaign: "c", Sender: "+919000000001"}, true); err != nil {
		t.Fatal(err)
	}
	if live, _ := l.LiveLanes(ctx); len(live) != 1 || live[0].Priority != PriorityHigh {
		t.Fatalf("after a keep: %+v, want high", live)
	}
	if err := l.RegisterLane(ctx, Lane{Campaign: "c", Sender: "+919000000001", Priority: PriorityLow}, false); err != nil {
		t.Fatal(err)
	}
	if live, _ := l.LiveLanes(ctx); len(live) != 1 || live[0].Priority != PriorityLow {
		t.Fatalf("after a set: %+v, want low", live)
	}
}

func TestARegistryEntryThatIsNotJSONFallsBackToTheLaneName(t *testing.T) {
	ctx := context.Background()
	l := newLedger(t)
	name := l.LaneName("c", "+919000000001")
	l.rdb.HSet(ctx, l.nsKey("lanes:info"), name, "{not json")
	l.rdb.SAdd(ctx, l.nsKey("lanes:live"), name, "garbage")
	live, err := l.LiveLanes(ctx)
	if err != nil || len(live) != 1 || live[0].Campaign != "c" || live[0].Sender != "919000000001" || live[0].Priority != PriorityNormal {
		t.Fatalf("live = %+v, %v; want the lane read from its name, and the garbage entry skipped", live, err)
	}
}
