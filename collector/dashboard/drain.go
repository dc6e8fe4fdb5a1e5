package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/webauth"
)

// drainTimeout bounds one drain or undrain: the mark is one KV write.
const drainTimeout = 10 * time.Second

func (s *server) drain(w http.ResponseWriter, r *http.Request)   { s.mark(w, r, true) }
func (s *server) undrain(w http.ResponseWriter, r *http.Request) { s.mark(w, r, false) }

// mark drains or undrains the host a placement page's form names. Only an
// admin may: anyone else gets 403 and nothing changes. A form posted from
// another site never gets here (cross-origin protection in routes), and
// the session cookie is SameSite=Strict besides.
func (s *server) mark(w http.ResponseWriter, r *http.Request, drain bool) {
	if s.place == nil {
		s.errorPage(w, r, http.StatusNotFound, "This collector has no placement view, so there is nothing to drain.")
		return
	}
	user, err := s.auth.Admin(r)
	switch {
	case errors.Is(err, webauth.ErrRateLimited):
		s.errorPage(w, r, http.StatusTooManyRequests, err.Error())
		return
	case errors.Is(err, webauth.ErrOpenReadOnly):
		s.errorPage(w, r, http.StatusForbidden, "Forbidden: no authentication is configured and this dashboard listens on an address other hosts can reach, so draining and undraining are off. Configure --token-file or --users (with --admins), or listen on loopback. Nothing was changed.")
		return
	case errors.Is(err, webauth.ErrNotAdmin):
		name, _ := s.auth.User(r)
		// The footer then says who is signed in.
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, name))
		s.errorPage(w, r, http.StatusForbidden, "Forbidden: "+clip(name, 128)+" may only read. Draining and undraining hosts is for administrators (the token, or a user named in --admins). Nothing was changed.")
		return
	case err != nil:
		s.errorPage(w, r, http.StatusForbidden, "Forbidden: sign in as an administrator to drain or undrain a host. Nothing was changed.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	// The form's host is path-escaped (see hostPlaceView.Value).
	host, herr := url.PathUnescape(r.PostForm.Get("host"))
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	rerr := collector.CheckOperatorText(reason)
	switch {
	case herr != nil:
		s.errorPage(w, r, http.StatusBadRequest, "The form's host is not path-escaped.")
		return
	case host == "":
		s.errorPage(w, r, http.StatusBadRequest, "The form names no host.")
		return
	case len(reason) > collector.MaxDrainReason:
		s.errorPage(w, r, http.StatusBadRequest, fmt.Sprintf("The reason is longer than %d bytes; say it shorter.", collector.MaxDrainReason))
		return
	case rerr != nil:
		// Only a forged form gets here: the page's field is one line.
		s.errorPage(w, r, http.StatusBadRequest, "The reason "+rerr.Error()+". Nothing was changed.")
		return
	}
	// Only a host the collector knows: a typo or a forged name must not
	// leave a mark on a host nobody will see.
	hosts := s.place.Placement().Hosts
	i := slices.IndexFunc(hosts, func(h collector.HostPlacement) bool { return h.Host == host })
	if i < 0 {
		s.errorPage(w, r, http.StatusNotFound, "There is no host named "+clip(host, 256)+". Nothing was changed.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), drainTimeout)
	defer cancel()
	action := "undrain"
	if drain {
		action = "drain"
		err = s.place.Drain(ctx, host, user, reason)
	} else {
		err = s.place.Undrain(ctx, host, user)
	}
	if err != nil {
		s.logger.Error("dashboard_mark_failed", "action", action, "host", host, "by", user, "err", err)
		s.errorPage(w, r, http.StatusBadGateway, "Could not "+action+" "+clip(host, 256)+": "+clip(err.Error(), 500))
		return
	}
	s.logger.Info("dashboard_mark", "action", action, "host", host, "by", user)
	http.Redirect(w, r, "/placement", http.StatusSeeOther)
}
