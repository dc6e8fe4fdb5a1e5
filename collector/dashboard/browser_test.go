package dashboard

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/browsertest"
	"github.com/guestdiag/guestdiag/protocol"
)

// TestIntegrationDashboardBrowser drives the dashboard in real headless
// Chromium, as an administrator would: sign in, read the fleet, open a VM,
// read a resolution, watch a live update arrive without a reload, and look
// at a hostile guest's page; then drain a host from the placement page, and
// sign in again as a viewer, who may not. Screenshots are kept with
// go test -artifacts -outputdir DIR (or $GUESTDIAG_ARTIFACTS).
func TestIntegrationDashboardBrowser(t *testing.T) {
	var lines string
	for _, u := range [][2]string{{"admin", "s3cret"}, {"viewer", "v1ewer"}} {
		hash, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines += u[0] + ":" + string(hash) + "\n"
	}
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fixture()
	srv := httptest.NewServer(New(src, Config{UsersFile: users, Admins: []string{"admin"}}, discard()))
	// Registered before the browser's cleanup, so it runs after it: Close
	// waits for the page's open event stream, which ends with the browser.
	t.Cleanup(srv.Close)
	ctx := browsertest.Start(t, 90*time.Second)

	browsertest.Login(t, ctx, srv.URL, "admin", "s3cret")

	t.Run("the fleet shows hosts and VMs", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.CSS("table.fleet"))); err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, ctx, "main", "kvm-a")
		browsertest.WaitText(t, ctx, "main", "web-1")
		browsertest.WaitText(t, ctx, "footer", "signed in as admin")
		browsertest.Screenshot(t, ctx, "fleet")
	})

	t.Run("a VM page shows the alert's resolution", func(t *testing.T) {
		err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`table.fleet a[href="/vm/kvm-a/web-1"]`)),
			chromedp.WaitVisible(chromedp.CSS("#alerts .resolution")),
		)
		if err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, ctx, "#alerts .resolution", "journalctl --vacuum-size=200M")
		browsertest.WaitText(t, ctx, "#processes", "java-busy")
		browsertest.Screenshot(t, ctx, "vm")
	})

	t.Run("a live update arrives without a reload", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.__marker = "still-here"`)); err != nil {
			t.Fatal(err)
		}
		src.update(func(f *fakeSource) {
			f.alerts = append(f.alerts, collector.Alert{
				Fingerprint: "live", Key: collector.AlertKey{Host: "kvm-a", VM: "web-1", Check: "resources", Code: "res.memory_high"},
				State: collector.AlertFiring, Severity: "crit", Summary: "memory 99% used: arrived live", StartsAt: time.Now(),
			})
		})
		fireUntilShown(t, ctx, src, collector.Change{Host: "kvm-a", VM: "web-1", What: "alert"}, "#alerts", "memory 99% used: arrived live")
		marker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__marker`))
		if err != nil || marker != "still-here" {
			t.Errorf("window.__marker = %q (%v) after the update: the page reloaded", marker, err)
		}
		browsertest.Screenshot(t, ctx, "vm-live")
	})

	t.Run("a hostile guest's script is shown as text and never runs", func(t *testing.T) {
		err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+vmHref("kvm-b", scriptName)), chromedp.WaitVisible(chromedp.CSS("#checks")))
		if err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, ctx, "h1", scriptName)
		browsertest.WaitText(t, ctx, "#checks", pwnedScript+pwnedImg)
		browsertest.WaitText(t, ctx, "#processes", pwnedScript)
		// A live swap must not run it either: innerHTML would fire an
		// injected <img onerror>.
		src.update(func(f *fakeSource) {
			for i := range f.vms {
				if f.vms[i].Name == scriptName {
					f.vms[i].Checks["processes"] = check(protocol.StatusCrit, "swapped "+pwnedImg+pwnedScript, nil)
				}
			}
		})
		fireUntilShown(t, ctx, src, collector.Change{Host: "kvm-b", VM: scriptName, What: "vm"}, "#checks", "swapped "+pwnedImg+pwnedScript)
		pwned, err := chromedp.Run(ctx, chromedp.Evaluate[string](`typeof window.__pwned`))
		if err != nil || pwned != "undefined" {
			t.Errorf("typeof window.__pwned = %q (%v): the guest's script ran", pwned, err)
		}
		imgs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("main img, main script").length`))
		if err != nil || imgs != 0 {
			t.Errorf("main has %d img or script elements (%v)", imgs, err)
		}
		browsertest.Screenshot(t, ctx, "hostile")
	})

	placementInBrowser(t, ctx, srv.URL, src)
}

// fireUntilShown fires c until the element sel shows want. The page's
// event stream may connect a moment after the page is visible, and a
// change fired before then is not replayed, as with the real collector.
func fireUntilShown(t *testing.T, ctx context.Context, src *fakeSource, c collector.Change, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		src.fire(c)
		got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err == nil && strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q after change %+v (%v)", sel, want, c, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
