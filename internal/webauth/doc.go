// Package webauth is the read-only authentication in front of the
// collector's dashboard and JSON API: a shared token, or users with bcrypt
// password hashes in an htpasswd-style file, checked on a login form that
// sets an HMAC-signed session cookie, or per request with a Bearer token or
// Basic auth. With neither configured everything is open.
package webauth
