package webauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Config says who may read. With neither Token nor UsersFile set, Auth lets
// everyone in: the collector listens on loopback by default.
type Config struct {
	// Token is a shared secret accepted as a Bearer token, as a Basic auth
	// password and as the password on the login form (user "token").
	Token string
	// UsersFile holds "name:bcrypt-hash" lines (htpasswd -B).
	UsersFile string
	// SessionKey signs session cookies; a random key is made when it is
	// empty, so sessions then end when the process restarts.
	SessionKey []byte
	// Secure marks the session cookie Secure, for a dashboard served over
	// HTTPS (directly or behind a proxy).
	Secure bool
	// SessionTTL is how long a login lasts; 12 hours when zero.
	SessionTTL time.Duration
	// Admins names the users of UsersFile who may change something (drain
	// and undrain hosts); the others only read. The token is always an
	// admin. Each name must be in UsersFile.
	Admins []string
	// ReadOnlyWhenOpen, with neither Token nor UsersFile, lets everyone
	// read but nobody change anything: for a listener others can reach,
	// where an open dashboard would let anyone drain hosts.
	ReadOnlyWhenOpen bool
}

// Errors of User and Login.
var (
	ErrNoCredentials  = errors.New("no credentials")
	ErrBadCredentials = errors.New("wrong name, password or token")
	ErrRateLimited    = errors.New("too many failed attempts from this address; wait a minute")
	// ErrNotAdmin is Admin's answer for a user who may only read.
	ErrNotAdmin = errors.New("not an administrator")
	// ErrOpenReadOnly is Admin's answer when no authentication is
	// configured and Config.ReadOnlyWhenOpen is set.
	ErrOpenReadOnly = errors.New("no authentication configured and not listening on loopback, so nobody may drain or undrain: configure --token-file or --users (with --admins)")
)

// TokenUser is the user name of a request or session authenticated by the
// shared token.
const TokenUser = "token"

// CookieName is the session cookie's name.
const CookieName = "guestdiag_session"

// Auth checks requests against a Config. It is safe for concurrent use.
type Auth struct {
	token  [32]byte // sha256 of the token, compared in constant time
	hasTok bool
	users  map[string][]byte
	admins map[string]bool
	// readOnly: Open, and nobody may change anything.
	readOnly bool
	key      []byte
	secure   bool
	ttl      time.Duration
	logger   *slog.Logger
	now      func() time.Time
	limit    *limiter

	mu       sync.Mutex
	verified map[[32]byte]time.Time // Basic credentials bcrypt already accepted, until when
}

// New reads cfg.UsersFile, if any, and returns the Auth it describes.
func New(cfg Config, logger *slog.Logger) (*Auth, error) {
	a := &Auth{
		secure:   cfg.Secure,
		ttl:      cfg.SessionTTL,
		logger:   logger,
		now:      time.Now,
		limit:    newLimiter(),
		verified: make(map[[32]byte]time.Time),
	}
	if a.ttl <= 0 {
		a.ttl = 12 * time.Hour
	}
	if cfg.Token != "" {
		a.token, a.hasTok = sha256.Sum256([]byte(cfg.Token)), true
	}
	if cfg.UsersFile != "" {
		users, err := readUsers(cfg.UsersFile)
		if err != nil {
			return nil, err
		}
		if _, ok := users[TokenUser]; ok && a.hasTok {
			return nil, fmt.Errorf("users file %s: user %q is reserved for the token", cfg.UsersFile, TokenUser)
		}
		a.users = users
	}
	if len(cfg.Admins) > 0 {
		if a.users == nil {
			return nil, errors.New("admins are named but there is no users file: the token alone is already an admin")
		}
		a.admins = make(map[string]bool, len(cfg.Admins))
		for _, name := range cfg.Admins {
			if a.users[name] == nil {
				return nil, fmt.Errorf("admin %q is not in the users file %s", name, cfg.UsersFile)
			}
			a.admins[name] = true
		}
	}
	a.readOnly = cfg.ReadOnlyWhenOpen && a.Open()
	a.key = cfg.SessionKey
	if len(a.key) == 0 {
		a.key = make([]byte, 32)
		if _, err := rand.Read(a.key); err != nil {
			return nil, fmt.Errorf("session key: %w", err)
		}
	}
	return a, nil
}

// Open reports whether no authentication is configured.
func (a *Auth) Open() bool { return !a.hasTok && a.users == nil }

// User returns who sent r: from its session cookie, its Bearer token or its
// Basic auth. With Open it returns "" and nil for every request.
func (a *Auth) User(r *http.Request) (string, error) {
	if a.Open() {
		return "", nil
	}
	if c, err := r.Cookie(CookieName); err == nil {
		if user, ok := a.session(c.Value); ok {
			return user, nil
		}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", ErrNoCredentials
	}
	remote := remoteKey(r)
	if a.limit.exhausted(remote) {
		return "", ErrRateLimited
	}
	user, ok := "", false
	if tok, found := strings.CutPrefix(h, "Bearer "); found {
		user, ok = TokenUser, a.tokenOK(strings.TrimSpace(tok))
	} else if name, pass, found := r.BasicAuth(); found {
		user, ok = name, a.basicOK(name, pass)
	}
	if !ok {
		a.limit.take(remote)
		return "", ErrBadCredentials
	}
	return user, nil
}

// Login checks a name and password (or the token, with or without the
// name "token") typed on the login form from r's address, and on success sets
// the session cookie on w. Every attempt counts against the address's rate
// limit, so that a login form cannot be used to guess passwords quickly.
func (a *Auth) Login(w http.ResponseWriter, r *http.Request, name, password string) (string, error) {
	if !a.limit.take(remoteKey(r)) {
		a.logger.Warn("login_rate_limited", "remote", r.RemoteAddr)
		return "", ErrRateLimited
	}
	user, ok := "", false
	switch {
	case a.users[name] != nil:
		user, ok = name, bcrypt.CompareHashAndPassword(a.users[name], []byte(password)) == nil
	case a.hasTok && (name == "" || name == TokenUser):
		user, ok = TokenUser, a.tokenOK(password)
	default:
		// Spend a bcrypt's time on unknown names too, so that the answer's
		// delay does not tell which names exist.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
	}
	if !ok {
		a.logger.Info("login_failed", "remote", r.RemoteAddr)
		return "", ErrBadCredentials
	}
	exp := a.now().Add(a.ttl)
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: a.sign(user, exp), Path: "/",
		Expires: exp, MaxAge: int(a.ttl / time.Second),
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode,
	})
	a.logger.Info("login", "user", user, "remote", r.RemoteAddr)
	return user, nil
}

// Logout clears the session cookie. Sessions are stateless: a copied
// cookie stays valid until it expires or the session key changes.
func (a *Auth) Logout(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode,
	})
}

// Wrap lets through to h only requests that User accepts, answering the
// others 401 (or 429) with a JSON error, for the collector's JSON API.
func (a *Auth) Wrap(h http.Handler) http.Handler {
	if a.Open() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := a.User(r)
		if err == nil {
			h.ServeHTTP(w, r)
			return
		}
		code := http.StatusUnauthorized
		if errors.Is(err, ErrRateLimited) {
			code = http.StatusTooManyRequests
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="guestdiag", Basic realm="guestdiag", charset="UTF-8"`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
	})
}

func (a *Auth) tokenOK(tok string) bool {
	sum := sha256.Sum256([]byte(tok))
	return a.hasTok && subtle.ConstantTimeCompare(sum[:], a.token[:]) == 1
}

// basicOK checks Basic credentials. bcrypt takes tens of milliseconds by
// design, too slow for every API request of a polling client, so accepted
// credentials are remembered (as a keyed hash) for a few minutes.
func (a *Auth) basicOK(name, pass string) bool {
	if name == TokenUser && a.hasTok {
		return a.tokenOK(pass)
	}
	hash := a.users[name]
	if hash == nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pass))
		return false
	}
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	now := a.now()
	a.mu.Lock()
	until, ok := a.verified[k]
	a.mu.Unlock()
	if ok && now.Before(until) {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	a.mu.Lock()
	if len(a.verified) >= 1024 {
		clear(a.verified)
	}
	a.verified[k] = now.Add(5 * time.Minute)
	a.mu.Unlock()
	return true
}

// sign makes a session cookie value: the user (base64url), the expiry in
// Unix seconds and an HMAC-SHA256 of both under the session key.
func (a *Auth) sign(user string, exp time.Time) string {
	body := "v1." + base64.RawURLEncoding.EncodeToString([]byte(user)) + "." + strconv.FormatInt(exp.Unix(), 10)
	return body + "." + base64.RawURLEncoding.EncodeToString(a.mac(body))
}

func (a *Auth) mac(body string) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// session verifies a cookie value and returns its user, who must still be
// configured: removing a user or the token ends their sessions at the next
// restart.
func (a *Auth) session(v string) (string, bool) {
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return "", false
	}
	body := v[:i]
	mac, err := base64.RawURLEncoding.DecodeString(v[i+1:])
	if err != nil || !hmac.Equal(mac, a.mac(body)) {
		return "", false
	}
	parts := strings.Split(body, ".")
	if len(parts) != 3 || parts[0] != "v1" {
		return "", false
	}
	name, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || !a.now().Before(time.Unix(exp, 0)) {
		return "", false
	}
	user := string(name)
	if user == TokenUser && a.hasTok || a.users[user] != nil {
		return user, true
	}
	return "", false
}

// dummyHash is a bcrypt hash (of a random password) at the default cost,
// compared against for names that do not exist.
var dummyHash = func() []byte {
	p := make([]byte, 16)
	_, _ = rand.Read(p)
	h, err := bcrypt.GenerateFromPassword(p, bcrypt.DefaultCost)
	if err != nil {
		panic(err)
	}
	return h
}()
