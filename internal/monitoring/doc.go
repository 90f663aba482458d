// Package monitoring holds the tests of deploy/monitoring against real programs: promtool checks
// and unit-tests the alert rules and checks compose's Prometheus configuration, and a real
// Prometheus scrapes a real `wabulk worker` and `wabulk serve` during a sandbox campaign while
// every query of the Grafana dashboard, the alert rules and the KEDA trigger's query run against
// it. It has no code of its own.
package monitoring
