package protocol

import (
	"encoding/json"
	"time"
)

// The values behind the golden files and the Example tests: one of each kind,
// shaped like what a real agent sends.
var (
	exampleTS    = time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)
	exampleFirst = exampleTS.Add(-4 * time.Minute)
)

func exampleEnvelopes() map[string]any {
	return map[string]any{
		"hello": Envelope{V: 1, Kind: KindHello, Run: "k3Jd9QmZ2x", Seq: 1, TS: exampleTS,
			Data: mustJSON(Hello{Hostname: "web01", OS: "linux", Platform: "debian 12.8", Kernel: "6.1.0-28-cloud-amd64",
				Arch: "amd64", AgentVersion: "0.1.0", Checks: []string{"resources"}, BootTime: 1763712000})},
		"result": Envelope{V: 1, Kind: KindResult, Run: "k3Jd9QmZ2x", Seq: 2, TS: exampleTS, Check: "resources",
			Status: StatusWarn, Summary: "disk / 93% full",
			Findings: []Finding{{Code: "res.disk_full", Severity: SeverityWarn, Message: "/ is 93.2% full (threshold 90%)", Source: "/"}},
			Data:     json.RawMessage(`{"cpu":{"window_s":30,"count":2,"used_pct":12.5,"user_pct":9.1,"system_pct":3.3,"iowait_pct":0.2,"steal_pct":0.1,"idle_pct":87.3},"memory":{"total_bytes":4102553600,"available_bytes":2412290048,"used_pct":41.2},"disks":[{"mountpoint":"/","device":"/dev/vda1","fstype":"ext4","total_bytes":21003583488,"used_bytes":19575336960,"free_bytes":1428246528,"used_pct":93.2}]}`)},
		"event": Envelope{V: 1, Kind: KindEvent, Run: "k3Jd9QmZ2x", Seq: 3, TS: exampleTS, Check: "logs",
			Status: StatusWarn, Summary: "1 error entry",
			Findings: []Finding{{Code: "log.error", Severity: SeverityWarn, Message: "EXT4-fs error (device vda1): ext4_find_entry: reading directory lblock 0",
				Source: "kernel", Unit: "kernel", Count: 3, First: &exampleFirst, Last: &exampleTS}}},
		"heartbeat": Envelope{V: 1, Kind: KindHeartbeat, Run: "k3Jd9QmZ2x", Seq: 4, TS: exampleTS,
			Data: mustJSON(Heartbeat{UptimeSec: 3600, Spooled: 0})},
		"resume": Envelope{V: 1, Kind: KindResume, Run: "k3Jd9QmZ2x", Seq: 2, TS: exampleTS,
			Data: mustJSON(Resume{Held: []HeldRun{{Run: "Qm8w2Lx0aP", Oldest: 311, Newest: 318}, {Run: "k3Jd9QmZ2x", Oldest: 3, Newest: 4}}, Dropped: 2})},
		"ack": NewAck("k3Jd9QmZ2x", 4),
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
