package protocol_test

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// An agent writes one envelope per line.
func ExampleWriter() {
	w := protocol.NewWriter(os.Stdout)
	_ = w.Write(protocol.Envelope{
		V: protocol.Version, Kind: protocol.KindResult, Run: "k3Jd9QmZ2x", Seq: 7,
		TS:      time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC),
		Check:   "network",
		Status:  protocol.StatusCrit,
		Summary: "gateway 10.0.2.2 does not answer",
		Findings: []protocol.Finding{{
			Code: "net.gateway_unreachable", Severity: protocol.SeverityCrit,
			Message: "no reply from gateway 10.0.2.2 on eth0 (3 of 3 lost)",
		}},
	})
	// Output:
	// {"v":1,"kind":"result","run":"k3Jd9QmZ2x","seq":7,"ts":"2026-11-21T09:30:00Z","check":"network","status":"crit","summary":"gateway 10.0.2.2 does not answer","findings":[{"code":"net.gateway_unreachable","severity":"crit","message":"no reply from gateway 10.0.2.2 on eth0 (3 of 3 lost)"}]}
}

// The host answers with a cumulative ack: it covers seq 1..7 of the run.
func ExampleNewAck() {
	_ = protocol.NewWriter(os.Stdout).Write(protocol.NewAck("k3Jd9QmZ2x", 7))
	// Output:
	// {"v":1,"kind":"ack","run":"k3Jd9QmZ2x","seq":7}
}

// A reader drops a bad line, says where it was, and goes on with the next.
func ExampleReader_Next() {
	stream := "\n" + // the lone newline an agent writes on connect
		`{"v":1,"kind":"heartbeat","run":"r1","seq":1,"ts":"2026-11-21T09:30:00Z"}` + "\n" +
		`{"v":1,"kind":"heartbeat","run":"r1","seq":0,"ts":"2026-11-21T09:30:10Z"}` + "\n" +
		`{"v":2,"kind":"heartbeat"}` + "\n" +
		`{"v":1,"kind":"heartbeat","run":"r1","seq":2,"ts":"2026-11-21T09:30:20Z"}` + "\n"
	r := protocol.NewReader(strings.NewReader(stream), 0)
	for {
		e, _, err := r.Next()
		if err != nil {
			if le, ok := err.(*protocol.LineError); ok {
				fmt.Println("dropped:", le)
				continue
			}
			break
		}
		fmt.Println("accepted:", e.Kind, e.Seq)
	}
	// Output:
	// accepted: heartbeat 1
	// dropped: line 3 (byte 75): field seq: missing or zero; sequences start at 1
	// dropped: line 4 (byte 149): unsupported protocol version 2: this build speaks 1
	// accepted: heartbeat 2
}

// Names from hosts and guests become single subject tokens.
func ExampleReportSubject() {
	fmt.Println(protocol.ReportSubject("kvm-07", "web.prod *1", "network"))
	// Output:
	// guestdiag.report.kvm-07.web~2Eprod~20~2A1.network
}
