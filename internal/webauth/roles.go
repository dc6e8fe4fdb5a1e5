package webauth

import "net/http"

// AnonymousUser is who changes something when no authentication is
// configured and Config.ReadOnlyWhenOpen is not set: the dashboard and the
// API are then open to writes as well as reads, to anyone who can reach
// the listener (loopback, for the collectors' mains).
const AnonymousUser = "anonymous"

// IsAdmin reports whether user, as User returned it, may change
// something. The token is an admin, users of the users file only when
// Config.Admins names them, and everyone when Auth is Open (see
// AnonymousUser) unless it is read-only.
func (a *Auth) IsAdmin(user string) bool {
	if a.Open() {
		return !a.readOnly
	}
	if user == TokenUser && a.hasTok {
		return true
	}
	// New refused an admin missing from the users file.
	return a.admins[user]
}

// Admin returns the administrator who sent r, for the collector's write
// endpoints and the dashboard's drain forms: User's errors as they are,
// ErrNotAdmin for a user who may only read, and AnonymousUser when Auth is
// Open (ErrOpenReadOnly when it is read-only).
func (a *Auth) Admin(r *http.Request) (string, error) {
	if a.readOnly {
		return "", ErrOpenReadOnly
	}
	if a.Open() {
		return AnonymousUser, nil
	}
	user, err := a.User(r)
	if err != nil {
		return "", err
	}
	if !a.IsAdmin(user) {
		return "", ErrNotAdmin
	}
	return user, nil
}
