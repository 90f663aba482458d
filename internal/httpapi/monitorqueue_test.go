package httpapi

import "testing"

func TestMonitorQueueNamesTheLaneAnAsynqmonChangeActsOn(t *testing.T) {
	for path, want := range map[string]string{
		"/monitor/api/queues/whatsapp:mon:919000000001:resume":                           "whatsapp:mon:919000000001",
		"/monitor/api/queues/whatsapp:mon:919000000001:pause":                            "whatsapp:mon:919000000001",
		"/monitor/api/queues/whatsapp:mon:919000000001/archived_tasks/mon:9190:9198:run": "whatsapp:mon:919000000001",
		"/monitor/api/queues/whatsapp:mon:919000000001/retry_tasks:run_all":              "whatsapp:mon:919000000001",
		"/monitor/api/queues/whatsapp%3Ax%3A1/retry_tasks:run_all":                       "whatsapp:x:1",
		"/monitor/api/servers": "",
		"/monitor/queues":      "",
	} {
		if got := monitorQueue(path); got != want {
			t.Errorf("monitorQueue(%q) = %q, want %q", path, got, want)
		}
	}
}
