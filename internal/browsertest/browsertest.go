package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultChromium is where Debian's chromium package puts the browser.
const DefaultChromium = "/usr/bin/chromium"

// Chromium returns the browser to drive: $GUESTDIAG_CHROMIUM, else
// DefaultChromium, else chromium on PATH. Without one the test is skipped,
// or fails when GUESTDIAG_REQUIRE_CHROMIUM is set (as CI sets it).
func Chromium(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("GUESTDIAG_CHROMIUM"), DefaultChromium} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	msg := "no chromium at " + DefaultChromium + " or on PATH: apt-get install chromium (or set GUESTDIAG_CHROMIUM)"
	if os.Getenv("GUESTDIAG_REQUIRE_CHROMIUM") != "" {
		t.Fatal(msg + "; GUESTDIAG_REQUIRE_CHROMIUM is set")
	}
	t.Skip(msg + "; set GUESTDIAG_REQUIRE_CHROMIUM=1 to fail instead of skipping")
	return ""
}

// Start launches a headless Chromium with a fresh profile for the test and
// returns a browser context that ends with the test or after timeout. The
// window is 1280 wide, the dashboard's design width. Background
// networking, component updates and sync are off: the browser talks only
// to the servers the test opens.
func Start(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	exe := Chromium(t)
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-pings", true),
		chromedp.WindowSize(1280, 900),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	// The first run starts the browser and must not carry the deadline,
	// which would stop the whole browser; later runs use ctx.
	if err := chromedp.Do(browser); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start %s: %v", exe, err)
	}
	ctx, cancelTimeout := context.WithTimeout(browser, timeout)
	// Cleanups run last-in first-out: the browser is gone before the
	// profile directory is removed.
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	})
	return ctx
}

// Login signs in on the dashboard at base with the login form, as a person
// would, and fails the test unless it lands on a dashboard page.
func Login(t testing.TB, ctx context.Context, base, name, password string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#password")),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#signin")),
		chromedp.WaitNotPresent(chromedp.CSS("#signin")),
	)
	if err != nil {
		t.Fatalf("login as %s: %v", name, err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("login as %s: %v", name, err)
	}
	if strings.Contains(loc, "/login") {
		t.Fatalf("login as %s: still at %s", name, loc)
	}
}

// WaitText polls until the text of the element sel contains want, and
// fails the test with what it last read when the context ends first.
func WaitText(t testing.TB, ctx context.Context, sel, want string) {
	t.Helper()
	for {
		got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err == nil && strings.Contains(got, want) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s never showed %q; last read %q (%v)", sel, want, clip(got), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// Screenshot saves the whole page as name.png in the test's artifact
// directory and logs where.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := ArtifactDir(t)
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %s", name, p)
	return p
}

// ArtifactDir is where a test keeps its screenshots: t.ArtifactDir(),
// which lies under -outputdir when go test runs with -artifacts and is a
// temporary directory otherwise. $GUESTDIAG_ARTIFACTS, when set, wins, so
// that a script can collect screenshots without -artifacts.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	if root := os.Getenv("GUESTDIAG_ARTIFACTS"); root != "" {
		dir := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(fmt.Errorf("artifacts: %w", err))
		}
		return dir
	}
	return t.ArtifactDir()
}
