// Package webauth is the authentication in front of the collector's
// dashboard and JSON API: a shared token, or users with bcrypt password
// hashes in an htpasswd-style file, checked on a login form that sets an
// HMAC-signed session cookie, or per request with a Bearer token or Basic
// auth. Everyone signed in may read; only admins (the token, and the users
// Config.Admins names) may drain hosts. With neither configured everything
// is open.
package webauth
