package dashboard

import (
	"context"
	"slices"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/guestdiag/guestdiag/internal/browsertest"
)

// placementInBrowser is the placement part of TestIntegrationDashboardBrowser,
// sharing its browser (starting Chromium is most of the test's time): the
// admin, signed in, drains kvm-a from the page with a reason; the source
// records the drain with the admin's name; then a viewer signs in and is
// offered no button.
func placementInBrowser(t *testing.T, ctx context.Context, base string, src *fakeSource) {
	t.Run("an admin drains a host from the placement page", func(t *testing.T) {
		err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`nav a[href="/placement"]`)),
			chromedp.WaitVisible(chromedp.CSS("table.placement")),
		)
		if err != nil {
			t.Fatal(err)
		}
		// Hosts are sorted by name: kvm-a is the first row.
		browsertest.WaitText(t, ctx, "#host-0", "kvm-a")
		browsertest.WaitText(t, ctx, "#host-0 .hints", "overloaded")
		browsertest.WaitText(t, ctx, "#plans", "kvm-a → kvm-c")
		err = chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS(`#host-0 form.drain input[name="reason"]`), "kernel update"),
			chromedp.Click(chromedp.CSS(`#host-0 form.drain button`)),
		)
		if err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, ctx, "#host-0 td.drain", "drained by admin")
		browsertest.WaitText(t, ctx, "#host-0 td.drain", "kernel update")
		want := []markCall{{Drain: true, Host: "kvm-a", By: "admin", Reason: "kernel update"}}
		if got := src.calls(); !slices.Equal(got, want) {
			t.Errorf("the source recorded %+v, want %+v", got, want)
		}
		pwned, err := chromedp.Run(ctx, chromedp.Evaluate[string](`typeof window.__pwned`))
		if err != nil || pwned != "undefined" {
			t.Errorf("typeof window.__pwned = %q (%v): a hostile name's script ran", pwned, err)
		}
		browsertest.Screenshot(t, ctx, "placement-admin")
	})

	t.Run("a viewer sees the placement page without a drain button", func(t *testing.T) {
		err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS("form.logout button")),
			chromedp.WaitVisible(chromedp.CSS("#password")),
		)
		if err != nil {
			t.Fatal(err)
		}
		browsertest.Login(t, ctx, base, "viewer", "v1ewer")
		err = chromedp.Do(ctx, chromedp.Navigate(base+"/placement"), chromedp.WaitVisible(chromedp.CSS("table.placement")))
		if err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, ctx, "#host-0 td.drain", "drained by admin")
		browsertest.WaitText(t, ctx, "footer", "read-only")
		forms, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("main form, main button").length`))
		if err != nil || forms != 0 {
			t.Errorf("the viewer's page has %d forms or buttons (%v), want none", forms, err)
		}
		browsertest.Screenshot(t, ctx, "placement-viewer")
	})
}
