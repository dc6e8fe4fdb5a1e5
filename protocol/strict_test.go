package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestHelloAndHeartbeatDataDecodeStrictly(t *testing.T) {
	const hello = `"hostname":"web01","os":"linux","agent_version":"0.1.0","checks":["disk"]`
	env := func(kind, data string) string {
		return `{"v":1,"kind":"` + kind + `","run":"r1","seq":1,"ts":"2026-01-02T03:04:05Z","data":` + data + `}`
	}
	tests := []struct {
		name, line string
		wantErr    string // "" for accepted
	}{
		{"a plain hello is accepted", env("hello", `{`+hello+`}`), ""},
		{"a hello key in another case is refused", env("hello", `{`+hello+`,"HostName":"db01"}`), `unknown key "HostName"`},
		{"a long s folding to s is refused", env("hello", `{"hoſtname":"x",`+strings.TrimPrefix(hello, `"hostname":"web01",`)+`}`), `unknown key`},
		{"a repeated hello key is refused", env("hello", `{`+hello+`,"hostname":"db01"}`), `key "hostname" given twice`},
		{"a repeated interval is refused", env("hello", `{`+hello+`,"intervals":{"disk":5,"disk":6}}`), `key "disk" given twice`},
		{"a check listed twice is refused", env("hello", `{"hostname":"a","os":"linux","agent_version":"1","checks":["disk","disk"]}`), `listed twice`},
		{"a plain heartbeat is accepted", env("heartbeat", `{"uptime_s":5,"spooled":0}`), ""},
		{"a null heartbeat is accepted as before", env("heartbeat", `null`), ""},
		{"a heartbeat key in another case is refused", env("heartbeat", `{"uptime_s":5,"Spooled":1}`), `unknown key "Spooled"`},
		{"a repeated heartbeat key is refused", env("heartbeat", `{"spooled":5,"spooled":0}`), `key "spooled" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.line))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Decode: %v; want it accepted", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Decode accepted %s; want error %q", tt.line, tt.wantErr)
			case tt.wantErr != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Decode: %v; want an ErrInvalid saying %q", err, tt.wantErr)
			}
		})
	}
}
