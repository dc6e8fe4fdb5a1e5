package alertmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/amtest"
)

func runClient(t *testing.T, cfg Config, firing func() []collector.Alert) (c *Client, stop func()) {
	t.Helper()
	c = newTestClient(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, firing) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// gettableAlert is what GET /api/v2/alerts says of an alert.
type gettableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

// activeAlerts lists the alerts the Alertmanager at base has not resolved
// (active, or not yet processed), by vm, alertname and severity.
func activeAlerts(t *testing.T, base string) map[string]gettableAlert {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts?active=true")
	if err != nil {
		t.Fatalf("get alerts: %v", err)
	}
	defer resp.Body.Close()
	var list []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("decode alerts: %v", err)
	}
	got := make(map[string]gettableAlert)
	for _, a := range list {
		got[a.Labels["vm"]+"/"+a.Labels["alertname"]+"/"+a.Labels["severity"]] = a
	}
	return got
}

// waitFor polls cond until it holds or 20 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegrationFiringThenResolved(t *testing.T) {
	am1 := amtest.Start(t, amtest.FreeAddr(t))
	am2 := amtest.Start(t, amtest.FreeAddr(t))
	firing := testAlert("vm1", "disk.full")
	// A resend interval long enough that only our resolve can end the alert
	// within the test.
	c, _ := runClient(t, Config{
		URLs:        []string{am1, am2},
		ExternalURL: "https://dash.example/",
	}, nil)

	if err := c.Notify(t.Context(), firing); err != nil {
		t.Fatalf("notify: %v", err)
	}
	wantLabels := map[string]string{
		"alertname": "disk.full", "host": "host1", "vm": "vm1", "check": "disk",
		"severity": "crit", "source": "/var", "kb_id": "disk.full", "team": "storage",
	}
	for _, am := range []string{am1, am2} {
		var got gettableAlert
		waitFor(t, "the alert active in "+am, func() bool {
			var ok bool
			got, ok = activeAlerts(t, am)["vm1/disk.full/crit"]
			return ok && got.Status.State == "active"
		})
		if !maps.Equal(got.Labels, wantLabels) {
			t.Errorf("labels in %s:\n got %v\nwant %v", am, got.Labels, wantLabels)
		}
		if want := "1. Run du -xh /var | sort -h | tail.\n2. Remove or rotate what is not needed."; got.Annotations["resolution"] != want {
			t.Errorf("resolution in %s %q, want %q", am, got.Annotations["resolution"], want)
		}
		for k, want := range map[string]string{
			"summary": firing.Summary, "description": "Files or logs filled the filesystem.",
			"runbook_url": "https://example.org/runbooks/disk-full", "kb_title": "Filesystem almost full",
		} {
			if got.Annotations[k] != want {
				t.Errorf("annotation %s in %s %q, want %q", k, am, got.Annotations[k], want)
			}
		}
		if want := "https://dash.example/vm/host1/vm1"; got.GeneratorURL != want {
			t.Errorf("generatorURL %q, want %q", got.GeneratorURL, want)
		}
		if !got.StartsAt.Equal(firing.StartsAt) {
			t.Errorf("startsAt %v, want %v", got.StartsAt, firing.StartsAt)
		}
	}

	if err := c.Notify(t.Context(), resolvedAlert(firing)); err != nil {
		t.Fatalf("notify: %v", err)
	}
	for _, am := range []string{am1, am2} {
		waitFor(t, "the alert resolved in "+am, func() bool { return len(activeAlerts(t, am)) == 0 })
	}
}

func TestIntegrationStaleResendDoesNotReviveResolved(t *testing.T) {
	am := amtest.Start(t, amtest.FreeAddr(t))
	firing := testAlert("vm1", "disk.full")
	// The lifecycle's view of what fires lags behind the resolve below.
	var resends atomic.Int64
	c, _ := runClient(t, Config{URLs: []string{am}, ResendInterval: 200 * time.Millisecond},
		func() []collector.Alert {
			resends.Add(1)
			return []collector.Alert{firing}
		})
	if err := c.Notify(t.Context(), firing); err != nil {
		t.Fatalf("notify: %v", err)
	}
	waitFor(t, "the alert active", func() bool { return len(activeAlerts(t, am)) == 1 })
	if err := c.Notify(t.Context(), resolvedAlert(firing)); err != nil {
		t.Fatalf("notify: %v", err)
	}
	waitFor(t, "the alert resolved", func() bool { return len(activeAlerts(t, am)) == 0 })
	after := resends.Load()
	waitFor(t, "two more resends", func() bool { return resends.Load() >= after+2 })
	if got := activeAlerts(t, am); len(got) != 0 {
		t.Errorf("after resends of the stale firing state, active alerts %v, want none", sortedKeys(got))
	}
}

func TestIntegrationResendKeepsFiringAlive(t *testing.T) {
	am := amtest.Start(t, amtest.FreeAddr(t))
	a := testAlert("vm1", "disk.full")
	c, stop := runClient(t, Config{URLs: []string{am}, ResendInterval: 300 * time.Millisecond},
		func() []collector.Alert { return []collector.Alert{a} })
	if err := c.Notify(t.Context(), a); err != nil {
		t.Fatalf("notify: %v", err)
	}
	var first time.Time
	waitFor(t, "the alert active", func() bool {
		got, ok := activeAlerts(t, am)["vm1/disk.full/crit"]
		first = got.EndsAt
		return ok
	})
	// Each resend moves endsAt on; three of them outlive the first endsAt.
	waitFor(t, "resends to carry the alert past its first endsAt", func() bool {
		got, ok := activeAlerts(t, am)["vm1/disk.full/crit"]
		return ok && time.Now().After(first) && got.EndsAt.After(first)
	})

	stop()
	waitFor(t, "Alertmanager to resolve the alert of a dead collector by itself", func() bool {
		return len(activeAlerts(t, am)) == 0
	})
}

func TestIntegrationHostileText(t *testing.T) {
	am := amtest.Start(t, amtest.FreeAddr(t))
	c, _ := runClient(t, Config{URLs: []string{am}}, nil)
	a := testAlert("vm1", "log.match")
	a.Key.Source = "line1\nline2 <script>alert(1)</script> \xff\xfe end"
	a.Labels = map[string]string{"unit-name.service": "x\ty"}
	a.Evidence.Finding.Message = "kernel: \x1b[2J<img src=x onerror=alert(1)>\xc3"
	if err := c.Notify(t.Context(), a); err != nil {
		t.Fatalf("notify: %v", err)
	}
	var got gettableAlert
	waitFor(t, "the alert active", func() bool {
		var ok bool
		got, ok = activeAlerts(t, am)["vm1/log.match/crit"]
		return ok
	})
	for _, tt := range []struct{ where, got, want string }{
		{"label source", got.Labels["source"], "line1\nline2 <script>alert(1)</script> \uFFFD end"},
		{"label unit_name_service", got.Labels["unit_name_service"], "x\ty"},
		{"annotation evidence", got.Annotations["evidence"], "kernel: \x1b[2J<img src=x onerror=alert(1)>\uFFFD"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s %q, want %q", tt.where, tt.got, tt.want)
		}
	}
	if s := c.Stats(); s.Rejected != 0 || s.Failed != 0 {
		t.Errorf("stats %+v, want nothing rejected or failed", s)
	}
}

func TestIntegrationSeverityChangeResolvesTheOldLabels(t *testing.T) {
	am := amtest.Start(t, amtest.FreeAddr(t))
	c, _ := runClient(t, Config{URLs: []string{am}}, nil)
	warn := testAlert("vm1", "disk.full")
	warn.Severity = "warn"
	if err := c.Notify(t.Context(), warn); err != nil {
		t.Fatalf("notify: %v", err)
	}
	waitFor(t, "the warn alert active", func() bool {
		_, ok := activeAlerts(t, am)["vm1/disk.full/warn"]
		return ok
	})
	crit := warn
	crit.Severity = "crit"
	crit.Updated = warn.Updated.Add(time.Second)
	if err := c.Notify(t.Context(), crit); err != nil {
		t.Fatalf("notify: %v", err)
	}
	waitFor(t, "the crit alert alone active", func() bool {
		got := activeAlerts(t, am)
		_, ok := got["vm1/disk.full/crit"]
		return ok && len(got) == 1
	})
}

func TestIntegrationRetries(t *testing.T) {
	t.Run("an Alertmanager that hangs then answers 500 holds up no Notify and is retried", func(t *testing.T) {
		am := amtest.Start(t, amtest.FreeAddr(t))
		target, _ := url.Parse(am)
		proxy := httputil.NewSingleHostReverseProxy(target)
		var calls atomic.Int64
		hung, release := make(chan struct{}), make(chan struct{})
		// In front of the real Alertmanager: the first POST hangs until
		// released, the first two fail with 500, the rest go through.
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch calls.Add(1) {
			case 1:
				close(hung)
				<-release
				fallthrough
			case 2:
				http.Error(w, "overloaded", http.StatusInternalServerError)
			default:
				proxy.ServeHTTP(w, r)
			}
		}))
		defer front.Close()
		c, _ := runClient(t, Config{URLs: []string{front.URL}}, nil)
		if err := c.Notify(t.Context(), testAlert("vm1", "disk.full")); err != nil {
			t.Fatalf("notify: %v", err)
		}
		<-hung
		for i := 2; i < 200; i++ {
			if err := c.Notify(t.Context(), testAlert(fmt.Sprint("vm", i), "disk.full")); err != nil {
				t.Fatalf("notify: %v", err)
			}
		}
		close(release)
		waitFor(t, "all 199 alerts active", func() bool { return len(activeAlerts(t, am)) == 199 })
		if s := c.Stats(); s.Failed != 2 || s.Dropped != 0 || s.Queued != 0 {
			t.Errorf("stats %+v, want 2 failed, none dropped or queued", s)
		}
	})
	t.Run("an Alertmanager that is down is retried until it is up", func(t *testing.T) {
		addr := amtest.FreeAddr(t)
		c, _ := runClient(t, Config{URLs: []string{"http://" + addr}}, nil)
		if err := c.Notify(t.Context(), testAlert("vm1", "disk.full")); err != nil {
			t.Fatalf("notify: %v", err)
		}
		waitFor(t, "a failed POST", func() bool { return c.Stats().Failed > 0 })
		am := amtest.Start(t, addr)
		waitFor(t, "the alert active", func() bool { return len(activeAlerts(t, am)) == 1 })
	})
	t.Run("a dead Alertmanager of a pair does not hold up the live one", func(t *testing.T) {
		am := amtest.Start(t, amtest.FreeAddr(t))
		c, _ := runClient(t, Config{URLs: []string{"http://" + amtest.FreeAddr(t), am}}, nil)
		if err := c.Notify(t.Context(), testAlert("vm1", "disk.full")); err != nil {
			t.Fatalf("notify: %v", err)
		}
		waitFor(t, "the alert active in the live one", func() bool { return len(activeAlerts(t, am)) == 1 })
		waitFor(t, "the client to count it sent", func() bool { return c.Stats().Sent == 1 })
		if s := c.Stats(); s.Failed != 1 || s.Queued != 0 {
			t.Errorf("stats %+v, want the one POST to the dead one failed and nothing queued for retry", s)
		}
	})
	t.Run("a refusal of invalid alerts names the URL, quotes the complaint and is final", func(t *testing.T) {
		am := amtest.Start(t, amtest.FreeAddr(t))
		c := newTestClient(t, Config{URLs: []string{am}})
		err := c.post(t.Context(), am, []byte(`[{"labels":{"bad-name":"x"}}]`))
		var se *statusError
		if !errors.As(err, &se) || se.retryable() || !strings.Contains(err.Error(), "400 Bad Request") ||
			!strings.Contains(err.Error(), `invalid label set`) || !strings.Contains(err.Error(), am[len("http://"):]) {
			t.Errorf("post of an invalid alert: %v, want a 400 naming the URL and quoting Alertmanager's complaint", err)
		}
	})
}

func TestIntegrationQueueBound(t *testing.T) {
	am := amtest.Start(t, amtest.FreeAddr(t))
	cfg := Config{URLs: []string{am}, QueueSize: 3}
	c := newTestClient(t, cfg)
	for i := range 5 {
		if err := c.Notify(t.Context(), testAlert(fmt.Sprint("vm", i), "disk.full")); err != nil {
			t.Fatalf("notify: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, nil) }()
	defer func() {
		cancel()
		<-done
	}()
	var got map[string]gettableAlert
	waitFor(t, "three alerts active", func() bool {
		got = activeAlerts(t, am)
		return len(got) >= 3
	})
	want := []string{"vm2/disk.full/crit", "vm3/disk.full/crit", "vm4/disk.full/crit"}
	if keys := fmt.Sprint(sortedKeys(got)); keys != fmt.Sprint(want) {
		t.Errorf("active %v, want the newest three %v", keys, want)
	}
	// Alertmanager may show the alerts before its answer reaches us.
	waitFor(t, "the client to count three sent", func() bool { return c.Stats().Sent == 3 })
	if s := c.Stats(); s.Dropped != 2 {
		t.Errorf("stats %+v, want 2 dropped", s)
	}
}

func sortedKeys(m map[string]gettableAlert) []string {
	return slices.Sorted(maps.Keys(m))
}
