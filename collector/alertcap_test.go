package collector_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// fullFilesystems returns n warn findings of one code, each on its own
// mountpoint named prefix plus a number.
func fullFilesystems(prefix string, n int) []protocol.Finding {
	fs := make([]protocol.Finding, n)
	for i := range fs {
		src := fmt.Sprintf("%s%03d", prefix, i)
		fs[i] = protocol.Finding{Code: "fs.full", Severity: protocol.SeverityWarn, Source: src, Message: src + " is 97% full"}
	}
	return fs
}

// waitAlerts polls until the collector holds n alerts that f selects.
func waitAlerts(t *testing.T, c *collector.Collector, f collector.AlertFilter, n int, within time.Duration) []collector.Alert {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		as := c.Alerts(f)
		if len(as) == n {
			return as
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d alerts (%+v); got %d", n, f, len(as))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTruncatedResultDoesNotResolveFindingsItDropped(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribeAlerts(t)
	col := e.startCollector(t)
	h1 := e.relay(t, "h1")

	fs := fullFilesystems("/mnt/", 40)
	h1.guest("web1", "u1", hello("r1", 1, "web1", t0), t0)
	h1.guest("web1", "u1", withFindings(result("r1", 2, "resources", protocol.StatusWarn, t0), fs...), t0.Add(time.Second))
	waitAlerts(t, col.c, collector.AlertFilter{Code: "fs.full", State: collector.AlertFiring}, 32, 5*time.Second)

	// The same 40 conditions in the opposite order: the 32 stored now
	// leave out 8 that fired, and raise 8 that did not.
	reversed := slices.Clone(fs)
	slices.Reverse(reversed)
	h1.guest("web1", "u1", withFindings(result("r1", 3, "resources", protocol.StatusWarn, t0), reversed...), t0.Add(2*time.Second))
	waitAlerts(t, col.c, collector.AlertFilter{Code: "fs.full", State: collector.AlertFiring}, 40, 5*time.Second)
	e.waitConsumerIdle(t)
	for _, p := range sub.all() {
		if p.alert.Key.Code == "fs.full" && p.alert.State == collector.AlertResolved {
			t.Errorf("alert of %s resolved while its condition still held", p.alert.Key.Source)
		}
	}

	// A complete result without the findings does resolve them.
	h1.guest("web1", "u1", result("r1", 4, "resources", protocol.StatusOK, t0), t0.Add(3*time.Second))
	waitAlerts(t, col.c, collector.AlertFilter{Code: "fs.full", State: collector.AlertResolved}, 40, 5*time.Second)
}
