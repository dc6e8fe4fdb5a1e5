package collectord

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"


	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/collector/alertmanager"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/webauth"
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
	tests := []struct {
		name      string
		cfg       Config
		tokenFile string
		wantToken string
		wantErr   string
	}{
		{"the environment gives the token", Config{Collector: withGrace()}, "", "from-env", ""},
		{"a token file wins over the environment", Config{Collector: withGrace()}, tokenFile, "from-file", ""},
		{"an empty token file is refused", Config{Collector: withGrace()}, empty, "", "is empty"},
		{"an Alertmanager URL without a scheme is refused", Config{Collector: withGrace(), Alertmanager: amURLs("am:9093")}, "", "", "not an http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := (&Pending{cfg: &cfg, tokenFile: tt.tokenFile}).Finish()
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
