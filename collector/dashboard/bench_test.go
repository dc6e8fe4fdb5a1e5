package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// bigFleet is 20 hosts × 500 VMs with the six checks each (about one in
// twelve not ok) and 300 firing alerts.
func bigFleet() *fakeSource {
	f := newFakeSource()
	statuses := []protocol.Status{protocol.StatusOK, protocol.StatusOK, protocol.StatusOK, protocol.StatusOK, protocol.StatusOK,
		protocol.StatusOK, protocol.StatusOK, protocol.StatusOK, protocol.StatusOK, protocol.StatusOK, protocol.StatusWarn, protocol.StatusCrit}
	n := 0
	for h := range 20 {
		host := fmt.Sprintf("kvm-%02d.dc1.example.net", h)
		for v := range 500 {
			name := fmt.Sprintf("vm-%02d-%03d.prod", h, v)
			checks := make(map[string]*collector.Check, len(fleetChecks))
			for i, c := range fleetChecks {
				checks[c] = check(statuses[(n+i*7)%len(statuses)], "summary of "+c, nil)
			}
			f.vms = append(f.vms, vmRecord(host, name, checks))
			if n%33 == 0 {
				f.alerts = append(f.alerts, collector.Alert{
					Fingerprint: name, Key: collector.AlertKey{Host: host, VM: name, Check: "resources", Code: "res.disk_full", Source: "/var"},
					State: collector.AlertFiring, Severity: []string{"crit", "warn", "info"}[n%3],
					Summary: "/var is 97% full on " + name, StartsAt: t0.Add(-time.Duration(n) * time.Second),
				})
			}
			n++
		}
	}
	return f
}

// BenchmarkFleetPage10k renders the fleet page of 10,000 VMs, from the
// Source's answers to the bytes sent: go test -bench FleetPage10k
// -benchmem ./collector/dashboard.
func BenchmarkFleetPage10k(b *testing.B) {
	f := bigFleet()
	benchPage(b, openHandler(b, f), "/")
	b.ReportMetric(float64(len(f.alerts)), "firing_alerts")
}

// benchPage renders path with h in a loop and reports ms/op and the
// page's size.
func benchPage(b *testing.B, h http.Handler, path string) {
	b.ReportAllocs()
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			b.Fatalf("GET %s = %d", path, rec.Code)
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64(size), "page_bytes")
}
