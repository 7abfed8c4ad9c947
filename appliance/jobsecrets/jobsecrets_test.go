package jobsecrets

import (
	"sync"
	"testing"
)

func TestSecrets(t *testing.T) {
	var s Secrets
	if _, ok := s.Get(1); ok {
		t.Fatal("an empty box knows a password")
	}
	var nilBox *Secrets
	if _, ok := nilBox.Get(1); ok {
		t.Fatal("a nil box knows a password")
	}
	var wg sync.WaitGroup
	for i := range uint64(50) {
		wg.Go(func() { s.Set(i, "pw") })
	}
	wg.Wait()
	if p, ok := s.Get(49); !ok || p != "pw" {
		t.Fatalf("Get(49) = %q, %v", p, ok)
	}
	s.Forget(49)
	if _, ok := s.Get(49); ok {
		t.Fatal("a forgotten password is still known")
	}
}
