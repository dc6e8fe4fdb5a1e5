package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/internal/pause"
)

// namedTransport is one entry of the preference order.
type namedTransport struct {
	name string
	t    Transport
}

// selector is the Transport the agent uses: it tries the configured
// transports in order of preference and hands out one connection at a
// time. A transport that cannot reach the host within fallbackAfter, or
// fails at once, makes way for the next; while a less preferred one is active, the more
// preferred ones are tried every retryPreferred in the background, and when
// one of them connects the active connection is closed so that the sender
// reconnects, and takes it.
type selector struct {
	list           []namedTransport
	fallbackAfter  time.Duration
	retryPreferred time.Duration
	logger         *slog.Logger
	// onActive, when set, is called with a transport's name when a
	// connection is made over a transport other than the previous one.
	onActive func(name string)

	mu         sync.Mutex
	active     string
	pending    io.ReadWriteCloser // a more preferred transport's connection
	pendingIdx int
	lastErr    map[string]string
}

// newTransports builds the selector over cfg.Transports, which must have
// its defaults applied.
func newTransports(cfg Config, logger *slog.Logger) (*selector, error) {
	if err := CheckTransports(cfg.Transports); err != nil {
		return nil, err
	}
	s := &selector{
		fallbackAfter: cfg.FallbackAfter, retryPreferred: cfg.RetryPreferred,
		logger: logger, lastErr: map[string]string{},
	}
	for _, name := range cfg.Transports {
		var (
			t   Transport
			err error
		)
		switch name {
		case TransportVirtioSerial:
			t, err = newPortTransport(cfg, logger.With("transport", name))
		case TransportVsock:
			t = newVsockTransport(cfg, logger.With("transport", name))
		}
		if err != nil {
			// Still listed: Connect says why, and the others are tried.
			t = failedTransport{err}
		}
		s.list = append(s.list, namedTransport{name, t})
	}
	return s, nil
}

// failedTransport stands for a transport that could not be built.
type failedTransport struct{ err error }

func (f failedTransport) Connect(context.Context) (io.ReadWriteCloser, error) { return nil, f.err }

// Active returns the name of the transport of the newest connection, or
// "" before the first.
func (s *selector) Active() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// Connect tries the transports in order, round after round, until one
// reaches the host or ctx ends. Each failure is logged once per kind by
// noteFailure. It returns an error only when every transport is
// unsupported here, which is final.
func (s *selector) Connect(ctx context.Context) (io.ReadWriteCloser, error) {
	s.mu.Lock()
	conn, i := s.pending, s.pendingIdx
	s.pending = nil
	s.mu.Unlock()
	if conn != nil {
		return s.activate(ctx, i, conn), nil
	}
	for {
		var errs []error
		for i, nt := range s.list {
			cctx, cancel := ctx, context.CancelFunc(func() {})
			if len(s.list) > 1 {
				cctx, cancel = context.WithTimeout(ctx, s.fallbackAfter)
			}
			conn, err := nt.t.Connect(cctx)
			cancel()
			if err == nil {
				return s.activate(ctx, i, conn), nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, errors.ErrUnsupported) {
				errs = append(errs, fmt.Errorf("%s: %w", nt.name, err))
			} else if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no host within %v", s.fallbackAfter)
			}
			s.noteFailure(nt.name, err)
		}
		if len(errs) == len(s.list) {
			return nil, errors.Join(errs...)
		}
		// Transports that fail at once must not make this spin.
		if err := pause.For(ctx, connectRetry); err != nil {
			return nil, err
		}
	}
}

// noteFailure logs a transport's failure once per kind, not every round.
func (s *selector) noteFailure(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr[name] == err.Error() {
		return
	}
	s.lastErr[name] = err.Error()
	s.logger.Warn("transport_unavailable", "transport", name, "err", err)
}

// activate makes the connection of s.list[i] the active one.
func (s *selector) activate(ctx context.Context, i int, conn io.ReadWriteCloser) io.ReadWriteCloser {
	name := s.list[i].name
	s.mu.Lock()
	changed := s.active != name
	s.active = name
	delete(s.lastErr, name)
	s.mu.Unlock()
	s.logger.Info("transport_active", "transport", name, "preference", i+1)
	if changed && s.onActive != nil {
		s.onActive(name)
	}
	if i == 0 {
		return conn
	}
	ac := &activeConn{ReadWriteCloser: conn, stop: make(chan struct{})}
	go s.probe(ctx, i, ac)
	return ac
}

// probe tries the transports preferred to s.list[i] every retryPreferred
// until ac is closed. When one connects, it is kept for the next Connect
// and ac is closed, which ends the sender's connection over it.
func (s *selector) probe(ctx context.Context, i int, ac *activeConn) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ac.stop:
			return
		case <-time.After(s.retryPreferred):
		}
		for j, nt := range s.list[:i] {
			pctx, cancel := context.WithTimeout(ctx, s.fallbackAfter)
			go func() {
				select {
				case <-ac.stop:
					cancel()
				case <-pctx.Done():
				}
			}()
			conn, err := nt.t.Connect(pctx)
			cancel()
			if err != nil {
				continue
			}
			if ac.closed() || ctx.Err() != nil {
				conn.Close()
				return
			}
			s.logger.Info("transport_preferred_back", "transport", nt.name, "leaving", s.list[i].name)
			s.mu.Lock()
			if s.pending != nil {
				s.pending.Close()
			}
			s.pending, s.pendingIdx = conn, j
			s.mu.Unlock()
			ac.Close()
			return
		}
	}
}

// activeConn is a connection over a fallback transport. It keeps the
// write deadline of the connection it wraps.
type activeConn struct {
	io.ReadWriteCloser
	once sync.Once
	stop chan struct{}
}

func (c *activeConn) Close() error {
	c.once.Do(func() { close(c.stop) })
	return c.ReadWriteCloser.Close()
}

func (c *activeConn) closed() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func (c *activeConn) SetWriteDeadline(t time.Time) error {
	if dl, ok := c.ReadWriteCloser.(writeDeadliner); ok {
		return dl.SetWriteDeadline(t)
	}
	return errors.ErrUnsupported
}
