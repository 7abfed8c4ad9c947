package snapshot

import (
	"reflect"
	"testing"
	"time"
)

func TestInfoRoundTrip(t *testing.T) {
	good := Info{ID: "20261125T110405.123Z-001", Time: time.Date(2026, 11, 25, 11, 4, 5, 123e6, time.UTC), Scenario: "fs1",
		Method: Reflink, Files: 3, Bytes: 42, Consistency: CrashConsistent, Label: "before upgrade"}
	b, err := encodeInfo(good)
	must(t, err)
	got, err := decodeInfo(b)
	if err != nil || !reflect.DeepEqual(got, good) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, good)
	}
	bad := map[string]func(*Info){
		"id":          func(in *Info) { in.ID = "../x" },
		"method":      func(in *Info) { in.Method = "magic" },
		"consistency": func(in *Info) { in.Consistency = "" },
		"files":       func(in *Info) { in.Files = -1 },
		"time":        func(in *Info) { in.Time = time.Time{} },
		"label":       func(in *Info) { in.Label = string(make([]byte, maxTextLen+1)) },
	}
	for name, spoil := range bad {
		in := good
		spoil(&in)
		if _, err := encodeInfo(in); err == nil {
			t.Errorf("%s: encodeInfo accepted %+v", name, in)
		}
	}
	for name, text := range map[string]string{
		"unknown field": `{"version":1,"id":"20261125T110405.123Z-001","time":"2026-11-25T11:04:05.123Z","method":"copy","files":0,"bytes":0,"consistency":"crash","extra":1}`,
		"version":       `{"version":2,"id":"20261125T110405.123Z-001","time":"2026-11-25T11:04:05.123Z","method":"copy","files":0,"bytes":0,"consistency":"crash"}`,
		"trailing":      `{"version":1,"id":"20261125T110405.123Z-001","time":"2026-11-25T11:04:05.123Z","method":"copy","files":0,"bytes":0,"consistency":"crash"} {}`,
		"truncated":     string(b[:len(b)/2]),
		"empty":         "",
	} {
		if in, err := decodeInfo([]byte(text)); err == nil {
			t.Errorf("%s: decodeInfo accepted it as %+v", name, in)
		}
	}
}

func FuzzDecodeInfo(f *testing.F) {
	good := Info{ID: "20261125T110405.123Z-001", Time: time.Date(2026, 11, 25, 11, 4, 5, 123e6, time.UTC),
		Method: Copy, Files: 1, Bytes: 1 << 40, Consistency: ApplicationConsistent, Label: "é"}
	b, err := encodeInfo(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Add([]byte(`{"version":1,"id":"20261125T110405.123Z-1000","time":"2026-11-25T11:04:05Z","method":"reflink","files":0,"bytes":0,"consistency":"crash"}`))
	f.Add([]byte(`{"version":1,"time":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := decodeInfo(data)
		if err != nil {
			return
		}
		// Whatever it accepts is a valid Info that survives a rewrite.
		again, err := encodeInfo(in)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", in, err)
		}
		back, err := decodeInfo(again)
		if err != nil || !reflect.DeepEqual(back, in) {
			t.Fatalf("re-decoded %+v, %v; want %+v", back, err, in)
		}
	})
}
