package diskstore_test

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/holdfast/holdfast/appliance/diskstore"
)

func Example() {
	dir, _ := os.MkdirTemp("", "diskstore-example-")
	defer os.RemoveAll(dir)
	s, err := diskstore.Create(dir, diskstore.WithPassword("correct horse"), diskstore.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	w := s.BeginSession(diskstore.SessionMeta{Scenario: "file server", Host: "fs1"})
	w.AddDir(diskstore.FileHeader{Path: "/srv", Mode: 0o755 | os.ModeDir})
	w.AddFile(diskstore.FileHeader{Path: "/srv/motd", Mode: 0o644}, strings.NewReader("hello\n"))
	info, err := w.Commit()
	if err != nil {
		fmt.Println(err)
		return
	}

	list, _ := s.ListSessions()
	ss, _ := s.OpenSession(list[0].ID)
	for _, en := range ss.Entries() {
		fmt.Println(en.Type, en.Path, en.Size)
	}
	r, _ := ss.Open("/srv/motd")
	b, _ := io.ReadAll(r)
	problems, _ := s.Verify(info.ID)
	fmt.Printf("%q, %d problems\n", b, len(problems))
	// Output:
	// dir /srv 0
	// file /srv/motd 6
	// "hello\n", 0 problems
}
