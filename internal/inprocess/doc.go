// Package inprocess runs a whole campaign in one process: it enqueues the campaign, runs a worker
// beside it until every job is sent or dead, and reports what happened. `wabulk send` runs it on
// a real or embedded Redis and a real or fake Kaleyra; `wabulk demo` runs it on a sample campaign
// built into the binary. It does no terminal rendering: the caller shows the progress and the
// result.
package inprocess
