package catalog

import (
	"errors"
	"testing"
)

func TestDeleteJob(t *testing.T) {
	c := openTest(t, t.TempDir())
	plain, err := c.CreateJob(Job{Kind: "backup", Name: "plain", State: JobDone})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.CreateJob(Job{Kind: "backup", Name: "kept", State: JobDone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSession(Session{JobID: kept.ID, ScenarioID: 1, Entity: "/srv", MasterHost: "fs01"}); err != nil {
		t.Fatal(err)
	}

	if err := c.DeleteJob(plain.ID); err != nil {
		t.Fatalf("DeleteJob(plain): %v", err)
	}
	if _, err := c.Job(plain.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Job after delete: err = %v, want ErrNotFound", err)
	}
	if err := c.DeleteJob(plain.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteJob: err = %v, want ErrNotFound", err)
	}
	if err := c.DeleteJob(kept.ID); !errors.Is(err, ErrInvalid) {
		t.Fatalf("DeleteJob of a job with sessions: err = %v, want ErrInvalid", err)
	}
	if _, err := c.Job(kept.ID); err != nil {
		t.Fatalf("job with sessions is gone after a refused delete: %v", err)
	}
	if err := c.PutJob(plain); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutJob of a deleted job: err = %v, want ErrNotFound", err)
	}
}
