// Command capturesamples runs the real agent, with all six checks at their
// defaults, for one round and prints the first result of each check and
// its hello, one line each, as testdata for the load generator. Run it in a
// network namespace, because the agent's network check pings:
//
//	unshare -n go run ./test/loadgen/internal/capturesamples > test/loadgen/testdata/samples.ndjson
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/guestdiag/guestdiag/guestagent"
	"github.com/guestdiag/guestdiag/protocol"

	_ "github.com/guestdiag/guestdiag/checks/all"
)

type pipeTransport struct{ conns chan net.Conn }

func (p pipeTransport) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	agent, host := net.Pipe()
	select {
	case p.conns <- host:
		return agent, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "capturesamples:", err)
		os.Exit(1)
	}
}

func run() error {
	// The network check pings a gateway: outside a fresh network namespace,
	// where loopback is the only interface, it would ping real networks.
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("interface %s is not loopback: run this in a network namespace (unshare -n)", i.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "capturesamples")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tr := pipeTransport{conns: make(chan net.Conn)}
	cfg := guestagent.DefaultConfig()
	cfg.StateDir = dir
	cfg.Transport = tr
	cfg.Priority = guestagent.PriorityNormal
	done := make(chan error, 1)
	go func() { done <- guestagent.Run(ctx, cfg, slog.New(slog.DiscardHandler)) }()

	host := <-tr.conns
	seen := map[string]bool{}
	sc := bufio.NewScanner(host)
	sc.Buffer(nil, protocol.MaxLineLen+1)
	out := bufio.NewWriter(os.Stdout)
	for sc.Scan() && len(seen) < 7 {
		line := sc.Bytes()
		var e struct {
			Kind  string `json:"kind"`
			Run   string `json:"run"`
			Seq   uint64 `json:"seq"`
			Check string `json:"check"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if e.Kind != "resume" {
			ack, _ := protocol.Marshal(protocol.NewAck(e.Run, e.Seq))
			if _, err := host.Write(ack); err != nil {
				return err
			}
		}
		key := e.Kind + "/" + e.Check
		if (e.Kind == "hello" || e.Kind == "result") && !seen[key] {
			seen[key] = true
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	cancel()
	<-done
	if len(seen) < 7 {
		return fmt.Errorf("got %d of hello and six results before the end: %v", len(seen), sc.Err())
	}
	return out.Flush()
}
