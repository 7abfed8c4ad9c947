package scsi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestParseSense(t *testing.T) {
	for _, c := range loadCases(t, "testdata/sense.txt") {
		t.Run(c["name"], func(t *testing.T) {
			s, err := ParseSense(caseBytes(t, c))
			checkOutcome(t, c, s.String(), err)
			if p, ok := c["progress"]; ok {
				want, _ := strconv.ParseFloat(p, 64)
				got, ok := s.Progress()
				if !ok || got != want {
					t.Fatalf("progress %v %v, want %v", got, ok, want)
				}
			}
		})
	}
}

func TestASCTextCoversTable(t *testing.T) {
	for code, text := range ascTexts {
		if got := ASCText(byte(code>>8), byte(code)); got != text {
			t.Errorf("%04x: %q", code, got)
		}
	}
	if got := ASCText(0x40, 0x81); !strings.Contains(got, "diagnostic failure") {
		t.Errorf("diagnostic range: %q", got)
	}
	if got := ASCText(0x6F, 0x33); !strings.HasPrefix(got, "unknown") {
		t.Errorf("unknown pair: %q", got)
	}
}

// replyDevice answers every command with one fixed result: enough to
// exercise Exec's interpretation of statuses, which is all it does.
type replyDevice struct {
	res  Result
	err  error
	fill []byte
}

func (d *replyDevice) Do(_ context.Context, cmd *Command) (Result, error) {
	copy(cmd.Data, d.fill)
	return d.res, d.err
}
func (d *replyDevice) Close() error { return nil }

func TestExec(t *testing.T) {
	notPresent := []byte{0x70, 0, 2, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3a, 0, 0, 0, 0, 0}
	transport := errors.New("link down")
	cases := []struct {
		name string
		dev  replyDevice
		want string
		is   func(error) bool
	}{
		{"good", replyDevice{res: Result{Status: StatusGood}}, "", nil},
		{"check condition", replyDevice{res: Result{Status: StatusCheckCondition, Sense: notPresent}},
			"TEST UNIT READY: CHECK CONDITION: NOT READY: medium not present (ASC 3Ah/ASCQ 00h)",
			func(err error) bool { return IsSense(err, KeyNotReady, 0x3a, 0) }},
		{"check condition, garbage sense", replyDevice{res: Result{Status: StatusCheckCondition, Sense: []byte{1, 2}}},
			"TEST UNIT READY: CHECK CONDITION with unusable sense: sense data: unknown response code 0x01 (01 02)",
			func(err error) bool { _, ok := SenseOf(err); return !ok }},
		{"check condition, no sense", replyDevice{res: Result{Status: StatusCheckCondition}},
			"TEST UNIT READY: CHECK CONDITION with unusable sense: sense data: empty", nil},
		{"busy", replyDevice{res: Result{Status: StatusBusy}}, "TEST UNIT READY: BUSY",
			func(err error) bool { var se *StatusError; return errors.As(err, &se) && se.Status == StatusBusy }},
		{"reservation conflict", replyDevice{res: Result{Status: StatusReservationConflict}}, "TEST UNIT READY: RESERVATION CONFLICT", nil},
		{"odd status", replyDevice{res: Result{Status: 0x22}}, "TEST UNIT READY: status 0x22", nil},
		{"transport", replyDevice{err: transport}, "TEST UNIT READY: link down",
			func(err error) bool { return errors.Is(err, transport) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Exec(context.Background(), &c.dev, TestUnitReady())
			got := fmt.Sprint(err)
			if c.want == "" {
				got, c.want = fmt.Sprint(err), "<nil>"
			}
			if got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			if c.is != nil && !c.is(err) {
				t.Fatalf("error %v does not match its kind", err)
			}
		})
	}
}

func FuzzParseSense(f *testing.F) {
	for _, c := range loadCases(f, "testdata/sense.txt") {
		b, err := hexBytes(c["hex"])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSense(b)
		if err != nil {
			return
		}
		_ = s.String()
		if s.ResponseCode < 0x70 || s.ResponseCode > 0x73 {
			t.Fatalf("accepted response code %#x", s.ResponseCode)
		}
	})
}
