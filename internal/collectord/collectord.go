// Package collectord runs the collector the way both of its mains do
// (guestdiag-collector and guestdiag up): the collector with its dashboard,
// one login in front of the dashboard and the JSON API, the Alertmanager
// client when configured, and knowledge-base reloads on SIGHUP.
package collectord

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/collector/alertmanager"
	"github.com/guestdiag/guestdiag/collector/dashboard"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/webauth"
)

// The collector's placement view feeds the dashboard's placement page,
// which the dashboard finds by asking its Source at run time: this keeps a
// change of either signature from going unnoticed.
var _ dashboard.Placer = (*collector.Collector)(nil)

// Config is the collector's and everything around it.
type Config struct {
	Collector collector.Config
	// Auth guards the dashboard and /api/; with neither a token nor a
	// users file both are open (the listener is loopback by default).
	Auth webauth.Config
	// Alertmanager is used when it names at least one URL.
	Alertmanager alertmanager.Config
	// NATS is how guestdiag-collector authenticates to NATS (guestdiag up
	// connects in-process and uses none).
	NATS natsutil.Auth
	// MetricsListen is the TCP address of /metrics and /healthz; "" serves
	// neither.
	MetricsListen string
}

// CollectorInboxPrefix is where collectors receive replies, so that their
// permissions can name it.
const CollectorInboxPrefix = "_GDINBOX.collector"

// NATSFlags registers the NATS authentication flags of guestdiag-collector.
func NATSFlags(fs *flag.FlagSet, cfg *Config) { natsutil.AuthFlags(fs, &cfg.NATS) }

// NATSOptions returns the connection options of cfg.NATS, with the
// collectors' inbox prefix.
func NATSOptions(cfg Config) ([]nats.Option, error) {
	auth := cfg.NATS
	auth.InboxPrefix = CollectorInboxPrefix
	return auth.Options()
}

// Run serves the collector, its dashboard and API on ln and runs the
// Alertmanager client until ctx is cancelled, when it returns nil. It
// closes ln.
func Run(ctx context.Context, nc *nats.Conn, ln net.Listener, cfg Config, logger *slog.Logger) error {
	// An open dashboard on an address other hosts can reach would let
	// anyone who reaches it drain hosts; on loopback only this host's
	// users can, as guestdiag up's default intends.
	cfg.Auth.ReadOnlyWhenOpen = !loopback(ln.Addr())
	auth, err := webauth.New(cfg.Auth, logger.With("component", "webauth"))
	if err != nil {
		ln.Close()
		return fmt.Errorf("dashboard authentication: %w", err)
	}
	cc := cfg.Collector
	cc.Auth = auth.Wrap
	// The API's drain and undrain need an admin, as the dashboard's
	// placement page does: one set of roles for both.
	cc.Admin = auth.Admin
	cc.UI = func(c *collector.Collector) http.Handler {
		return dashboard.New(c, dashboard.Config{Auth: auth}, logger.With("component", "dashboard"))
	}
	var am *alertmanager.Client
	if len(cfg.Alertmanager.URLs) > 0 {
		am = alertmanager.New(cfg.Alertmanager, logger.With("component", "alertmanager"))
		cc.Notifiers = append(cc.Notifiers, am)
	}
	c := collector.New(cc, nc, logger.With("component", "collector"))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if am != nil {
		wg.Go(func() {
			firing := func() []collector.Alert { return c.Alerts(collector.AlertFilter{State: collector.AlertFiring}) }
			if err := am.Run(ctx, firing); err != nil {
				logger.Error("alertmanager_failed", "err", err)
			}
		})
	}
	if err := serveMetrics(ctx, &wg, cfg.MetricsListen, c, nc, logger.With("component", "metrics")); err != nil {
		ln.Close()
		return err
	}
	wg.Go(func() { reloadOnHangup(ctx, c, logger) })
	return c.Serve(ctx, ln)
}

// reloadOnHangup reloads the knowledge base on every SIGHUP. A bad
// operator file is logged and skipped; the rest of the reload stands.
func reloadOnHangup(ctx context.Context, c *collector.Collector, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			errs := c.ReloadKB()
			for _, err := range errs {
				logger.Warn("kb_file_skipped", "err", err)
			}
			logger.Info("kb_reloaded", "entries", c.KB().Len(), "errors", len(errs))
		}
	}
}

// Flags registers the flags both mains share: knowledge-base directories,
// authentication, Alertmanager and the channel grace. Call Finish after
// parsing.
func Flags(fs *flag.FlagSet, cfg *Config) *Pending {
	p := &Pending{cfg: cfg}
	fs.Var(stringsFlag{&cfg.Collector.KBDirs}, "kb-dir", "operator knowledge-base `dir`ectory, loaded after the shipped entries and on SIGHUP; repeat for several")
	fs.StringVar(&cfg.Auth.UsersFile, "users", "", "`file` of dashboard and API users, name:bcrypt-hash lines (htpasswd -B)")
	fs.Var(namesFlag{stringsFlag{&cfg.Auth.Admins}}, "admins", "comma-separated `names` of users in --users who may drain and undrain hosts (the token always may; the others only read)")
	fs.StringVar(&p.tokenFile, "token-file", "", "`file` holding a shared token for the dashboard and API (or set GUESTDIAG_TOKEN)")
	fs.StringVar(&p.sessionKeyFile, "session-key-file", "", "`file` holding the key that signs login sessions; give every collector behind one address the same file (default: a random key per process)")
	fs.BoolVar(&cfg.Auth.Secure, "secure-cookies", false, "mark the session cookie Secure (the dashboard is served over HTTPS)")
	fs.Var(stringsFlag{&cfg.Alertmanager.URLs}, "alertmanager", "Alertmanager base `url` to push alerts to; repeat for an HA pair")
	fs.StringVar(&cfg.Alertmanager.ExternalURL, "external-url", "", "`url` under which users reach the dashboard, for links in Alertmanager notifications")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", "", "TCP `address` for Prometheus /metrics and /healthz, such as 127.0.0.1:9465 (default: off)")
	fs.DurationVar(&cfg.Collector.ChannelGrace, "channel-grace", collector.DefaultChannelGrace, "how long a channel may stay disconnected before vm.channel_down fires")
	hintFlags(fs, &cfg.Collector)
	return p
}

// Pending holds what Flags cannot set until the flags are parsed.
type Pending struct {
	cfg            *Config
	tokenFile      string
	sessionKeyFile string
}

// Finish reads the token and checks the URLs.
func (p *Pending) Finish() error {
	if p.tokenFile != "" {
		b, err := os.ReadFile(p.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		p.cfg.Auth.Token = strings.TrimSpace(string(b))
		if p.cfg.Auth.Token == "" {
			return fmt.Errorf("--token-file: %s is empty", p.tokenFile)
		}
	} else if t := os.Getenv("GUESTDIAG_TOKEN"); t != "" {
		p.cfg.Auth.Token = t
	}
	if p.sessionKeyFile != "" {
		b, err := os.ReadFile(p.sessionKeyFile)
		if err != nil {
			return fmt.Errorf("--session-key-file: %w", err)
		}
		if len(b) < 32 {
			return fmt.Errorf("--session-key-file: %s holds %d bytes; give at least 32 random bytes (head -c 32 /dev/urandom > FILE)", p.sessionKeyFile, len(b))
		}
		p.cfg.Auth.SessionKey = b
	}
	for _, u := range append(append([]string(nil), p.cfg.Alertmanager.URLs...), p.cfg.Alertmanager.ExternalURL) {
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("%q is not an http or https URL", u)
		}
	}
	if p.cfg.Collector.ChannelGrace <= 0 {
		return errors.New("--channel-grace must be positive")
	}
	if err := p.cfg.Collector.Hints.Validate(); err != nil {
		return fmt.Errorf("--hint-*: %w", err)
	}
	return nil
}

type stringsFlag struct{ p *[]string }

func (f stringsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

func (f stringsFlag) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*f.p = append(*f.p, s)
	return nil
}

// loopback reports whether addr is a TCP address on a loopback interface.
// The wildcard address (":8080", "0.0.0.0") is not: it serves every
// interface.
func loopback(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}
