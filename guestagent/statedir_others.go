//go:build !windows

package guestagent

func defaultStateDir() string { return "/var/lib/guestdiag" }
