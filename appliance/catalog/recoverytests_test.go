package catalog

import (
	"errors"
	"testing"
	"time"
)

func TestRecoveryTestsNewestFirstPerScenario(t *testing.T) {
	c := openTest(t, t.TempDir())
	for i, st := range []struct {
		scenario uint64
		passed   bool
	}{{7, true}, {8, false}, {7, false}, {7, true}} {
		got, err := c.CreateRecoveryTest(RecoveryTest{ScenarioID: st.scenario, Passed: st.passed,
			Replica: "localhost:/r", Snapshot: "s", Duration: time.Duration(i+1) * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != uint64(i+1) || got.Started.IsZero() {
			t.Fatalf("test %d stored as %+v", i, got)
		}
	}
	list, err := c.RecoveryTests(7, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, rt := range list {
		if rt.ScenarioID != 7 {
			t.Fatalf("scenario 8's test listed for 7: %+v", rt)
		}
		ids = append(ids, rt.ID)
	}
	if len(ids) != 3 || ids[0] != 4 || ids[1] != 3 || ids[2] != 1 {
		t.Fatalf("ids = %v, want [4 3 1]", ids)
	}
	if !list[0].Passed || list[1].Passed || list[0].Duration != 4*time.Second {
		t.Fatalf("newest = %+v", list[0])
	}
	limited, err := c.RecoveryTests(7, 1)
	if err != nil || len(limited) != 1 || limited[0].ID != 4 {
		t.Fatalf("limit 1 = %+v, %v", limited, err)
	}
	if _, err := c.CreateRecoveryTest(RecoveryTest{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("test without scenario: %v, want ErrInvalid", err)
	}
}
