package wine

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/winetest"
)

// agentConfig is the config the agent runs with under Wine. The network
// check stays off: outside a network namespace it would ping real
// addresses. The logs check stays off: Wine aborts the whole process on
// wevtapi's EvtCreateBookmark (TestIntegrationWineChecks shows it).
const agentConfig = `{"checks":{"network":{"enabled":false},"logs":{"enabled":false}}}`

// wineAgent is a prefix with the agent built and copied into it, as an
// installer would place it, and its config file beside it.
type wineAgent struct {
	*winetest.Prefix
	Exe    string // host path of the .exe inside the prefix
	WinExe string // its Windows path
	Config string // Windows path of agentConfig
}

func newWineAgent(t *testing.T) *wineAgent {
	t.Helper()
	winetest.Require(t)
	built := winetest.Build(t, "github.com/guestdiag/guestdiag/cmd/guestdiag-agent")
	p := winetest.NewPrefix(t)
	a := &wineAgent{Prefix: p, WinExe: `C:\guestdiag\guestdiag-agent.exe`, Config: `C:\guestdiag\agent.json`}
	a.Exe = p.HostPath(a.WinExe)
	copyFile(t, built, a.Exe)
	if err := os.WriteFile(p.HostPath(a.Config), []byte(agentConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// wireLine is the part of an agent's NDJSON line the tests look at.
type wireLine struct {
	Kind   string          `json:"kind"`
	Run    string          `json:"run"`
	Seq    uint64          `json:"seq"`
	Check  string          `json:"check"`
	Status string          `json:"status"`
	Data   json.RawMessage `json:"data"`
	raw    string
}

// lines sends each line r yields, then closes the channel.
func lines(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
