// Package amtest starts the real Prometheus Alertmanager (Debian's
// prometheus-alertmanager) on loopback for tests.
package amtest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Binary is the Alertmanager command Debian installs.
const Binary = "prometheus-alertmanager"

// Path finds the real Alertmanager, or skips the test (fails it when
// GUESTDIAG_REQUIRE_ALERTMANAGER is set).
func Path(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath(Binary)
	if err != nil {
		if os.Getenv("GUESTDIAG_REQUIRE_ALERTMANAGER") != "" {
			t.Fatalf("%s not installed and GUESTDIAG_REQUIRE_ALERTMANAGER is set; run scripts/deps.sh", Binary)
		}
		t.Skipf("%s not installed; run scripts/deps.sh", Binary)
	}
	return path
}

// FreeAddr returns a loopback address nothing listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs the real Alertmanager on addr, routing everything to a
// receiver that notifies no one, without clustering, until the test ends.
// It returns its base URL once it is ready.
func Start(t testing.TB, addr string) string {
	t.Helper()
	bin := Path(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(config, []byte("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "alertmanager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+config,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("alertmanager exited before it was ready:\n%s", out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("alertmanager not ready on %s after 20 s:\n%s", addr, out)
		}
	}
}

// runClient runs a Client until the test ends or stop is called.
