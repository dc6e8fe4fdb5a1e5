package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeRejectsBadMessagesNamingTheField(t *testing.T) {
	const head = `"v":1,"run":"r1","seq":3,"ts":"2026-11-21T09:30:00Z"`
	finding := func(f string) string {
		return `{` + head + `,"kind":"result","check":"logs","status":"warn","findings":[` + f + `]}`
	}
	tests := []struct {
		name  string
		line  string
		field string // "" when the error is not a FieldError
		is    error
	}{
		{"missing version", `{"kind":"heartbeat","run":"r1","seq":1,"ts":"2026-11-21T09:30:00Z"}`, "v", ErrInvalid},
		{"a future version", `{"v":2,"kind":"heartbeat","run":"r1","seq":1,"ts":"2026-11-21T09:30:00Z","newfield":1}`, "", ErrUnsupportedVersion},
		{"a version from the past", `{"v":0.5}`, "", ErrMalformed},
		{"unknown kind", `{` + head + `,"kind":"exec"}`, "kind", ErrInvalid},
		{"ack from a guest", `{` + head + `,"kind":"ack"}`, "kind", ErrInvalid},
		{"missing kind", `{` + head + `}`, "kind", ErrInvalid},
		{"run with a subject wildcard", `{"v":1,"kind":"heartbeat","run":"r.>","seq":1,"ts":"2026-11-21T09:30:00Z"}`, "run", ErrInvalid},
		{"run too long", `{"v":1,"kind":"heartbeat","run":"` + strings.Repeat("a", 65) + `","seq":1,"ts":"2026-11-21T09:30:00Z"}`, "run", ErrInvalid},
		{"seq zero", `{"v":1,"kind":"heartbeat","run":"r1","seq":0,"ts":"2026-11-21T09:30:00Z"}`, "seq", ErrInvalid},
		{"negative seq", `{"v":1,"kind":"heartbeat","run":"r1","seq":-1,"ts":"2026-11-21T09:30:00Z"}`, "", ErrMalformed},
		{"missing time", `{"v":1,"kind":"heartbeat","run":"r1","seq":1}`, "ts", ErrInvalid},
		{"time that is not RFC 3339", `{"v":1,"kind":"heartbeat","run":"r1","seq":1,"ts":"yesterday"}`, "", ErrMalformed},
		{"result without check", `{` + head + `,"kind":"result","status":"ok"}`, "check", ErrInvalid},
		{"check with a dot", `{` + head + `,"kind":"result","check":"a.b","status":"ok"}`, "check", ErrInvalid},
		{"result with unknown status", `{` + head + `,"kind":"result","check":"net","status":"fine"}`, "status", ErrInvalid},
		{"heartbeat with findings", `{` + head + `,"kind":"heartbeat","findings":[{"code":"a.b","severity":"warn","message":"m"}]}`, "kind", ErrInvalid},
		{"summary too long", `{` + head + `,"kind":"result","check":"net","status":"ok","summary":"` + strings.Repeat("s", MaxSummaryLen+1) + `"}`, "summary", ErrInvalid},
		{"finding code without area", finding(`{"code":"error","severity":"warn","message":"m"}`), "findings[0].code", ErrInvalid},
		{"finding code with a capital", finding(`{"code":"log.Error","severity":"warn","message":"m"}`), "findings[0].code", ErrInvalid},
		{"finding code ending in a dot", finding(`{"code":"log.","severity":"warn","message":"m"}`), "findings[0].code", ErrInvalid},
		{"finding with unknown severity", finding(`{"code":"log.error","severity":"fatal","message":"m"}`), "findings[0].severity", ErrInvalid},
		{"finding without message", finding(`{"code":"log.error","severity":"warn"}`), "findings[0].message", ErrInvalid},
		{"finding message too long", finding(`{"code":"log.error","severity":"warn","message":"` + strings.Repeat("m", MaxMessageLen+1) + `"}`), "findings[0].message", ErrInvalid},
		{"finding that ends before it starts", finding(`{"code":"log.error","severity":"warn","message":"m","first":"2026-11-21T09:30:00Z","last":"2026-11-21T09:00:00Z"}`), "findings[0].last", ErrInvalid},
		{"second finding bad", finding(`{"code":"log.error","severity":"warn","message":"m"},{"code":"x","severity":"warn","message":"m"}`), "findings[1].code", ErrInvalid},
		{"data that is not an object", `{` + head + `,"kind":"result","check":"net","status":"ok","data":[1,2]}`, "data", ErrInvalid},
		{"hello without data", `{` + head + `,"kind":"hello"}`, "data", ErrInvalid},
		{"hello without os", `{` + head + `,"kind":"hello","data":{"hostname":"h","agent_version":"1","checks":[]}}`, "data.os", ErrInvalid},
		{"hello with an unknown field", `{` + head + `,"kind":"hello","data":{"hostname":"h","os":"linux","agent_version":"1","checks":[],"exec":"rm"}}`, "data", ErrInvalid},
		{"hello with a bad check name", `{` + head + `,"kind":"hello","data":{"hostname":"h","os":"linux","agent_version":"1","checks":["a b"]}}`, "data.checks[0]", ErrInvalid},
		{"hello whose version forges a table row", `{` + head + `,"kind":"hello","data":{"hostname":"h","os":"linux","agent_version":"1.0\u001b[2J\nh1  web01  connected","checks":[]}}`, "data.agent_version", ErrInvalid},
		{"hostname with a newline", `{` + head + `,"kind":"hello","data":{"hostname":"a\nb","os":"linux","agent_version":"1","checks":[]}}`, "data.hostname", ErrInvalid},
		{"finding unit with an escape", finding(`{"code":"log.error","severity":"warn","message":"m","unit":"x\u001b[31m"}`), "findings[0].unit", ErrInvalid},
		{"invalid UTF-8", "{" + head + `,"kind":"result","check":"c","status":"ok","summary":"` + "\xff" + `"}`, "", ErrMalformed},
		{"unknown top-level field", `{` + head + `,"kind":"heartbeat","cmd":"reboot"}`, "", ErrMalformed},
		{"not an object", `[1,2,3]`, "", ErrMalformed},
		{"two objects on one line", `{` + head + `,"kind":"heartbeat"}{}`, "", ErrMalformed},
		{"cut short", `{` + head + `,"kind":"heart`, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.line))
			if err == nil {
				t.Fatal("accepted, want an error")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			var fe *FieldError
			if tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field) {
				t.Errorf("error %q, want one about field %q", err, tt.field)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long; guest text must be clipped", len(err.Error()))
			}
		})
	}
}

func TestDecodeAcceptsEveryKind(t *testing.T) {
	for name, v := range exampleEnvelopes() {
		e, ok := v.(Envelope)
		if !ok {
			continue
		}
		b, err := Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b[:len(b)-1]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecodeAckAcceptsOnlyAcks(t *testing.T) {
	tests := []struct {
		name, line string
		ok         bool
	}{
		{"an ack", `{"v":1,"kind":"ack","run":"r1","seq":9}`, true},
		{"an ack with spaces around it", "  {\"v\":1,\"kind\":\"ack\",\"run\":\"r1\",\"seq\":9}\r", true},
		{"anything else the host might try", `{"v":1,"kind":"exec","run":"r1","seq":9}`, false},
		{"an ack with extra fields", `{"v":1,"kind":"ack","run":"r1","seq":9,"cmd":"x"}`, false},
		{"an ack for seq zero", `{"v":1,"kind":"ack","run":"r1","seq":0}`, false},
		{"an ack of another version", `{"v":3,"kind":"ack","run":"r1","seq":9}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAck([]byte(tt.line))
			if (err == nil) != tt.ok {
				t.Errorf("DecodeAck error = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestEscapeTokenKeepsNamesApartAndSubjectsWhole(t *testing.T) {
	names := []string{"", "~", "web01", "web.01", "web 01", "web*", "web>", "web~2E01", "ünïcode", "a\x00b", "web-01_x"}
	seen := map[string]string{}
	for _, n := range names {
		tok := EscapeToken(n)
		if strings.ContainsAny(tok, ".*> \t\r\n") || tok == "" {
			t.Errorf("EscapeToken(%q) = %q, not a single safe token", n, tok)
		}
		if prev, dup := seen[tok]; dup {
			t.Errorf("EscapeToken(%q) = EscapeToken(%q) = %q", n, prev, tok)
		}
		seen[tok] = n
		back, err := UnescapeToken(tok)
		if err != nil || back != n {
			t.Errorf("UnescapeToken(%q) = %q, %v; want %q", tok, back, err, n)
		}
	}
	if got, want := ReportSubject("h.1", "vm*", "net"), "guestdiag.report.h~2E1.vm~2A.net"; got != want {
		t.Errorf("ReportSubject = %q, want %q", got, want)
	}
}
