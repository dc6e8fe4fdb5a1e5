package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/webauth"
	"github.com/guestdiag/guestdiag/kb"
	"github.com/guestdiag/guestdiag/protocol"
)

// Source is what the dashboard reads: the collector's state, alerts,
// timelines, change notifications and knowledge base.
type Source interface {
	// VMs returns every VM sorted by host then name, and false until the
	// state is loaded.
	VMs() ([]collector.VM, bool)
	// Alerts returns the alerts f selects, firing first, then crit, warn,
	// info, newest first.
	Alerts(f collector.AlertFilter) []collector.Alert
	// Timeline returns one VM's timeline, newest first.
	Timeline(host, vm string) []collector.TimelineEvent
	// Subscribe tells of every change until ctx ends, then closes.
	Subscribe(ctx context.Context) <-chan collector.Change
	// SearchKB returns up to limit knowledge-base entries for a query.
	SearchKB(query string, limit int) []*kb.Entry
	// MatchKB returns the knowledge-base entries for a finding of vm, best
	// first, as the collector's alerts carry them.
	MatchKB(vm *collector.VM, f *protocol.Finding) []*kb.Entry
}

// Config configures the dashboard's authentication; see webauth.Config.
// With neither Token nor UsersFile the dashboard is open to anyone who can
// reach it, and says so in every page's footer.
type Config struct {
	Token      string
	UsersFile  string
	Admins     []string
	SessionKey []byte
	Secure     bool
	// Auth, when set, is used instead of the fields above: pass the same
	// Auth that guards the JSON API (Auth.Wrap), so that one login serves
	// both and the pages' JSON links work.
	Auth *webauth.Auth
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Security headers on every answer. The pages need nothing but their own
// stylesheet and script; no inline script or style is ever sent, so a
// guest's text that slipped into markup still could not run.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

type server struct {
	src    Source
	place  Placer // nil when src has no placement view
	auth   *webauth.Auth
	logger *slog.Logger
	pages  map[string]*template.Template
	now    func() time.Time
	bufs   sync.Pool
	// keepAlive is the constant keepAlive, shorter in tests.
	keepAlive time.Duration
}

// New returns the dashboard's handler. A configuration that cannot be
// loaded (an unreadable users file) is logged and the handler then answers
// every request 503 with the reason: failing closed, never open.
func New(src Source, cfg Config, logger *slog.Logger) http.Handler {
	a := cfg.Auth
	if a == nil {
		var err error
		a, err = webauth.New(webauth.Config{Token: cfg.Token, UsersFile: cfg.UsersFile, Admins: cfg.Admins, SessionKey: cfg.SessionKey, Secure: cfg.Secure}, logger)
		if err != nil {
			logger.Error("dashboard_auth_config", "err", err)
			return headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "dashboard disabled: "+err.Error(), http.StatusServiceUnavailable)
			}))
		}
	}
	return newServer(src, a, logger).routes()
}

func newServer(src Source, a *webauth.Auth, logger *slog.Logger) *server {
	s := &server{src: src, auth: a, logger: logger, now: time.Now, pages: make(map[string]*template.Template), keepAlive: keepAlive}
	s.place, _ = src.(Placer)
	for _, p := range []string{"fleet", "vm", "alerts", "kb", "placement", "login", "error"} {
		s.pages[p] = template.Must(template.New(p).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html"))
	}
	return s
}

func (s *server) routes() http.Handler {
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.Handle("GET /{$}", s.authed(s.fleet))
	mux.Handle("GET /vm/{host}/{name}", s.authed(s.vm))
	mux.Handle("GET /alerts", s.authed(s.alerts))
	mux.Handle("GET /kb", s.authed(s.kbSearch))
	mux.Handle("GET /placement", s.authed(s.placement))
	// The drain forms check for an admin themselves: a POST without a
	// session gets 403, not the login form.
	mux.HandleFunc("POST /placement/drain", s.drain)
	mux.HandleFunc("POST /placement/undrain", s.undrain)
	mux.Handle("GET /events", s.authed(s.events))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "There is no page at this address.")
	})
	// Every form (login, logout, drain, undrain) is refused when posted
	// from another site (Sec-Fetch-Site, else Origin against Host), so a
	// page elsewhere cannot drain a host with an admin's session.
	return headers(http.NewCrossOriginProtection().Handler(mux))
}

func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

// cacheStatic lets browsers keep the embedded assets for an hour; they
// change only with the binary.
func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

type ctxKey struct{}

// authed lets through requests that the Auth accepts. A page asked for by
// a browser without a session goes to the login form and comes back after.
func (s *server) authed(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := s.auth.User(r)
		switch {
		case err == nil:
			h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, user)))
		case errors.Is(err, webauth.ErrRateLimited):
			s.errorPage(w, r, http.StatusTooManyRequests, err.Error())
		case r.URL.Path == "/events" || r.URL.Query().Get("fragment") != "":
			http.Error(w, "authentication required", http.StatusUnauthorized)
		default:
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		}
	})
}

// page is what the layout renders around a page's main part.
type page struct {
	Title string
	Nav   string
	User  string
	Open  bool
	// Admin: the reader may drain and undrain hosts.
	Admin bool
	// Placement: the source has a placement view, so the nav links it.
	Placement bool
	// Every asks the script to refresh the page's main part this many
	// seconds apart even when no change arrives.
	Every int
	// Live asks the script for live updates: of one host's VMs (Host), of
	// one VM (Host and VM), or of everything.
	Live     bool
	Host, VM string
	JSON     string
	Main     any
}

// render executes a page into a pooled buffer first, so that a template
// error becomes a 500 and not half a page. With ?fragment=main only the
// page's main part is sent, for the live-update script to swap in.
func (s *server) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	if u, ok := r.Context().Value(ctxKey{}).(string); ok {
		p.User = u
	}
	p.Open = s.auth.Open()
	p.Admin = s.auth.IsAdmin(p.User)
	p.Placement = s.place != nil
	buf, _ := s.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() {
		if buf.Cap() <= 16<<20 {
			buf.Reset()
			s.bufs.Put(buf)
		}
	}()
	tmpl, part := s.pages[name], "layout"
	if r.URL.Query().Get("fragment") == "main" {
		part = "main"
		w.Header().Set("X-Fragment", "main")
	}
	if err := tmpl.ExecuteTemplate(buf, part, p); err != nil {
		s.logger.Error("dashboard_render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (s *server) errorPage(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.render(w, r, code, "error", page{Title: http.StatusText(code), Main: struct {
		Code int
		Text string
	}{code, msg}})
}
