package guestagent

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// The kill loop's child: an agent that spools events as fast as it can,
// prints "<run> <seq>" once each is on disk, and sends to the parent's
// Unix socket. With GUESTDIAG_KILL_DRAIN it only sends.
const (
	envKillDir   = "GUESTDIAG_KILL_STATE"
	envKillSock  = "GUESTDIAG_KILL_SOCK"
	envKillDrain = "GUESTDIAG_KILL_DRAIN"
)

func TestKillLoopChild(t *testing.T) {
	dir := os.Getenv(envKillDir)
	if dir == "" {
		t.Skip("runs only as the child of TestAgentKilledInALoopLosesNothing")
	}
	sock := os.Getenv(envKillSock)
	v := newVsockTransport(Config{}.withDefaults(), discardLogger())
	v.dial = func(ctx context.Context, _, _ uint32) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	sel := vsockOnly(v)
	cfg := Config{StateDir: dir}.withDefaults()
	a := newAgent(cfg, sel, nil, discardLogger())
	sp, err := openSpool(filepath.Join(dir, "spool"), cfg.SpoolMaxBytes, discardLogger())
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	a.spool, a.runID = sp, newRunID()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go newSender(sp, sel, cfg, discardLogger()).run(ctx)
	if os.Getenv(envKillDrain) != "" {
		<-ctx.Done()
		return
	}
	for i := 0; ctx.Err() == nil; i++ {
		env := protocol.Envelope{Kind: protocol.KindEvent, Check: "kill", Status: protocol.StatusOK, Summary: fmt.Sprintf("event %d", i)}
		if err := a.emit(env); err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		a.mu.Lock()
		seq := a.nextSeq - 1
		a.mu.Unlock()
		// One write per line, unbuffered: a kill cannot leave a line
		// claimed but not written, or half written.
		os.Stdout.WriteString(fmt.Sprintf("%s %d\n", a.runID, seq))
	}
}

// killHost is the parent's host side: it acks everything and keeps each
// (run, seq) it got with its line, and how often it got it.
type killHost struct {
	mu    sync.Mutex
	lines map[string]string
	times map[string]int
	order map[string][]uint64 // first arrivals per run
}

func (h *killHost) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			lr := protocol.NewReader(c, protocol.MaxLineLen+1)
			for {
				line, err := lr.ReadLine()
				if err != nil {
					return
				}
				if len(line) == 0 {
					continue
				}
				e, err := protocol.Decode(line)
				if err != nil {
					continue
				}
				key := fmt.Sprintf("%s %d", e.Run, e.Seq)
				h.mu.Lock()
				if prev, ok := h.lines[key]; ok && prev != string(line) {
					h.lines[key] = "CONFLICT"
				} else if !ok {
					h.lines[key] = string(line)
					h.order[e.Run] = append(h.order[e.Run], e.Seq)
				}
				h.times[key]++
				h.mu.Unlock()
				b, _ := protocol.Marshal(protocol.NewAck(e.Run, e.Seq))
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		}()
	}
}

func TestAgentKilledInALoopLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary 16 times")
	}
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "host.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := &killHost{lines: map[string]string{}, times: map[string]int{}, order: map[string][]uint64{}}
	go h.serve(l)

	synced := map[string]bool{}
	start := func(drain bool) (*exec.Cmd, *sync.WaitGroup) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillLoopChild$")
		cmd.Env = append(os.Environ(), envKillDir+"="+dir, envKillSock+"="+sock)
		if drain {
			cmd.Env = append(cmd.Env, envKillDrain+"=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var run string
				var seq uint64
				if _, err := fmt.Sscanf(sc.Text(), "%s %d", &run, &seq); err == nil {
					synced[fmt.Sprintf("%s %d", run, seq)] = true
				} else if sc.Text() != "" && sc.Text() != "PASS" {
					t.Errorf("child said %q", sc.Text())
				}
			}
		})
		return cmd, &wg
	}
	const kills = 15
	for range kills {
		cmd, wg := start(false)
		// Kill at a random point: some lives end before the first
		// connection, most in the middle of appends and sends.
		time.Sleep(time.Duration(20+rand.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		wg.Wait()
		cmd.Wait()
	}
	cmd, wg := start(true)
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.mu.Lock()
		missing := 0
		for k := range synced {
			if _, ok := h.lines[k]; !ok {
				missing++
			}
		}
		h.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages spooled before a kill never arrived", missing, len(synced))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	wg.Wait()
	cmd.Wait()

	h.mu.Lock()
	defer h.mu.Unlock()
	resent := 0
	for k, line := range h.lines {
		if line == "CONFLICT" {
			t.Errorf("%s arrived twice with different contents: de-duplication by run and seq would lose one", k)
		}
		resent += h.times[k] - 1
	}
	for run, seqs := range h.order {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("run %s: seq %d first arrived after %d", run, seqs[i], seqs[i-1])
			}
		}
	}
	if len(synced) < kills {
		t.Errorf("only %d messages spooled in %d lives, want the children to have written", len(synced), kills)
	}
	t.Logf("%d kills: %d messages confirmed on disk, all %d delivered, %d distinct arrived, %d resent (de-duplicated by run/seq)",
		kills, len(synced), len(synced), len(h.lines), resent)
}
