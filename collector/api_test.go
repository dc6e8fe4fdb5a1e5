package collector

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func TestAPI(t *testing.T) {
	c := New(Config{}, nil, slog.New(slog.DiscardHandler))
	for _, v := range []VM{
		{Name: "web1", Host: "h2"},
		{Name: "web1", Host: "h1"},
		{Name: "db 1", Host: "h1"},
		{Name: "app", Host: "h2"},
		{Name: "a/b", Host: "h3"},
	} {
		c.vms[Key(v.Host, v.Name)] = v
	}
	c.ready, c.live.ready = true, true
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()

	tests := []struct {
		name      string
		method    string
		path      string
		wantCode  int
		wantVMs   []string // host/name of the VMs returned, in order
		wantError bool
		wantCands []string
	}{
		{"the list is sorted by host then name", "GET", "/api/vms", 200, []string{"h1/db 1", "h1/web1", "h2/app", "h2/web1", "h3/a/b"}, false, nil},
		{"a unique name needs no host", "GET", "/api/vms/app", 200, []string{"h2/app"}, false, nil},
		{"an escaped name is found", "GET", "/api/vms/db%201", 200, []string{"h1/db 1"}, false, nil},
		{"a name with a slash is found", "GET", "/api/vms/a%2Fb", 200, []string{"h3/a/b"}, false, nil},
		{"a name on two hosts is ambiguous", "GET", "/api/vms/web1", 409, nil, true, []string{"h1", "h2"}},
		{"host picks one of an ambiguous name", "GET", "/api/vms/web1?host=h2", 200, []string{"h2/web1"}, false, nil},
		{"an unknown name is not found", "GET", "/api/vms/nope", 404, nil, true, nil},
		{"a name on another host is not found", "GET", "/api/vms/app?host=h1", 404, nil, true, nil},
		{"other methods are refused", "POST", "/api/vms", 405, nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status: got %d, want %d; body %s", resp.StatusCode, tt.wantCode, body)
			}
			if tt.wantError {
				var e APIError
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body: got %s (%v), want {\"error\":...}", body, err)
				}
				if !slices.Equal(e.Candidates, tt.wantCands) {
					t.Errorf("candidates: got %q, want %q", e.Candidates, tt.wantCands)
				}
			}
			if tt.wantVMs == nil {
				return
			}
			var vms []VM
			if body[0] == '{' {
				vms = make([]VM, 1)
				err = json.Unmarshal(body, &vms[0])
			} else {
				err = json.Unmarshal(body, &vms)
			}
			if err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			var got []string
			for _, v := range vms {
				got = append(got, v.Host+"/"+v.Name)
			}
			if !slices.Equal(got, tt.wantVMs) {
				t.Errorf("vms: got %q, want %q", got, tt.wantVMs)
			}
		})
	}
}

func TestAPIBeforeStateIsLoaded(t *testing.T) {
	c := New(Config{}, nil, slog.New(slog.DiscardHandler))
	h := c.Handler()
	for _, path := range []string{"/api/vms", "/api/vms/web1", "/healthz"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("GET %s before the watcher loaded the bucket: got %d, want 503", path, rec.Code)
		}
	}
	c.ready = true
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /healthz with the VM records loaded but not the liveness records: got %d, want 503", rec.Code)
	}
	c.live.ready = true
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /healthz once loaded: got %d, want 200", rec.Code)
	}
}

func TestAPIShowsHeartbeatsFromTheLivenessTable(t *testing.T) {
	c := New(Config{}, nil, slog.New(slog.DiscardHandler))
	c.ready, c.live.ready = true, true
	// web1's newest result is later than its newest heartbeat; db1's is
	// earlier; new1 has sent nothing but a heartbeat yet.
	c.vms[Key("h1", "web1")] = VM{Name: "web1", Host: "h1", LastSeen: t0.Add(5 * time.Second)}
	c.vms[Key("h1", "db1")] = VM{Name: "db1", Host: "h1", LastSeen: t0}
	for _, b := range []struct {
		vm string
		at time.Duration
	}{{"web1", 3 * time.Second}, {"db1", 4 * time.Second}, {"new1", 6 * time.Second}} {
		c.beat("h1", b.vm, &Heartbeat{UptimeSec: 60, Origin: Origin{Run: "r1", Seq: 2, Received: t0.Add(b.at)}})
	}
	rec := httptest.NewRecorder()
	c.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/vms", nil))
	var vms []VM
	if err := json.Unmarshal(rec.Body.Bytes(), &vms); err != nil {
		t.Fatalf("GET /api/vms: %v; body %s", err, rec.Body)
	}
	got := make(map[string]string)
	for _, v := range vms {
		hb := "no heartbeat"
		if v.Heartbeat != nil {
			hb = "heartbeat " + v.Heartbeat.Received.Sub(t0).String()
		}
		got[v.Name] = "last seen " + v.LastSeen.Sub(t0).String() + ", " + hb
	}
	tests := []struct{ vm, want string }{
		{"web1", "last seen 5s, heartbeat 3s"},
		{"db1", "last seen 4s, heartbeat 4s"},
		{"new1", "last seen 6s, heartbeat 6s"},
	}
	for _, tt := range tests {
		if got[tt.vm] != tt.want {
			t.Errorf("%s: got %q, want %q", tt.vm, got[tt.vm], tt.want)
		}
	}
	if len(vms) != 3 {
		t.Errorf("VMs listed: got %d, want 3", len(vms))
	}
}
