package protocol

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// realisticResult is a resources result with the field names of
// resources.Data, plus the ten top processes that come with a high CPU
// finding: the most common and largest message an agent sends.
func realisticResult(seq uint64) []byte {
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	procs := make([]map[string]any, 10)
	for i := range procs {
		procs[i] = map[string]any{"pid": 1000 + i, "name": fmt.Sprintf("worker-%d", i), "user": "www-data", "cpu_pct": 12.5, "rss_bytes": 123456789}
	}
	data, _ := json.Marshal(map[string]any{
		"cpu":     map[string]any{"window_s": 30, "count": 4, "used_pct": 93.1, "user_pct": 80.2, "system_pct": 10.1, "iowait_pct": 1.2, "steal_pct": 0.4, "idle_pct": 8.1},
		"memory":  map[string]any{"total_bytes": int64(8 << 30), "available_bytes": int64(2 << 30), "used_pct": 75.0},
		"swap":    map[string]any{"total_bytes": 0, "used_bytes": 0, "used_pct": 0},
		"load":    map[string]any{"load1": 3.1, "load5": 2.7, "load15": 2.2},
		"disks":   []map[string]any{{"mountpoint": "/", "device": "/dev/vda1", "fstype": "ext4", "total_bytes": int64(20 << 30), "used_bytes": int64(9 << 30), "free_bytes": int64(11 << 30), "used_pct": 45.0}},
		"top_cpu": procs,
	})
	first := ts.Add(-time.Minute)
	e := Envelope{V: 1, Kind: KindResult, Run: "r7Kq2mX9", Seq: seq, TS: ts, Check: "resources", Status: StatusCrit,
		Summary:  "cpu 93% for 3 samples",
		Findings: []Finding{{Code: "res.cpu_high", Severity: SeverityCrit, Message: "CPU at 93.1% for 3 samples (threshold 90%)", Count: 3, First: &first, Last: &ts}},
		Data:     data}
	b, _ := Marshal(e)
	return b[:len(b)-1]
}

func BenchmarkDecode(b *testing.B) {
	line := realisticResult(42)
	b.SetBytes(int64(len(line) + 1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(line); err != nil {
			b.Fatal(err)
		}
	}
}

// heartbeatLine is the smallest message an agent sends, and the most
// frequent from an idle guest.
func heartbeatLine() []byte {
	e := Envelope{V: 1, Kind: KindHeartbeat, Run: "r7Kq2mX9", Seq: 43,
		TS:   time.Date(2026, 11, 21, 10, 0, 30, 0, time.UTC),
		Data: json.RawMessage(`{"uptime_s":86400,"spooled":0}`)}
	b, _ := Marshal(e)
	return b[:len(b)-1]
}

func BenchmarkDecodeSmall(b *testing.B) {
	line := heartbeatLine()
	b.SetBytes(int64(len(line) + 1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeReference decodes the BenchmarkDecode line with the
// encoding/json implementation Decode replaced, for the ratio.
func BenchmarkDecodeReference(b *testing.B) {
	line := realisticResult(42)
	b.SetBytes(int64(len(line) + 1))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := referenceDecode(line); err != nil {
			b.Fatal(err)
		}
	}
}
