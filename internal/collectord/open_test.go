package collectord

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

// TestOpenDashboardDrainsOnlyOnLoopback runs the collector as its mains do
// with no authentication, against a real embedded NATS server. On loopback
// (guestdiag up's default) anyone may drain, as the footer says; on every
// address (0.0.0.0) anyone who reaches the port could, so the API and the
// page refuse and say which flags to configure. The wildcard listener is
// reached through 127.0.0.1, which is one of the addresses it serves.
func TestOpenDashboardDrainsOnlyOnLoopback(t *testing.T) {
	const refusal = "--token-file or --users"
	tests := []struct {
		name, listen string
		wantAPI      int
		wantPage     int
		wantText     string
	}{
		{"on loopback anyone may drain and undrain", "127.0.0.1:0", http.StatusOK, http.StatusSeeOther, ""},
		{"on every address drain and undrain are refused", "0.0.0.0:0", http.StatusForbidden, http.StatusForbidden, refusal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := natstest.Connect(t, natstest.Start(t))
			ln, err := net.Listen("tcp", tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			base := "http://127.0.0.1:" + port
			startRun(t, nc, ln, Config{})
			do := func(method, path, contentType, body string) (int, string) {
				t.Helper()
				return send(t, base, method, path, contentType, body, "", "")
			}
			for deadline := time.Now().Add(10 * time.Second); ; {
				code, _ := do("POST", "/api/hosts/kvm-1/drain", "application/json", `{"reason":"kernel"}`)
				if code != http.StatusServiceUnavailable {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the collector never connected to JetStream")
				}
				time.Sleep(50 * time.Millisecond) // polling interval, not a wait for state
			}
			code, body := do("POST", "/api/hosts/kvm-1/undrain", "application/json", "")
			if code != tt.wantAPI || !strings.Contains(body, tt.wantText) {
				t.Errorf("API undrain = %d %s; want %d with %q", code, body, tt.wantAPI, tt.wantText)
			}
			code, body = do("POST", "/placement/drain", "application/x-www-form-urlencoded", url.Values{"host": {"kvm-1"}, "reason": {"disk"}}.Encode())
			if code != tt.wantPage || !strings.Contains(body, tt.wantText) {
				t.Errorf("page drain = %d; want %d with %q: %s", code, tt.wantPage, tt.wantText, body)
			}
			_, page := do("GET", "/placement", "", "")
			if got, want := strings.Contains(page, `action="/placement/`), tt.wantPage == http.StatusSeeOther; got != want {
				t.Errorf("placement page shows drain and undrain forms: got %v, want %v", got, want)
			}
		})
	}
}
