package vtl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/drivers/scsi"
)

func newTape(t *testing.T, objs ...string) (*tapeFile, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "T1.vtape")
	if err := createTapeFile(path, tapeHeader{Capacity: 1 << 20, EarlyWarning: 1 << 10, Barcode: "T1"}); err != nil {
		t.Fatal(err)
	}
	tf, err := openTapeFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		kind, data := byte(kindBlock), []byte(o)
		if o == "FM" {
			kind, data = kindFilemark, nil
		}
		if err := tf.appendAt(len(tf.entries), kind, data); err != nil {
			t.Fatal(err)
		}
	}
	return tf, path
}

// describe renders a tape's objects as "a b FM c".
func describe(t *testing.T, tf *tapeFile) string {
	var out []string
	for i, e := range tf.entries {
		if e.kind == kindFilemark {
			out = append(out, "FM")
			continue
		}
		buf := make([]byte, e.length)
		if _, err := tf.readBlock(i, buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(buf))
	}
	return strings.Join(out, " ")
}

func TestTapeFileReopenAndOverwrite(t *testing.T) {
	tf, path := newTape(t, "alpha", "beta", "FM", "gamma", "FM")
	if err := tf.appendAt(2, kindBlock, []byte("delta")); err != nil { // overwrite from object 2
		t.Fatal(err)
	}
	if got := describe(t, tf); got != "alpha beta delta" || len(tf.fms) != 0 {
		t.Fatalf("after overwrite: %q fms %v", got, tf.fms)
	}
	tf.close()
	re, err := openTapeFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer re.close()
	if got := describe(t, re); got != "alpha beta delta" {
		t.Fatalf("reopened: %q", got)
	}
}

func TestTapeFileTornTailAndDamage(t *testing.T) {
	tests := []struct {
		name    string
		mangle  func(b []byte) []byte
		want    string
		wantErr string
	}{
		{"cut in the last block's data", func(b []byte) []byte { return b[:len(b)-2] }, "alpha FM", ""},
		{"cut in the last entry header", func(b []byte) []byte { return b[:len(b)-len("gamma")-5] }, "alpha FM", ""},
		{"damaged entry header", func(b []byte) []byte { b[tapeHeaderSize+5] ^= 0xFF; return b }, "", "checksum"},
		{"damaged tape header", func(b []byte) []byte { b[20] ^= 0xFF; return b }, "", "checksum"},
		{"not a tape", func(b []byte) []byte { copy(b, "NOTATAPE"); return b }, "", "magic"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tf, path := newTape(t, "alpha", "FM", "gamma")
			tf.close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.mangle(b), 0o600); err != nil {
				t.Fatal(err)
			}
			re, err := openTapeFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer re.close()
			if got := describe(t, re); got != tc.want {
				t.Fatalf("%q, want %q", got, tc.want)
			}
			// The torn tail is gone from the file: appending continues cleanly.
			if err := re.appendAt(len(re.entries), kindBlock, []byte("omega")); err != nil {
				t.Fatal(err)
			}
			st, err := re.f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			again, err := indexTape(re.f, st.Size())
			if err != nil || describe(t, again) != tc.want+" omega" {
				t.Fatalf("after append: %v", err)
			}
		})
	}
}

func TestDataChecksumCaught(t *testing.T) {
	tf, path := newTape(t, "alpha")
	defer tf.close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), tapeHeaderSize+entryHeaderSize+1)
	f.Close()
	if _, err := tf.readBlock(0, make([]byte, 5)); err == nil {
		t.Fatal("read a damaged block without error")
	}
	if _, err := tf.readBlock(0, make([]byte, 2)); err == nil {
		t.Fatal("partial read of a damaged block without error")
	}
}

// FuzzIndexTape: any bytes as a tape file either index or fail, never
// panic, and an index never points past the data.
func FuzzIndexTape(f *testing.F) {
	good := tapeHeader{Capacity: 1 << 20, EarlyWarning: 100, Barcode: "F1"}.encode()
	var eh [entryHeaderSize]byte
	entryHeader{kind: kindBlock, length: 3}.encode(eh[:])
	f.Add(append(append(append([]byte{}, good...), eh[:]...), "abc"...))
	entryHeader{kind: kindFilemark}.encode(eh[:])
	f.Add(append(append([]byte{}, good...), eh[:]...))
	f.Add(good[:100])
	f.Add([]byte("HFVTAPE1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tf, err := indexTape(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if tf.end > int64(len(b)) {
			t.Fatalf("end %d past %d bytes", tf.end, len(b))
		}
		for _, e := range tf.entries {
			if e.off+entryHeaderSize+int64(e.length) > int64(len(b)) {
				t.Fatalf("entry %+v past the data", e)
			}
		}
	})
}

// FuzzDecodeState: a state file never panics the decoder, and one it
// accepts names only real elements, each barcode once.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version":1,"config":{"slots":4,"drives":1,"mail_slots":1,"capacity":1000,"early_warning":10,"serial":"X"},"where":{"1024":"A1","256":"B2"}}`))
	f.Add([]byte(`{"version":1,"config":{"slots":4,"drives":1},"where":{"0":"A1"}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		for a := range st.Where {
			if a == "0" {
				t.Fatal("transport holds a tape")
			}
		}
	})
}

// FuzzDriveCommands: any CDB and data to a loaded drive or the changer
// answers with a status or an error, never a panic, and never reports
// moving more data than the buffer holds.
func FuzzDriveCommands(f *testing.F) {
	f.Add([]byte{opWrite6, 0, 0, 0, 5, 0}, []byte("hello"))
	f.Add([]byte{opRead6, 0, 0, 0, 5, 0}, make([]byte, 5))
	f.Add([]byte{opSpace6, 1, 0xFF, 0xFF, 0xFF, 0}, []byte{})
	f.Add([]byte{opLocate10, 0, 0, 0, 0, 0, 1, 0, 0, 0}, []byte{})
	f.Add([]byte{opReadElemStatus, 0x10, 0, 0, 0xFF, 0xFF, 0, 0, 0x10, 0, 0, 0}, make([]byte, 4096))
	f.Add([]byte{opModeSelect6, 0x10, 0, 0, 12, 0}, []byte{0, 0, 0x10, 8, 0, 0, 0, 0, 0, 0, 2, 0})
	f.Add([]byte{opMoveMedium, 0, 0, 0, 0x04, 0, 0x01, 0, 0, 0, 0, 0}, []byte{})
	dir := f.TempDir()
	l, err := Open(dir, Config{Slots: 4, Drives: 1, MailSlots: 1, Capacity: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	for _, bc := range []string{"Z1", "Z2"} {
		if err := l.CreateTape(bc, 0); err != nil {
			f.Fatal(err)
		}
		if _, err := l.Stock(bc); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, cdb, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		for _, dev := range []scsi.Device{l.Drive(0), l.Changer()} {
			res, err := dev.Do(context.Background(), &scsi.Command{CDB: cdb, Data: data})
			if err != nil {
				continue
			}
			if res.Residual < 0 || res.Residual > len(data) {
				t.Fatalf("cdb % x: residual %d of %d", cdb, res.Residual, len(data))
			}
		}
	})
}
