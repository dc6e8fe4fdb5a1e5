package processes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/checks/internal/num"
	"github.com/guestdiag/guestdiag/protocol"
)

func (p *Processes) runProbes(ctx context.Context) []ProbeResult {
	out := make([]ProbeResult, len(p.cfg.Probes))
	var wg sync.WaitGroup
	for i, pr := range p.cfg.Probes {
		wg.Go(func() { out[i] = p.probe(ctx, pr) })
	}
	wg.Wait()
	return out
}

// probe connects to the probe's target, and for HTTP sends a GET and reads
// the status line, all within the probe's timeout.
func (p *Processes) probe(ctx context.Context, pr Probe) ProbeResult {
	res := ProbeResult{Name: pr.Name, Target: pr.TCP}
	addr, reqPath := pr.TCP, ""
	if pr.HTTP != "" {
		res.Target = pr.HTTP
		var err error
		if addr, reqPath, err = parseHTTPTarget(pr.HTTP); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	ctx, cancel := context.WithTimeout(ctx, pr.Timeout.Duration)
	defer cancel()
	start := time.Now()
	err := func() error {
		conn, err := p.dial(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		if pr.HTTP == "" {
			return nil
		}
		if d, ok := ctx.Deadline(); ok {
			conn.SetDeadline(d)
		}
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
		defer stop()
		host := addr
		if u, err := url.Parse(pr.HTTP); err == nil {
			host = u.Host
		}
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: guestdiag-agent\r\nConnection: close\r\n\r\n", reqPath, host); err != nil {
			return err
		}
		line, err := bufio.NewReaderSize(conn, 512).ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read status line: %w", err)
		}
		code, err := parseStatusLine(line)
		res.HTTPStatus = code
		if err != nil {
			return err
		}
		if code < 200 || code > 399 {
			return fmt.Errorf("http status %d", code)
		}
		return nil
	}()
	res.LatencyMS = num.Round1(float64(time.Since(start).Microseconds()) / 1000)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("no answer within %s: %w", pr.Timeout, err)
		}
		res.Error = protocol.Clip(err.Error(), 512)
		return res
	}
	res.Alive = true
	return res
}

// parseHTTPTarget returns the host:port to dial and the request
// target of a plain http URL.
func parseHTTPTarget(raw string) (addr, reqPath string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("http %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return "", "", fmt.Errorf("http %q: only http:// is supported (no TLS)", raw)
	}
	if u.Hostname() == "" {
		return "", "", fmt.Errorf("http %q: no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port), u.RequestURI(), nil
}

// parseStatusLine reads the code of an HTTP/1.x status line such
// as "HTTP/1.1 200 OK\r\n".
func parseStatusLine(line []byte) (int, error) {
	s := strings.TrimRight(string(line), "\r\n")
	proto, rest, _ := strings.Cut(s, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, fmt.Errorf("not an http status line: %q", protocol.Clip(s, 64))
	}
	codeText, _, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || len(codeText) != 3 {
		return 0, fmt.Errorf("bad http status code in %q", protocol.Clip(s, 64))
	}
	return code, nil
}

func probeFindings(results []ProbeResult) []protocol.Finding {
	var dead []ProbeResult
	for _, r := range results {
		if !r.Alive {
			dead = append(dead, r)
		}
	}
	return each(dead, func(r ProbeResult) protocol.Finding {
		return protocol.Finding{
			Code:     CodeProcessesAppNotResponds,
			Severity: protocol.SeverityWarn,
			Message:  protocol.Clip(fmt.Sprintf("probe %s (%s) not responding: %s", r.Name, r.Target, r.Error), protocol.MaxMessageLen),
			Source:   protocol.Clip(r.Name, protocol.MaxSourceLen),
		}
	}, func(n int) protocol.Finding {
		return protocol.Finding{Code: CodeProcessesAppNotResponds, Severity: protocol.SeverityWarn, Count: uint64(n),
			Message: fmt.Sprintf("%d more probes not responding", n)}
	})
}
