package webauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// hashY is a bcrypt hash of password in htpasswd's $2y$ spelling, at the
// lowest cost so that the tests stay fast.
func hashY(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "$2y$" + string(h[4:])
}

func writeUsers(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newAuth(t *testing.T, cfg Config) *Auth {
	t.Helper()
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestUsersFile(t *testing.T) {
	good := hashY(t, "pw")
	tests := []struct {
		name, content, wantErr string
	}{
		{"a file with comments and a $2y$ user loads", "# admins\n\nadmin:" + good + "\n", ""},
		{"a line without a colon is an error with its line", "# x\nadmin\n", "line 2: want name:bcrypt-hash"},
		{"an MD5 hash is refused", "admin:$apr1$abc$def\n", `user "admin": hash is not bcrypt`},
		{"a user twice is an error", "a:" + good + "\na:" + good + "\n", `user "a" appears twice`},
		{"an empty file is an error", "# nobody\n", "no users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{UsersFile: writeUsers(t, tt.content)}, slog.New(slog.DiscardHandler))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New: error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	t.Run("a missing file is an error naming it", func(t *testing.T) {
		_, err := New(Config{UsersFile: "/nonexistent/users.txt"}, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/users.txt") {
			t.Fatalf("New: %v", err)
		}
	})
}

func login(t *testing.T, a *Auth, name, password string) (*http.Cookie, error) {
	t.Helper()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/login", nil)
	_, err := a.Login(rec, r, name, password)
	for _, c := range rec.Result().Cookies() {
		if c.Name == CookieName {
			return c, err
		}
	}
	return nil, err
}

func withCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	return r
}

func TestLoginAndSessions(t *testing.T) {
	a := newAuth(t, Config{UsersFile: writeUsers(t, "admin:"+hashY(t, "s3cret")+"\n"), Token: "tok-123", SessionTTL: time.Hour})
	t.Run("a wrong password is refused and sets no cookie", func(t *testing.T) {
		c, err := login(t, a, "admin", "wrong")
		if !errors.Is(err, ErrBadCredentials) || c != nil {
			t.Errorf("Login = %v, cookie %v; want ErrBadCredentials and none", err, c)
		}
	})
	t.Run("an unknown user is refused", func(t *testing.T) {
		if _, err := login(t, a, "root", "s3cret"); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Login = %v", err)
		}
	})
	c, err := login(t, a, "admin", "s3cret")
	t.Run("the right bcrypt password sets a strict HttpOnly cookie", func(t *testing.T) {
		if err != nil || c == nil {
			t.Fatalf("Login = %v, cookie %v", err, c)
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 3600 {
			t.Errorf("cookie HttpOnly %v SameSite %v MaxAge %d", c.HttpOnly, c.SameSite, c.MaxAge)
		}
		if user, err := a.User(withCookie(c)); user != "admin" || err != nil {
			t.Errorf("User with the cookie = %q, %v; want admin", user, err)
		}
	})
	t.Run("the token logs in as the token user", func(t *testing.T) {
		tc, err := login(t, a, "", "tok-123")
		if err != nil {
			t.Fatal(err)
		}
		if user, _ := a.User(withCookie(tc)); user != TokenUser {
			t.Errorf("User = %q, want %q", user, TokenUser)
		}
	})
	t.Run("a forged cookie is refused", func(t *testing.T) {
		parts := strings.Split(c.Value, ".")
		forged := []string{
			"v1.cm9vdA." + parts[2] + "." + parts[3],               // user changed to root
			parts[0] + "." + parts[1] + ".99999999999." + parts[3], // expiry pushed out
			parts[0] + "." + parts[1] + "." + parts[2] + ".AAAA",   // wrong mac
			"garbage", "",
		}
		for _, v := range forged {
			if user, err := a.User(withCookie(&http.Cookie{Name: CookieName, Value: v})); err == nil {
				t.Errorf("forged cookie %q accepted as %q", v, user)
			}
		}
	})
	t.Run("a cookie signed with another key is refused", func(t *testing.T) {
		other := newAuth(t, Config{UsersFile: writeUsers(t, "admin:"+hashY(t, "s3cret")+"\n")})
		oc, _ := login(t, other, "admin", "s3cret")
		if _, err := a.User(withCookie(oc)); err == nil {
			t.Error("cookie of another session key accepted")
		}
	})
	t.Run("an expired cookie is refused", func(t *testing.T) {
		a.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		defer func() { a.now = time.Now }()
		if _, err := a.User(withCookie(c)); err == nil {
			t.Error("expired cookie accepted")
		}
	})
}

func TestAPICredentials(t *testing.T) {
	a := newAuth(t, Config{UsersFile: writeUsers(t, "admin:"+hashY(t, "s3cret")+"\n"), Token: "tok-123"})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := a.Wrap(ok)
	tests := []struct {
		name string
		set  func(r *http.Request)
		want int
	}{
		{"no credentials is 401", func(r *http.Request) {}, 401},
		{"the bearer token passes", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-123") }, 418},
		{"a wrong bearer token is 401", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-124") }, 401},
		{"basic auth with the bcrypt password passes", func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }, 418},
		{"basic auth again passes from the cache", func(r *http.Request) { r.SetBasicAuth("admin", "s3cret") }, 418},
		{"basic auth with a wrong password is 401", func(r *http.Request) { r.SetBasicAuth("admin", "s3cre") }, 401},
		{"basic auth with the token as password passes", func(r *http.Request) { r.SetBasicAuth("token", "tok-123") }, 418},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/vms", nil)
			r.RemoteAddr = "192.0.2.1:1234"
			tt.set(r)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tt.want {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
			if rec.Code == 401 && !strings.Contains(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a WWW-Authenticate challenge")
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	a := newAuth(t, Config{Token: "tok-123"})
	try := func(remote, pass string) error {
		r := httptest.NewRequest("POST", "/login", nil)
		r.RemoteAddr = remote
		_, err := a.Login(httptest.NewRecorder(), r, "", pass)
		return err
	}
	for i := range limitBurst {
		if err := try("198.51.100.7:5000", "guess"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v, want ErrBadCredentials", i+1, err)
		}
	}
	if err := try("198.51.100.7:5001", "tok-123"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("attempt after the burst = %v, want ErrRateLimited even with the right token", err)
	}
	if err := try("203.0.113.9:5000", "tok-123"); err != nil {
		t.Errorf("another address is limited too: %v", err)
	}
	t.Run("API guesses are limited per address", func(t *testing.T) {
		h := a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		code := 0
		for range limitBurst + 1 {
			r := httptest.NewRequest("GET", "/api/vms", nil)
			r.RemoteAddr = "[2001:db8::1]:80"
			r.Header.Set("Authorization", "Bearer nope")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			code = rec.Code
		}
		if code != http.StatusTooManyRequests {
			t.Errorf("status after the burst = %d, want 429", code)
		}
		r := httptest.NewRequest("GET", "/api/vms", nil)
		r.RemoteAddr = "[2001:db8::2]:80" // same /64
		r.Header.Set("Authorization", "Bearer tok-123")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusTooManyRequests {
			t.Errorf("same /64 = %d, want 429", rec.Code)
		}
	})
}

func TestOpenWhenNothingConfigured(t *testing.T) {
	a := newAuth(t, Config{})
	if !a.Open() {
		t.Fatal("Open = false with no token and no users")
	}
	if _, err := a.User(httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Errorf("User = %v on an open Auth", err)
	}
}

// TestLimiterDoesNotForgetWhenFloodedWithAddresses: an attacker who owns
// more addresses than the limiter tracks must not reset the count of an
// address that is being limited.
func TestLimiterDoesNotForgetWhenFloodedWithAddresses(t *testing.T) {
	l := newLimiter()
	for range limitBurst {
		l.take("192.0.2.1")
	}
	if !l.exhausted("192.0.2.1") {
		t.Fatal("the attacker's address is not limited after a whole burst")
	}
	for i := range maxTracked + 100 {
		// One failed attempt keeps a bucket from being full, so it is
		// not forgotten.
		l.take(fmt.Sprintf("2001:db8:%x::/64", i))
	}
	// Refills go on meanwhile (one attempt per limitEvery), so what shows a
	// reset is a new, full bucket for the address, not the clock.
	if lim := l.m["192.0.2.1"]; lim == nil || lim.Tokens() >= limitBurst {
		t.Error("flooding the limiter with new addresses reset a limited address")
	}
	if got := len(l.m); got > maxTracked {
		t.Errorf("limiter tracks %d addresses, bound %d", got, maxTracked)
	}
	if l.get("2001:db8:ffff::/64") != l.overflow {
		t.Error("a new address while the limiter is full does not share the overflow bucket")
	}
}
