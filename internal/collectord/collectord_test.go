package collectord

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/collector/alertmanager"
	"github.com/guestdiag/guestdiag/internal/amtest"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/webauth"
	"github.com/guestdiag/guestdiag/protocol"
)

// TestRunGuardsDashboardAndAPIWithOneToken runs the collector as its mains
// do, against a real embedded NATS server, and checks what an operator
// relies on: without the token neither the API nor the dashboard answers;
// with it both do.
func TestRunGuardsDashboardAndAPIWithOneToken(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nc, ln, Config{Auth: webauth.Config{Token: "s3cret"}}, slog.New(slog.DiscardHandler))
	}()
	base := "http://" + ln.Addr().String()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, token string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	deadline := time.Now().Add(10 * time.Second)
	for get("/healthz", "").StatusCode != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the collector never became healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tt := range []struct {
		path, token string
		want        int
	}{
		{"/api/vms", "", http.StatusUnauthorized},
		{"/api/alerts", "wrong", http.StatusUnauthorized},
		{"/api/vms", "s3cret", http.StatusOK},
		{"/api/alerts", "s3cret", http.StatusOK},
		{"/", "", http.StatusSeeOther},
		{"/", "s3cret", http.StatusOK},
	} {
		if got := get(tt.path, tt.token).StatusCode; got != tt.want {
			t.Errorf("GET %s with token %q: status %d, want %d", tt.path, tt.token, got, tt.want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of cancel")
	}
}

func TestFinishReadsTheTokenAndChecksURLs(t *testing.T) {
	t.Setenv("GUESTDIAG_TOKEN", "from-env")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	shortKey := filepath.Join(dir, "short-key")
	if err := os.WriteFile(shortKey, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cfg        Config
		tokenFile  string
		sessionKey string
		wantToken  string
		wantErr    string
	}{
		{"the environment gives the token", Config{Collector: withGrace()}, "", "", "from-env", ""},
		{"a token file wins over the environment", Config{Collector: withGrace()}, tokenFile, "", "from-file", ""},
		{"an empty token file is refused", Config{Collector: withGrace()}, empty, "", "", "is empty"},
		{"a session key shorter than 32 bytes is refused", Config{Collector: withGrace()}, "", shortKey, "", "at least 32 random bytes"},
		{"an Alertmanager URL without a scheme is refused", Config{Collector: withGrace(), Alertmanager: amURLs("am:9093")}, "", "", "", "not an http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := (&Pending{cfg: &cfg, tokenFile: tt.tokenFile, sessionKeyFile: tt.sessionKey}).Finish()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Auth.Token != tt.wantToken {
				t.Errorf("token %q, want %q", cfg.Auth.Token, tt.wantToken)
			}
		})
	}
}

func withGrace() collector.Config { return collector.Config{ChannelGrace: time.Minute} }

func amURLs(urls ...string) alertmanager.Config { return alertmanager.Config{URLs: urls} }

// TestIntegrationAlertmanagerSeesAGuestProblemFireAndResolve runs the whole
// collector (as its main does) with the real Alertmanager: a guest's
// failed gateway, published as a relay does, is active in Alertmanager with
// its KB resolution, and resolved there once the guest reports it gone.
func TestIntegrationAlertmanagerSeesAGuestProblemFireAndResolve(t *testing.T) {
	am := amtest.Start(t, amtest.FreeAddr(t))
	_, nc, js := natstest.JetStream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, nc, ln, Config{Alertmanager: alertmanager.Config{URLs: []string{am}, ExternalURL: "http://dash.example"}},
			slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-done })

	report := func(seq uint64, status protocol.Status, findings ...protocol.Finding) {
		t.Helper()
		e := protocol.Envelope{V: protocol.Version, Kind: protocol.KindResult, Run: "r1", Seq: seq, TS: time.Now().UTC(),
			Check: "network", Status: status, Summary: "network " + string(status), Findings: findings}
		line, err := protocol.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		rep := protocol.Report{V: protocol.Version, Host: "kvm-07", VM: "web01", Channel: "/run/ch/web01", Received: time.Now().UTC(), Guest: line[:len(line)-1]}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		defer pcancel()
		// The collector creates the stream; until it has, publishing fails.
		for {
			_, err = js.Publish(pctx, protocol.ReportSubject("kvm-07", "web01", "network"), b, jetstream.WithMsgID(protocol.MsgID("web01", "r1", seq)))
			if err == nil || pctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	type amAlert struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		Status      struct {
			State string `json:"state"`
		} `json:"status"`
	}
	active := func() []amAlert {
		t.Helper()
		resp, err := http.Get(am + "/api/v2/alerts?active=true&silenced=false&inhibited=false")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var as []amAlert
		if err := json.NewDecoder(resp.Body).Decode(&as); err != nil {
			t.Fatal(err)
		}
		return as
	}
	waitFor := func(what string, cond func([]amAlert) bool) []amAlert {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			as := active()
			if cond(as) {
				return as
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s; Alertmanager has %+v", what, as)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	report(1, protocol.StatusCrit, protocol.Finding{Code: "net.gateway_unreachable", Severity: protocol.SeverityCrit,
		Message: "gateway 10.0.2.2 on eth0 answered 0 of 3 pings", Source: "eth0"})
	as := waitFor("the alert active in Alertmanager", func(as []amAlert) bool { return len(as) == 1 })
	a := as[0]
	for k, want := range map[string]string{"alertname": "net.gateway_unreachable", "host": "kvm-07", "vm": "web01", "severity": "crit", "kb_id": "guestdiag.net.gateway_unreachable"} {
		if a.Labels[k] != want {
			t.Errorf("label %s = %q, want %q (labels %v)", k, a.Labels[k], want, a.Labels)
		}
	}
	if !strings.Contains(a.Annotations["resolution"], "ip route show default") {
		t.Errorf("resolution annotation %q does not carry the KB's steps", a.Annotations["resolution"])
	}
	report(2, protocol.StatusOK)
	waitFor("the alert resolved in Alertmanager", func(as []amAlert) bool { return len(as) == 0 })
}
