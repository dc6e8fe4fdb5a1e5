package alertmanager

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/collector"
)

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	return New(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
}

// popped lists what the queue holds, oldest first, as vm/state.
func popped(c *Client) []string {
	var got []string
	for batch := c.pop(); len(batch) > 0; batch = c.pop() {
		for _, a := range batch {
			got = append(got, a.Key.VM+"/"+string(a.State))
		}
	}
	return got
}

func TestQueue(t *testing.T) {
	a := testAlert("vm1", "disk.full")
	b := testAlert("vm2", "disk.full")
	older := a
	older.Updated = a.Updated.Add(-time.Second)
	refired := a
	refired.Updated = time.Now().Add(time.Hour)
	tests := []struct {
		name string
		// sent are queued and popped first, as if Run had sent them.
		sent   []collector.Alert
		queued []collector.Alert
		want   []string
	}{
		{
			name:   "alerts leave in the order they came",
			queued: []collector.Alert{a, b},
			want:   []string{"vm1/firing", "vm2/firing"},
		},
		{
			name:   "a resolve replaces the queued firing state of its alert, in its place",
			queued: []collector.Alert{a, b, resolvedAlert(a)},
			want:   []string{"vm1/resolved", "vm2/firing"},
		},
		{
			name:   "a resend of an older firing state does not overtake a queued resolve",
			queued: []collector.Alert{resolvedAlert(a), a, older},
			want:   []string{"vm1/resolved"},
		},
		{
			name:   "a resend of an older firing state after the resolve was sent is ignored",
			sent:   []collector.Alert{resolvedAlert(a)},
			queued: []collector.Alert{a, b},
			want:   []string{"vm2/firing"},
		},
		{
			name:   "an alert firing again after its resolve is sent",
			sent:   []collector.Alert{resolvedAlert(a)},
			queued: []collector.Alert{refired},
			want:   []string{"vm1/firing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, Config{})
			c.enqueue(tt.sent)
			popped(c)
			c.enqueue(tt.queued)
			if got := popped(c); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("queue holds %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQueueBound(t *testing.T) {
	t.Run("a full queue drops its oldest alerts and counts them", func(t *testing.T) {
		c := newTestClient(t, Config{QueueSize: 3})
		for i := range 5 {
			if err := c.Notify(t.Context(), testAlert(fmt.Sprint("vm", i), "disk.full")); err != nil {
				t.Fatalf("notify: %v", err)
			}
		}
		if got, want := c.Stats(), (Stats{Queued: 3, Dropped: 2}); got != want {
			t.Errorf("stats %+v, want %+v", got, want)
		}
		if got, want := fmt.Sprint(popped(c)), "[vm2/firing vm3/firing vm4/firing]"; got != want {
			t.Errorf("queue holds %v, want %v", got, want)
		}
	})
	t.Run("a batch put back after a failure is the oldest and goes first", func(t *testing.T) {
		c := newTestClient(t, Config{QueueSize: 3})
		c.enqueue([]collector.Alert{testAlert("vm0", "x"), testAlert("vm1", "x")})
		batch := c.pop()
		c.enqueue([]collector.Alert{testAlert("vm2", "x"), testAlert("vm3", "x")})
		c.requeue(batch)
		if got, want := fmt.Sprint(popped(c)), "[vm1/firing vm2/firing vm3/firing]"; got != want {
			t.Errorf("queue holds %v, want %v", got, want)
		}
		if got := c.Stats().Dropped; got != 1 {
			t.Errorf("dropped %d, want 1", got)
		}
	})
	t.Run("notify with a cancelled context queues nothing", func(t *testing.T) {
		c := newTestClient(t, Config{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.Notify(ctx, testAlert("vm1", "x")); err == nil {
			t.Errorf("notify with a cancelled context succeeded")
		}
		if got := c.Stats().Queued; got != 0 {
			t.Errorf("queued %d, want 0", got)
		}
	})
}

// TestPost uses an httptest server as a stand-in for what the real
// Alertmanager cannot be made to do: answer with a huge body, check
// credentials.
func TestPost(t *testing.T) {
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		if r.URL.Path != "/prefix/api/v2/alerts" {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		http.Error(w, "\x1b[31m"+strings.Repeat("x", 10000), http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	base := strings.Replace(srv.URL, "http://", "http://user:secret@", 1) + "/prefix"

	t.Run("an error answer names the URL and status and quotes the body, bounded", func(t *testing.T) {
		c := newTestClient(t, Config{HTTPClient: srv.Client()})
		err := c.post(t.Context(), base, []byte("[]"))
		if err == nil {
			t.Fatal("post succeeded, want an error")
		}
		msg := err.Error()
		for _, want := range []string{srv.URL[len("http://"):] + "/prefix/api/v2/alerts", "503 Service Unavailable", `"\x1b[31mxxx`} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %.200q does not contain %q", msg, want)
			}
		}
		if strings.Contains(msg, "secret") {
			t.Errorf("error %.200q shows the password", msg)
		}
		if len(msg) > maxBody+200 {
			t.Errorf("error is %d bytes, want the body bounded to %d", len(msg), maxBody)
		}
	})
	auths := []struct {
		name string
		cfg  Config
		want string
	}{
		{"basic auth is sent when a username is set", Config{Username: "am", Password: "pw"}, "Basic YW06cHc="},
		{"a bearer token is sent when set", Config{BearerToken: "tok"}, "Bearer tok"},
		{"nothing is sent without credentials", Config{}, ""},
	}
	for _, tt := range auths {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.HTTPClient = srv.Client()
			c := newTestClient(t, tt.cfg)
			_ = c.post(t.Context(), srv.URL+"/prefix", []byte("[]"))
			if gotAuth != tt.want {
				t.Errorf("Authorization %q, want %q", gotAuth, tt.want)
			}
		})
	}
}

func TestRunConfig(t *testing.T) {
	tests := []struct {
		name string
		urls []string
	}{
		{"run without a URL fails", nil},
		{"run with a URL that is not http fails", []string{"ftp://am:secret@am:9093"}},
		{"run with a URL that does not parse fails", []string{"http://am:secret@am:9093/%zz"}},
		{"run with a URL without a host fails", []string{"http:///api"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, Config{URLs: tt.urls})
			err := c.Run(t.Context(), nil)
			if err == nil {
				t.Fatalf("run with URLs %q returned nil, want an error", tt.urls)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}
