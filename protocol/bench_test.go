package protocol

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// realisticResult is shaped like a resources result with top processes: the
// most common and largest message an agent sends.
func realisticResult(seq uint64) []byte {
	ts := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	procs := make([]map[string]any, 10)
	for i := range procs {
		procs[i] = map[string]any{"pid": 1000 + i, "name": fmt.Sprintf("worker-%d", i), "user": "www-data", "cpu_pct": 12.5, "rss": 123456789}
	}
	data, _ := json.Marshal(map[string]any{
		"cpu":     map[string]any{"total": 93.1, "user": 80.2, "system": 10.1, "iowait": 1.2, "steal": 0.4},
		"mem":     map[string]any{"total": int64(8 << 30), "used": int64(6 << 30), "pct": 75.0},
		"load":    []float64{3.1, 2.7, 2.2},
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
