// Package jobs is the appliance's job queue: backup, restore and other jobs
// wait in it as Ready (or Hold) until their schedule makes them due, run as
// Active under a registered Executor with live progress, and end as Done with
// a result, or go back to Ready when their schedule repeats. The queue lives
// in the catalog, so it survives a restart; a job found Active on Open was cut
// short by a crash and is recorded as failed. docs/jobs.md describes the
// states, the transitions and the schedule syntax.
package jobs
