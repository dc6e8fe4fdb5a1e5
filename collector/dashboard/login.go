package dashboard

import (
	"errors"
	"net/http"
	"strings"

	"github.com/guestdiag/guestdiag/internal/webauth"
)

type loginView struct {
	Next  string
	Name  string
	Error string
	Token bool
}

func (s *server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.auth.Open() {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Main: &loginView{Next: localPath(r.URL.Query().Get("next"))}})
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "The login form could not be read.")
		return
	}
	next := localPath(r.PostForm.Get("next"))
	if s.auth.Open() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	name := r.PostForm.Get("name")
	if _, err := s.auth.Login(w, r, name, r.PostForm.Get("password")); err != nil {
		code := http.StatusUnauthorized
		if errors.Is(err, webauth.ErrRateLimited) {
			code = http.StatusTooManyRequests
		}
		s.render(w, r, code, "login", page{Title: "Sign in", Main: &loginView{Next: next, Name: clip(name, 128), Error: err.Error()}})
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	s.auth.Logout(w)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// localPath keeps a redirect target on this site: a path starting with
// one "/", not "//" or "/\" (which browsers read as another host). Anything
// else becomes "/".
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	return p
}
