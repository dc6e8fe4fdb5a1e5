package dashboard

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// authedHandler is the dashboard with user admin (password s3cret, a $2y$
// hash as htpasswd -B writes it) and a token.
func authedHandler(t *testing.T) http.Handler {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(p, []byte("# test\nadmin:$2y$"+string(h[4:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return New(fixture(), Config{UsersFile: p, Token: "tok-123"}, discard())
}

func postLogin(h http.Handler, form url.Values, headers map[string]string) *http.Response {
	r := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Result()
}

func TestLoginFlow(t *testing.T) {
	h := authedHandler(t)
	t.Run("a page without a session redirects to the login form", func(t *testing.T) {
		res, _ := get(t, h, "/vm/kvm-a/web-1")
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/login?next=%2Fvm%2Fkvm-a%2Fweb-1" {
			t.Errorf("GET = %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
	})
	t.Run("the event stream without a session is 401", func(t *testing.T) {
		if res, _ := get(t, h, "/events"); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /events = %d", res.StatusCode)
		}
	})
	t.Run("the login page is served", func(t *testing.T) {
		res, body := get(t, h, "/login?next=/alerts")
		if res.StatusCode != 200 || !strings.Contains(body, `name="password"`) || !strings.Contains(body, `value="/alerts"`) {
			t.Errorf("GET /login = %d", res.StatusCode)
		}
	})
	t.Run("a bad password shows an error and sets no cookie", func(t *testing.T) {
		res := postLogin(h, url.Values{"name": {"admin"}, "password": {"nope"}}, nil)
		if res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 {
			t.Errorf("POST = %d with %d cookies", res.StatusCode, len(res.Cookies()))
		}
	})
	var cookie *http.Cookie
	t.Run("the right password signs in and goes to next", func(t *testing.T) {
		res := postLogin(h, url.Values{"name": {"admin"}, "password": {"s3cret"}, "next": {"/alerts"}}, map[string]string{"Origin": "http://example.com"})
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/alerts" || len(res.Cookies()) != 1 {
			t.Fatalf("POST = %d to %q with %d cookies", res.StatusCode, res.Header.Get("Location"), len(res.Cookies()))
		}
		cookie = res.Cookies()[0]
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "signed in as admin") {
			t.Errorf("GET / with the cookie = %d, footer without the user", rec.Code)
		}
	})
	t.Run("next cannot leave the site", func(t *testing.T) {
		for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
			res := postLogin(h, url.Values{"password": {"tok-123"}, "next": {next}}, nil)
			if loc := res.Header.Get("Location"); loc != "/" {
				t.Errorf("next %q redirects to %q, want /", next, loc)
			}
		}
	})
	t.Run("a login form posted from another site is refused", func(t *testing.T) {
		res := postLogin(h, url.Values{"password": {"tok-123"}}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
		if res.StatusCode != http.StatusForbidden || len(res.Cookies()) != 0 {
			t.Errorf("cross-site POST = %d with %d cookies", res.StatusCode, len(res.Cookies()))
		}
	})
	t.Run("an API client may use the bearer token", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/alerts", nil)
		r.Header.Set("Authorization", "Bearer tok-123")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 200 {
			t.Errorf("GET with bearer = %d", rec.Code)
		}
	})
	t.Run("sign out clears the cookie", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/logout", nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		cs := rec.Result().Cookies()
		if rec.Code != http.StatusSeeOther || len(cs) != 1 || cs[0].MaxAge >= 0 {
			t.Errorf("POST /logout = %d, cookies %v", rec.Code, cs)
		}
	})
}

func TestBrokenUsersFileFailsClosed(t *testing.T) {
	h := New(fixture(), Config{UsersFile: "/nonexistent/users.txt"}, discard())
	res, body := get(t, h, "/")
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "/nonexistent/users.txt") {
		t.Errorf("GET / = %d %q, want 503 naming the file", res.StatusCode, body)
	}
}
