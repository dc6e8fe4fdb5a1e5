package hostrelay

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

func TestReportEncoderMatchesProtocolReport(t *testing.T) {
	received := time.Date(2026, 11, 21, 10, 0, 0, 123456000, time.FixedZone("CET", 3600))
	guest := []byte(`{"v":1,"kind":"heartbeat","run":"r1","seq":7,"ts":"2026-11-21T09:00:00Z"}`)
	for _, ch := range []Channel{
		{Name: "web01", Path: "/run/a.sock", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
		{Name: `db "prod" <eu>`, Path: "/run/b.sock"},
	} {
		got := newReportEncoder("hv1", ch).encode(received, guest)
		want, err := json.Marshal(protocol.Report{V: 1, Host: "hv1", VM: ch.Name, UUID: ch.UUID, Channel: ch.Path,
			Received: received.UTC(), Guest: guest})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("encoded report\n got %s\nwant %s", got, want)
		}
	}
}

func TestReportEncoderKeepsGuestBytesExactly(t *testing.T) {
	// encoding/json would compact this and escape "<" and "&".
	guest := []byte(`{ "v":1, "kind":"event","run":"r1","seq":2,"ts":"2026-11-21T09:00:00Z","check":"logs","status":"crit","summary":"<b>&</b>" }`)
	b := newReportEncoder("hv1", Channel{Name: "web01", Path: "/p"}).encode(time.Now(), guest)
	var r protocol.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, b)
	}
	if !bytes.Equal(r.Guest, guest) {
		t.Errorf("guest bytes\n got %s\nwant %s", r.Guest, guest)
	}
}

func TestMsgKey(t *testing.T) {
	tests := []struct {
		name string
		ch   Channel
		want string
	}{
		{"uuid when known", Channel{Name: "web01", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"}, "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
		{"host and name otherwise", Channel{Name: "web01"}, "hv1:web01"},
		{"names are escaped so that the parts stay apart", Channel{Name: "a:b/c"}, "hv1:a~3Ab~2Fc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := msgKey("hv1", tt.ch); got != tt.want {
				t.Errorf("msgKey = %q, want %q", got, tt.want)
			}
		})
	}
}
