package collectord

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/webauth"
)

// TestRunGivesDrainToAdminsOnly runs the collector as its mains do, with a
// users file and --admins, against a real embedded NATS server: a viewer
// can drain a host neither through the API nor on the dashboard's
// placement page; an admin can through both, and the mark carries the
// admin's name.
func TestRunGivesDrainToAdminsOnly(t *testing.T) {
	var lines string
	for _, u := range [][2]string{{"ops", "ops-pw"}, {"viewer", "view-pw"}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines += u[0] + ":" + string(h) + "\n"
	}
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, natstest.Start(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, nc, ln, Config{Auth: webauth.Config{UsersFile: users, Admins: []string{"ops"}}})
	base := "http://" + ln.Addr().String()
	do := func(method, path, contentType, body, user, pass string) (int, string) {
		t.Helper()
		return send(t, base, method, path, contentType, body, user, pass)
	}
	drainedBy := func() string {
		t.Helper()
		code, body := do("GET", "/api/placement", "", "", "viewer", "view-pw")
		if code != http.StatusOK {
			t.Fatalf("GET /api/placement = %d %s", code, body)
		}
		var p collector.Placement
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		for _, h := range p.Hosts {
			if h.Host == "kvm-1" && h.Drain != nil {
				return h.Drain.By
			}
		}
		return ""
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := do("GET", "/healthz", "", "", "", ""); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector never became healthy")
		}
		time.Sleep(50 * time.Millisecond)
	}

	const js = "application/json"
	if code, body := do("POST", "/api/hosts/kvm-1/drain", js, `{"reason":"x"}`, "viewer", "view-pw"); code != http.StatusForbidden {
		t.Errorf("a viewer's API drain = %d %s, want 403", code, body)
	}
	if by := drainedBy(); by != "" {
		t.Fatalf("kvm-1 drained by %q after a viewer's refused drain", by)
	}
	if code, body := do("POST", "/api/hosts/kvm-1/drain", js, `{"reason":"kernel"}`, "ops", "ops-pw"); code != http.StatusOK {
		t.Fatalf("an admin's API drain = %d %s, want 200", code, body)
	}
	if by := drainedBy(); by != "ops" {
		t.Errorf("kvm-1 drained by %q, want ops", by)
	}

	form := "application/x-www-form-urlencoded"
	undrain := url.Values{"host": {"kvm-1"}}.Encode()
	if code, body := do("POST", "/placement/undrain", form, undrain, "viewer", "view-pw"); code != http.StatusForbidden || !strings.Contains(body, "may only read") {
		t.Errorf("a viewer's undrain on the page = %d, want 403 saying the viewer may only read", code)
	}
	if by := drainedBy(); by != "ops" {
		t.Errorf("kvm-1 drained by %q after a viewer's refused undrain, want ops", by)
	}
	if code, body := do("POST", "/placement/undrain", form, undrain, "ops", "ops-pw"); code != http.StatusSeeOther {
		t.Errorf("an admin's undrain on the page = %d %s, want 303", code, body)
	}
	if by := drainedBy(); by != "" {
		t.Errorf("kvm-1 still drained by %q after the admin's undrain", by)
	}
}
