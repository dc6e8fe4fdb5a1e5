package dashboard

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/browsertest"
	"github.com/guestdiag/guestdiag/protocol"
)

// placementInBrowser is the placement part of TestIntegrationDashboardBrowser,
// sharing its browser (starting Chromium is most of the test's time): the
// admin, signed in, drains kvm-a from the page with a reason; the source
// records the drain with the admin's name; then a viewer signs in and is
// offered no button, and sees a new plan arrive live.
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
		reason := `#host-0 form.drain input[name="reason"]`
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(reason), "kernel update")); err != nil {
			t.Fatal(err)
		}
		// A change while the reason is typed must not swap the form away.
		fireUntilShown(t, ctx, src, collector.Change{Host: "kvm-a", What: "hint"}, "#live", "paused while you type")
		typed, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+reason+`').value`))
		if err != nil || typed != "kernel update" {
			t.Fatalf("the reason field holds %q (%v) after a change, want what was typed", typed, err)
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#host-0 form.drain button`))); err != nil {
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

	t.Run("a new plan arrives on the placement page without a reload", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.__marker = "placement"`)); err != nil {
			t.Fatal(err)
		}
		src.update(func(f *fakeSource) {
			f.place.Plans = append([]collector.PlanRecord{{Plan: protocol.Plan{V: 1, Kind: protocol.PlanKindPlan, ID: "p3-live", TS: time.Now(),
				Scheduler: "sched-1", Mode: protocol.ModeAdvisory}}}, f.place.Plans...)
		})
		fireUntilShown(t, ctx, src, collector.Change{Host: "kvm-a", What: "plan"}, "#plans", "p3-live")
		marker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__marker`))
		if err != nil || marker != "placement" {
			t.Errorf("window.__marker = %q (%v) after the update: the page reloaded", marker, err)
		}
	})
}
