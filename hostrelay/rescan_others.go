//go:build !linux

package hostrelay

import "log/slog"

// rescanner is inotify's stand-in where there is none: only the periodic
// rescan finds channels.
type rescanner struct{ C chan struct{} }

func newRescanner(*slog.Logger) *rescanner { return &rescanner{} }
func (rs *rescanner) watch([]string)       {}
func (rs *rescanner) close()               {}
