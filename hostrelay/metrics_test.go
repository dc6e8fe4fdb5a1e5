package hostrelay

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRelayExportsMetricsPerVMWhileItIsWatched(t *testing.T) {
	addr := freeAddr(t)
	r, _, q, _ := startOneVM(t, func(cfg *Config) { cfg.MetricsListen = addr })
	g := q.accept(t)
	g.send(t, helloLine(t, "r1", 1, "web01"), resultLine(t, "r1", 2, "resources"), resultLine(t, "r1", 3, "invented"), []byte("garbage\n"))
	g.mustAck(t, "r1", 2)
	eventually(t, "the garbage to be counted", func() bool { return r.Stats()["web01"].Dropped[DropMalformed] == 1 })

	eventually(t, "/healthz to say ok", func() bool {
		code, body := get(t, "http://"+addr+"/healthz")
		return code == http.StatusOK && body == "ok\n"
	})
	_, body := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`guestdiag_relay_vm_connected{vm="web01"} 1`,
		`guestdiag_relay_vm_messages_total{vm="web01"} 2`,
		`guestdiag_relay_vm_rejects_total{reason="malformed",vm="web01"} 1`,
		`guestdiag_relay_vm_rejects_total{reason="unknown_check",vm="web01"} 1`,
		`guestdiag_relay_publish_seconds_count 2`,
		`guestdiag_relay_nats_connected 1`,
		`guestdiag_relay_channels 1`,
		`guestdiag_relay_inflight_bytes_limit 1.6777216e+07`,
		`guestdiag_relay_vm_lag_seconds{vm="web01"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The channel goes: so do its series.
	if err := os.RemoveAll(filepath.Dir(q.path)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the vanished VM's series to go", func() bool {
		_, body := get(t, "http://"+addr+"/metrics")
		return !strings.Contains(body, `vm="web01"`) && strings.Contains(body, "guestdiag_relay_channels 0")
	})
}
