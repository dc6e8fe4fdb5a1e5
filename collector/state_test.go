package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func result(run string, seq uint64, status protocol.Status, received time.Time) (*protocol.Report, *protocol.Envelope) {
	e := &protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: run, Seq: seq, TS: received, Check: "resources", Status: status}
	return &protocol.Report{V: 1, Host: "h1", VM: "web1", Received: received}, e
}

func TestApplyReportOrdersMessagesOfACheck(t *testing.T) {
	tests := []struct {
		name     string
		run      string
		seq      uint64
		received time.Time
		want     outcome
		wantSeq  uint64
	}{
		{"a higher seq of the same run applies", "runA", 6, t0.Add(time.Second), applied, 6},
		{"the same seq again is stale", "runA", 5, t0.Add(time.Second), stale, 5},
		{"a lower seq of the same run is stale even if received later", "runA", 4, t0.Add(time.Hour), stale, 5},
		{"a new run received later applies with a low seq", "runB", 1, t0.Add(time.Second), applied, 1},
		{"an old run received earlier is stale", "runZ", 99, t0.Add(-time.Second), stale, 5},
		{"another run received at the same instant is stale", "runB", 9, t0, stale, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := VM{Name: "web1", Host: "h1"}
			r, e := result("runA", 5, protocol.StatusCrit, t0)
			if got := applyReport(&v, r, e); got != applied {
				t.Fatalf("first result: got %v, want applied", got)
			}
			r, e = result(tt.run, tt.seq, protocol.StatusOK, tt.received)
			if got := applyReport(&v, r, e); got != tt.want {
				t.Errorf("second result: got %v, want %v", got, tt.want)
			}
			if got := v.Checks["resources"].Seq; got != tt.wantSeq {
				t.Errorf("seq in state: got %d, want %d", got, tt.wantSeq)
			}
			wantLastSeen := t0
			if tt.want == applied && tt.received.After(t0) {
				wantLastSeen = tt.received
			}
			if !v.LastSeen.Equal(wantLastSeen) {
				t.Errorf("last_seen: got %v, want %v", v.LastSeen, wantLastSeen)
			}
		})
	}
}

func TestApplyReportKeepsHostIdentity(t *testing.T) {
	v := VM{Name: "web1", Host: "h1"}
	data, _ := json.Marshal(protocol.Hello{Hostname: "db1", OS: "linux", AgentVersion: "0.1.0", Checks: []string{"resources"}})
	e := &protocol.Envelope{V: 1, Kind: protocol.KindHello, Run: "runA", Seq: 1, TS: t0, Data: data}
	r := &protocol.Report{V: 1, Host: "h1", VM: "web1", UUID: "u-1", Channel: "/run/web1.sock", Received: t0}
	if got := applyReport(&v, r, e); got != applied {
		t.Fatalf("hello: got %v, want applied", got)
	}
	if v.Name != "web1" || v.Host != "h1" || v.UUID != "u-1" {
		t.Errorf("identity after hello claiming db1: got %q on %q (uuid %q), want web1 on h1 (uuid u-1)", v.Name, v.Host, v.UUID)
	}
	if v.Hello == nil || v.Hello.ClaimedHostname != "db1" {
		t.Errorf("claimed hostname: got %+v, want db1", v.Hello)
	}
}

func TestApplyReportBoundsTheRecord(t *testing.T) {
	v := VM{Name: "web1", Host: "h1"}
	for i := range maxChecksPerVM {
		r, e := result("runA", uint64(i+1), protocol.StatusOK, t0)
		e.Check = fmt.Sprintf("check_%d", i)
		if got := applyReport(&v, r, e); got != applied {
			t.Fatalf("check %d: got %v, want applied", i, got)
		}
	}
	r, e := result("runA", 1000, protocol.StatusOK, t0)
	e.Check = "one_too_many"
	if got := applyReport(&v, r, e); got != rejected {
		t.Errorf("check beyond the limit: got %v, want rejected", got)
	}
	r, e = result("runA", 1001, protocol.StatusOK, t0)
	e.Check = "check_0"
	if got := applyReport(&v, r, e); got != applied {
		t.Errorf("known check at the limit: got %v, want applied", got)
	}

	many := make([]protocol.Finding, protocol.MaxFindings)
	for i := range many {
		many[i] = protocol.Finding{Code: "res.x", Severity: protocol.SeverityWarn, Message: strings.Repeat("m", protocol.MaxMessageLen)}
	}
	for name, c := range v.Checks {
		// A check is replaced, never edited, so it is made again here.
		grown := Check{Kind: c.Kind, Status: c.Status, Findings: many[:maxStoredFindings], FindingsTotal: len(many), Data: c.Data, Origin: c.Origin}
		v.Checks[name] = &grown
	}
	b, err := encodeRecord(&v)
	if err != nil {
		t.Fatalf("encodeRecord of an oversized record: %v", err)
	}
	if len(b) > maxRecordBytes {
		t.Errorf("encoded record: got %d bytes, want at most %d", len(b), maxRecordBytes)
	}
	var back VM
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Checks["check_0"]; len(got.Findings) != 0 || got.FindingsTotal != len(many) {
		t.Errorf("trimmed check: got %d findings, total %d; want 0, total %d", len(got.Findings), got.FindingsTotal, len(many))
	}

	huge := VM{Name: strings.Repeat("n", maxRecordBytes), Host: "h1"}
	if _, err := encodeRecord(&huge); !errors.Is(err, errRecordTooLarge) {
		t.Errorf("record that cannot be trimmed: got %v, want errRecordTooLarge", err)
	}
}

func TestApplyChannel(t *testing.T) {
	ev := func(state protocol.ChannelState, ts time.Time) *protocol.ChannelEvent {
		return &protocol.ChannelEvent{V: 1, Host: "h1", VM: "web1", Channel: "/run/web1.sock", State: state, TS: ts}
	}
	tests := []struct {
		name      string
		next      *protocol.ChannelEvent
		want      outcome
		wantState protocol.ChannelState
	}{
		{"a later disconnect applies", ev(protocol.ChannelDisconnected, t0.Add(time.Second)), applied, protocol.ChannelDisconnected},
		{"an earlier disconnect is stale", ev(protocol.ChannelDisconnected, t0.Add(-time.Second)), stale, protocol.ChannelConnected},
		{"the same event again is stale", ev(protocol.ChannelConnected, t0), stale, protocol.ChannelConnected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := VM{Name: "web1", Host: "h1"}
			if got := applyChannel(&v, ev(protocol.ChannelConnected, t0)); got != applied {
				t.Fatalf("first event: got %v, want applied", got)
			}
			if got := applyChannel(&v, tt.next); got != tt.want {
				t.Errorf("second event: got %v, want %v", got, tt.want)
			}
			if v.Channel.State != tt.wantState {
				t.Errorf("channel state: got %q, want %q", v.Channel.State, tt.wantState)
			}
		})
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	good, _ := protocol.Marshal(protocol.Envelope{V: 1, Kind: protocol.KindHeartbeat, Run: "runA", Seq: 1, TS: t0})
	report := func(mut func(*protocol.Report)) []byte {
		r := protocol.Report{V: 1, Host: "h1", VM: "web1", Received: t0, Guest: good[:len(good)-1]}
		mut(&r)
		b, _ := json.Marshal(r)
		return b
	}
	tests := []struct {
		name    string
		subject string
		data    []byte
	}{
		{"garbage", "guestdiag.report.h1.web1.resources", []byte("not json")},
		{"a report of another version", "guestdiag.heartbeat.h1.web1", report(func(r *protocol.Report) { r.V = 2 })},
		{"a report without a vm", "guestdiag.heartbeat.h1.web1", report(func(r *protocol.Report) { r.VM = "" })},
		{"a report without a received time", "guestdiag.heartbeat.h1.web1", report(func(r *protocol.Report) { r.Received = time.Time{} })},
		{"an invalid guest envelope", "guestdiag.heartbeat.h1.web1", report(func(r *protocol.Report) { r.Guest = json.RawMessage(`{"v":1,"kind":"bogus"}`) })},
		{"a channel event with an unknown state", "guestdiag.channel.h1.web1", []byte(`{"v":1,"host":"h1","vm":"web1","state":"maybe"}`)},
		{"a subject the collector does not handle", "guestdiag.alert.crit.h1.web1", report(func(*protocol.Report) {})},
		// A relay may publish only under its own host's subjects; the
		// body must not name another host or VM.
		{"a report naming another host than its subject", "guestdiag.heartbeat.h1.web1", report(func(r *protocol.Report) { r.Host = "h2" })},
		{"a report naming another VM than its subject", "guestdiag.report.h1.web1.resources", report(func(r *protocol.Report) { r.VM = "db1" })},
		{"a channel event naming another host", "guestdiag.channel.h1.web1", []byte(`{"v":1,"host":"h2","vm":"web1","state":"connected"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeMessage(tt.subject, tt.data); err == nil {
				t.Errorf("decodeMessage: got nil error, want one")
			}
		})
	}
	if _, err := decodeMessage("guestdiag.heartbeat.h1.web1", report(func(*protocol.Report) {})); err != nil {
		t.Errorf("decodeMessage of a good heartbeat: %v", err)
	}
}

func TestKey(t *testing.T) {
	valid := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	tests := []struct{ host, vm, want string }{
		{"h1", "web1", "h1.web1"},
		{"h1.example.com", "web 1", "h1=2Eexample=2Ecom.web=201"},
		{"h1", "", "h1.="},
		{"h~1", "a>b*", "h=7E1.a=3Eb=2A"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := Key(tt.host, tt.vm)
		if got != tt.want {
			t.Errorf("Key(%q, %q): got %q, want %q", tt.host, tt.vm, got, tt.want)
		}
		if !valid.MatchString(got) {
			t.Errorf("Key(%q, %q) = %q is not a valid KV key", tt.host, tt.vm, got)
		}
		if seen[got] {
			t.Errorf("Key(%q, %q) = %q collides", tt.host, tt.vm, got)
		}
		seen[got] = true
	}
}

// TestHelloKeepsEveryFieldOfProtocolHello guards the field by field copy in
// applyReport: a field added to protocol.Hello fails here until Hello has
// it, of the same type and JSON key, and applyReport copies it.
func TestHelloKeepsEveryFieldOfProtocolHello(t *testing.T) {
	// renamed are the fields Hello keeps under another name, with the JSON
	// tag they have there, so that the host's identity and the guest's
	// claim never share a key.
	renamed := map[string]struct{ field, tag string }{
		"Hostname": {"ClaimedHostname", "claimed_hostname"},
	}
	var sent protocol.Hello
	sv := reflect.ValueOf(&sent).Elem()
	for i, f := range reflect.VisibleFields(sv.Type()) {
		fv := sv.FieldByIndex(f.Index)
		switch {
		case fv.Kind() == reflect.String:
			fv.SetString("value of " + f.Name)
		case fv.CanInt():
			fv.SetInt(int64(100 + i))
		case fv.CanUint():
			fv.SetUint(uint64(100 + i))
		case fv.Kind() == reflect.Bool:
			fv.SetBool(true)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
			fv.Set(reflect.ValueOf([]string{"value of " + f.Name}).Convert(fv.Type()))
		case fv.Kind() == reflect.Map && fv.Type().Key().Kind() == reflect.String && fv.Type().Elem().Kind() == reflect.Uint32:
			m := reflect.MakeMap(fv.Type())
			m.SetMapIndex(reflect.ValueOf("key of "+f.Name), reflect.ValueOf(uint64(100+i)).Convert(fv.Type().Elem()))
			fv.Set(m)
		default:
			t.Fatalf("protocol.Hello.%s is a %s; teach this test to fill it", f.Name, f.Type)
		}
	}
	data, err := json.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	v := VM{Name: "web1", Host: "h1"}
	e := &protocol.Envelope{V: 1, Kind: protocol.KindHello, Run: "runA", Seq: 1, TS: t0, Data: data}
	if got := applyReport(&v, &protocol.Report{V: 1, Host: "h1", VM: "web1", Received: t0}, e); got != applied {
		t.Fatalf("hello: got %v, want applied", got)
	}

	kept := reflect.ValueOf(v.Hello).Elem()
	mirrored := map[string]bool{"Origin": true}
	for _, f := range reflect.VisibleFields(sv.Type()) {
		name, tag := f.Name, f.Tag.Get("json")
		if r, ok := renamed[f.Name]; ok {
			name, tag = r.field, r.tag
		}
		mirrored[name] = true
		g, ok := kept.Type().FieldByName(name)
		if !ok {
			t.Errorf("protocol.Hello.%s: collector.Hello has no field %s", f.Name, name)
			continue
		}
		if g.Type != f.Type {
			t.Errorf("collector.Hello.%s: got type %s, want %s as in protocol.Hello.%s", name, g.Type, f.Type, f.Name)
		}
		if got := g.Tag.Get("json"); got != tag {
			t.Errorf("collector.Hello.%s json tag: got %q, want %q", name, got, tag)
		}
		if got, want := kept.FieldByIndex(g.Index).Interface(), sv.FieldByIndex(f.Index).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("collector.Hello.%s after applyReport: got %v, want %v, the guest's %s", name, got, want, f.Name)
		}
	}
	for _, g := range reflect.VisibleFields(kept.Type()) {
		if len(g.Index) == 1 && !mirrored[g.Name] {
			t.Errorf("collector.Hello.%s mirrors no field of protocol.Hello", g.Name)
		}
	}
}

func TestCheckDataIsBounded(t *testing.T) {
	small := json.RawMessage(`{"top":[{"pid":1,"name":"init"}]}`)
	big := json.RawMessage(`"` + strings.Repeat("x", maxCheckData) + `"`)
	tests := []struct {
		name string
		data json.RawMessage
		want string
	}{
		{"data within the bound is kept as sent", small, string(small)},
		{"larger data becomes a marker with its size", big, fmt.Sprintf(`{"truncated":true,"bytes":%d}`, len(big))},
		{"no data stays empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := VM{Name: "web1", Host: "h1"}
			r, e := result("runA", 1, protocol.StatusOK, t0)
			e.Data = tt.data
			if got := applyReport(&v, r, e); got != applied {
				t.Fatalf("result: got %v, want applied", got)
			}
			if got := string(v.Checks["resources"].Data); got != tt.want {
				t.Errorf("stored data: got %.80s, want %.80s", got, tt.want)
			}
		})
	}
}

func TestEncodeRecordDropsDataBeforeFindings(t *testing.T) {
	v := VM{Name: "web1", Host: "h1", Checks: map[string]*Check{}}
	data := json.RawMessage(`"` + strings.Repeat("d", maxCheckData-2) + `"`)
	for i := range 20 {
		v.Checks[fmt.Sprintf("check_%d", i)] = &Check{
			Status: protocol.StatusWarn, Data: data, FindingsTotal: 1,
			Findings: []protocol.Finding{{Code: "res.x", Severity: protocol.SeverityWarn, Message: "kept"}},
		}
	}
	b, err := encodeRecord(&v)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxRecordBytes {
		t.Errorf("encoded record: got %d bytes, want at most %d", len(b), maxRecordBytes)
	}
	var back VM
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	got := back.Checks["check_3"]
	if want := fmt.Sprintf(`{"truncated":true,"bytes":%d}`, len(data)); string(got.Data) != want {
		t.Errorf("data of a trimmed check: got %.80s, want %s", got.Data, want)
	}
	if len(got.Findings) != 1 {
		t.Errorf("findings of a trimmed check: got %d, want 1 (data goes first)", len(got.Findings))
	}
	if len(v.Checks["check_3"].Data) != len(data) {
		t.Errorf("encodeRecord changed the record it was given")
	}
}

func TestRecordEncodingSplicesEachChecksJSON(t *testing.T) {
	v := VM{Name: "web1", Host: "h1", UUID: "u1"}
	for i, name := range []string{"resources", "disk", "logs <&>"} {
		r, e := result("runA", uint64(i+1), protocol.StatusWarn, t0)
		e.Check, e.Summary = name, "summary of "+name
		e.Findings = []protocol.Finding{{Code: "res.mem_high", Severity: protocol.SeverityWarn, Message: "memory 93% used"}}
		e.Data = json.RawMessage(`{"top":[{"pid":1,"name":"<script>"}],"n":1.50}`)
		if got := applyReport(&v, r, e); got != applied {
			t.Fatalf("result of %s: got %v, want applied", name, got)
		}
	}
	want, err := json.Marshal(&v)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a record of fresh checks encodes as json.Marshal does", func(t *testing.T) {
		got, err := encodeRecord(&v)
		if err != nil || string(got) != string(want) {
			t.Errorf("encodeRecord: got %s (%v), want %s", got, err, want)
		}
	})
	t.Run("a decoded record encodes to the same bytes", func(t *testing.T) {
		d, err := decodeRecord(want)
		if err != nil {
			t.Fatal(err)
		}
		if d.Checks["disk"].enc == nil {
			t.Error("decodeRecord kept no JSON of check disk")
		}
		got, err := encodeRecord(&d)
		if err != nil || string(got) != string(want) {
			t.Errorf("encodeRecord of the decoded record: got %s (%v), want %s", got, err, want)
		}
	})
	t.Run("a changed check is encoded anew", func(t *testing.T) {
		d, _ := decodeRecord(want)
		r, e := result("runA", 9, protocol.StatusOK, t0)
		e.Check = "disk"
		applyReport(&d, r, e)
		got, _ := encodeRecord(&d)
		back, err := decodeRecord(got)
		if err != nil || back.Checks["disk"].Status != protocol.StatusOK || back.Checks["resources"].Status != protocol.StatusWarn {
			t.Errorf("after a new disk result: got %s (%v), want disk ok and resources warn", got, err)
		}
	})
}
