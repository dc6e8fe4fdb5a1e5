package collectord

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

func TestRunExportsTheCollectorsCountersWithoutALogin(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := mln.Addr().String()
	mln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nc, ln, Config{MetricsListen: addr}, slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	fetch := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := fetch("/healthz")
		if code == http.StatusOK && body == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d %q, want 200 ok", code, body)
		}
		time.Sleep(10 * time.Millisecond) // polling an HTTP server that starts in the background
	}
	code, body := fetch("/metrics")
	if code != http.StatusOK || !strings.Contains(body, "guestdiag_collector_applied_total 0") || !strings.Contains(body, "guestdiag_collector_poison_total") {
		t.Errorf("/metrics: %d, want 200 with the collector's counters; got\n%s", code, body)
	}
}
