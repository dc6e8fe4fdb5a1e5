// Package browsertest drives Debian's real headless Chromium from Go tests
// with chromedp: start it, sign in to the dashboard, wait for text and save
// screenshots as test artifacts (go test -artifacts -outputdir DIR keeps
// them). It is for tests only and builds on every GOOS.
package browsertest
