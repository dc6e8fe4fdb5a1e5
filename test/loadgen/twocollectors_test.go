package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/collector/dashboard"
	"github.com/guestdiag/guestdiag/hostrelay"
	"github.com/guestdiag/guestdiag/internal/natstest"
)

// TestEitherCollectorServesTheWholeFleet runs a fleet through a relay into
// the three-node cluster with two collectors on the shared durable, each
// connected to a different node, and asks each for the fleet, an alert
// and the dashboard's fleet page: whichever collector a load balancer picks
// must show all of it, since each applies only part of the stream.
func TestIntegrationEitherCollectorServesTheWholeFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster with R3 buckets takes tens of seconds to set up on a busy machine; run without -short")
	}
	if underRace {
		t.Skip("under the race detector the three-node cluster's R3 set-up and alerts take minutes; make test-vmlab runs this without it")
	}
	cl := natstest.StartCluster(t, 3)
	urls := strings.Split(cl.URLs(), ",")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const vms = 30
	f, err := Start(ctx, Config{VMs: vms, Dir: shortDir(t), Speed: 20, BurstLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var addrs []string
	for i := range 2 {
		nc, err := nats.Connect(urls[i])
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		cfg := collector.Config{Replicas: 3, UI: func(c *collector.Collector) http.Handler {
			return dashboard.New(c, dashboard.Config{Token: "secret"}, slog.New(slog.DiscardHandler))
		}}
		c := collector.New(cfg, nc, slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, "http://"+ln.Addr().String())
		done := make(chan error, 1)
		go func() { done <- c.Serve(ctx, ln) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("collector %d: Serve returned %v, want nil", i+1, err)
			}
		}()
		// One after the other, as docs/deploy.md says: two collectors
		// creating the same R3 buckets at once each wait out a request
		// timeout per bucket (45 s of this test's minute, measured).
		a := addrs[i]
		waitWithin(t, 2*time.Minute, "collector "+a+" to be ready", func() bool { return status(a+"/healthz") == http.StatusOK })
	}
	// The collectors made the R3 stream; the relay, which does not know the
	// replica count, must find it made.
	stop := runRelay(t, urls[2], hostrelay.Config{Host: "hv1", Globs: []string{}, Static: f.Channels(), ProxmoxGlob: "-", HostUsageInterval: -1})
	defer stop()
	waitFor(t, "a round of every check to be acked", func() bool { return f.Stats().Acked >= vms*10 })
	f.Crit(7)
	crit := f.Channels()[7].Name

	for i, a := range addrs {
		t.Run(fmt.Sprintf("collector %d lists every VM and the alert", i+1), func(t *testing.T) {
			waitFor(t, "every VM in /api/vms", func() bool {
				var list []collector.VM
				return getJSON(a+"/api/vms", &list) && len(list) == vms
			})
			waitFor(t, "the firewall alert of "+crit, func() bool {
				var alerts []collector.Alert
				if !getJSON(a+"/api/alerts", &alerts) {
					return false
				}
				for _, al := range alerts {
					if al.Key.VM == crit && al.Key.Check == "firewall" {
						return true
					}
				}
				return false
			})
			req, _ := http.NewRequest(http.MethodGet, a+"/", nil)
			req.Header.Set("Authorization", "Bearer secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), crit) {
				t.Errorf("dashboard fleet page: got %d, %d bytes without %s; want 200 naming it", resp.StatusCode, len(body), crit)
			}
		})
	}
	logBucketSizes(t, urls[0])
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getJSON(url string, v any) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// tlog writes a collector's warnings to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// logBucketSizes logs the bytes per record of the VM and liveness buckets,
// the figures docs/capacity.md takes KV bytes from.
func logBucketSizes(t *testing.T, url string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range []string{collector.DefaultBucket, collector.DefaultLivenessBucket} {
		st, err := js.Stream(ctx, "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		s := st.CachedInfo().State
		t.Logf("bucket %s: %d records, %d bytes, %.0f bytes per record", b, s.Msgs, s.Bytes, float64(s.Bytes)/float64(max(1, s.Msgs)))
	}
}
