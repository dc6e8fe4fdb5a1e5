package dashboard

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	xhtml "golang.org/x/net/html"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestPlacementPage(t *testing.T) {
	src := fixture()
	res, body := get(t, openHandler(t, src), "/placement")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /placement = %d", res.StatusCode)
	}
	checkSafeHTML(t, body)
	for _, want := range []string{
		`<a href="/placement" class="on">Placement</a>`,
		`<a href="/?host=kvm-a">kvm-a</a>`,
		"97.0 % <span class=\"dim\">of 16 CPUs</span>", "40.0 % <span class=\"dim\">of 64.0 GiB</span>",
		">overloaded</span> cpu", "4 of 5 samples above 80.0 %", "5 of 5 samples below 10.0 %", ">underloaded</span> memory · <span title=\"" + stamp(t0.Add(-time.Minute)) + "\">since 1m ago", "<td>95.0 %</td>",
		`<a class="name" href="/vm/kvm-b/%3Cscript%3Ealert%281%29%3C%2Fscript%3E">`,
		"no sample", "as of " + stamp(t0),
		"chunk net-backend", `<a href="/vm/kvm-c/web-1">web-1</a>`, "kvm-a → kvm-c",
		"CPU 61.5 %, mem 30.0 %", "CPU 35.5 %, mem 12.5 %", "4.21s", "38ms", "done", "failed", "started",
		"advisory", "Unresolved:", `data-every="15"`, `href="/api/placement"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	t.Run("plans are newest first", func(t *testing.T) {
		if p2, p1 := strings.Index(body, ">p2<"), strings.Index(body, ">p1<"); p2 < 0 || p1 < 0 || p2 > p1 {
			t.Errorf("plan p2 at %d, p1 at %d; want p2 first", p2, p1)
		}
	})
	t.Run("what relays, guests and operators wrote is shown escaped", func(t *testing.T) {
		for _, s := range []string{pwnedScript, pwnedImg, imgPayload} {
			if strings.Contains(body, s) {
				t.Errorf("page holds %q unescaped", s)
			}
			if !strings.Contains(body, html.EscapeString(s)) {
				t.Errorf("page lacks %q as text", html.EscapeString(s))
			}
		}
	})
	t.Run("long text is clipped", func(t *testing.T) {
		src.update(func(f *fakeSource) { f.place.Hosts[1].Hints[0].Summary = strings.Repeat("x", 5000) })
		_, body := get(t, openHandler(t, src), "/placement")
		if strings.Contains(body, strings.Repeat("x", 501)) || !strings.Contains(body, strings.Repeat("x", 500)+"…") {
			t.Error("a 5000-byte hint summary is not clipped to 500 bytes")
		}
	})
	t.Run("an open dashboard offers drain to anyone and says so", func(t *testing.T) {
		if !strings.Contains(body, `action="/placement/drain"`) || !strings.Contains(body, `action="/placement/undrain"`) {
			t.Error("no drain or undrain form on an open dashboard")
		}
		if !strings.Contains(body, "can read it and drain hosts") || regexp.MustCompile(`·\s*·`).MatchString(body) {
			t.Error("the footer does not say plainly that anyone can drain hosts")
		}
	})
}

func TestPlacementPageShowsAFigureTheRelayLacksAsUnknown(t *testing.T) {
	src := fixture()
	src.update(func(f *fakeSource) {
		u := *f.place.Hosts[0].Usage
		u.CPU.UsedPct, u.Errors = 0, []string{"cpu times: open /proc/stat: permission denied"}
		f.place.Hosts[0].Usage = &u
	})
	_, body := get(t, openHandler(t, src), "/placement")
	host := src.place.Hosts[0].Host
	if !strings.Contains(body, `<td>? <span class="dim">of 16 CPUs`) {
		t.Errorf("%s's CPU is not shown as unknown", host)
	}
	if strings.Contains(body, `<td>0.0 % <span class="dim">of `) {
		t.Errorf("%s's missing CPU figure is shown as 0.0 %%", host)
	}
	if !strings.Contains(body, "permission denied") {
		t.Errorf("%s's usage error is not shown", host)
	}
}

// onlySource hides a Source's other methods, as a collector without a
// placement view would.
type onlySource struct{ Source }

func TestPlacementPageWithoutPlacer(t *testing.T) {
	h := openHandler(t, onlySource{fixture()})
	res, body := get(t, h, "/placement")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "no placement view") {
		t.Errorf("GET /placement = %d without saying there is no placement view", res.StatusCode)
	}
	if _, fleet := get(t, h, "/"); strings.Contains(fleet, `href="/placement"`) {
		t.Error("the nav links a placement page the source cannot fill")
	}
	if rec := postMark(h, "/placement/drain", url.Values{"host": {"kvm-a"}}, nil); rec.Code != http.StatusNotFound {
		t.Errorf("POST drain = %d, want 404", rec.Code)
	}
}

// rolesHandler is the dashboard with users ops (an admin, password
// ops-pw) and viewer (password view-pw), and a token.
func rolesHandler(t *testing.T, src Source) http.Handler {
	t.Helper()
	var lines []string
	for _, u := range [][2]string{{"ops", "ops-pw"}, {"viewer", "view-pw"}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u[0]+":"+string(h))
	}
	p := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return New(src, Config{UsersFile: p, Token: "tok-123", Admins: []string{"ops"}}, discard())
}

func postMark(h http.Handler, path string, form url.Values, set func(r *http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "192.0.2.10:4000"
	if set != nil {
		set(r)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestPlacementRoles(t *testing.T) {
	src := fixture()
	h := rolesHandler(t, src)
	page := func(user, pass string) string {
		r := httptest.NewRequest("GET", "/placement", nil)
		r.SetBasicAuth(user, pass)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /placement as %s = %d", user, rec.Code)
		}
		return rec.Body.String()
	}
	t.Run("an admin sees drain and undrain buttons", func(t *testing.T) {
		body := page("ops", "ops-pw")
		if !strings.Contains(body, `action="/placement/drain"`) || !strings.Contains(body, `action="/placement/undrain"`) {
			t.Error("no drain or undrain form for an admin")
		}
		if !strings.Contains(body, "administrator (may drain and undrain hosts)") {
			t.Error("the footer does not say the reader is an administrator")
		}
	})
	t.Run("the token is an admin", func(t *testing.T) {
		if body := page("token", "tok-123"); !strings.Contains(body, `action="/placement/drain"`) {
			t.Error("no drain form for the token")
		}
	})
	t.Run("a viewer sees the page without any button", func(t *testing.T) {
		body := page("viewer", "view-pw")
		if !strings.Contains(body, "kvm-a") || !strings.Contains(body, "4 of 5 samples") {
			t.Error("a viewer does not see the hosts and hints")
		}
		if strings.Contains(body, "<form method=\"post\" action=\"/placement") || strings.Contains(body, "<button type=\"submit\">Drain") {
			t.Error("a viewer is offered a drain or undrain form")
		}
		if !strings.Contains(body, "read-only") {
			t.Error("the footer does not say read-only")
		}
	})

	drain := url.Values{"host": {"kvm-a"}, "reason": {"kernel update"}}
	tests := []struct {
		name     string
		path     string
		form     url.Values
		set      func(r *http.Request)
		wantCode int
		wantText string
	}{
		{"a POST without a session is 403 and drains nothing", "/placement/drain", drain, nil,
			http.StatusForbidden, "sign in as an administrator"},
		{"a viewer's forged POST is 403 and drains nothing", "/placement/drain", drain,
			func(r *http.Request) { r.SetBasicAuth("viewer", "view-pw") }, http.StatusForbidden, "viewer may only read"},
		{"a viewer cannot undrain either", "/placement/undrain", url.Values{"host": {"kvm-b"}},
			func(r *http.Request) { r.SetBasicAuth("viewer", "view-pw") }, http.StatusForbidden, "Nothing was changed"},
		{"an admin's form posted from another site is 403", "/placement/drain", drain, func(r *http.Request) {
			r.SetBasicAuth("ops", "ops-pw")
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}, http.StatusForbidden, ""},
		{"an admin's form with a foreign Origin is 403", "/placement/drain", drain, func(r *http.Request) {
			r.SetBasicAuth("ops", "ops-pw")
			r.Header.Set("Origin", "https://evil.example")
		}, http.StatusForbidden, ""},
		{"a host the collector does not know is 404", "/placement/drain", url.Values{"host": {"kvm-z"}},
			func(r *http.Request) { r.SetBasicAuth("ops", "ops-pw") }, http.StatusNotFound, "no host named kvm-z"},
		{"a reason over the collector's limit is 400", "/placement/drain", url.Values{"host": {"kvm-a"}, "reason": {strings.Repeat("r", collector.MaxDrainReason+1)}},
			func(r *http.Request) { r.SetBasicAuth("ops", "ops-pw") }, http.StatusBadRequest, "say it shorter"},
		{"a form without a host is 400", "/placement/drain", url.Values{},
			func(r *http.Request) { r.SetBasicAuth("ops", "ops-pw") }, http.StatusBadRequest, "names no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := postMark(h, tt.path, tt.form, tt.set)
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantText) {
				t.Errorf("POST %s = %d %q; want %d with %q", tt.path, rec.Code, rec.Body.String(), tt.wantCode, tt.wantText)
			}
			if calls := src.calls(); len(calls) != 0 {
				t.Errorf("the source was asked for %+v", calls)
			}
		})
	}

	t.Run("an admin drains and undrains a host under their own name", func(t *testing.T) {
		rec := postMark(h, "/placement/drain", drain, func(r *http.Request) { r.SetBasicAuth("ops", "ops-pw") })
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/placement" {
			t.Fatalf("POST drain = %d to %q (%s)", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
		rec = postMark(h, "/placement/undrain", url.Values{"host": {"kvm-b"}}, func(r *http.Request) { r.SetBasicAuth("token", "tok-123") })
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("POST undrain = %d (%s)", rec.Code, rec.Body)
		}
		got := src.calls()
		want := []markCall{{Drain: true, Host: "kvm-a", By: "ops", Reason: "kernel update"}, {Host: "kvm-b", By: "token"}}
		if !slices.Equal(got, want) {
			t.Errorf("calls = %+v, want %+v", got, want)
		}
	})
}

func TestPlacementDrainWhenOpen(t *testing.T) {
	src := fixture()
	h := openHandler(t, src)
	rec := postMark(h, "/placement/drain", url.Values{"host": {"kvm-c"}, "reason": {"  disk swap  "}}, nil)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("POST drain = %d (%s)", rec.Code, rec.Body)
	}
	want := []markCall{{Drain: true, Host: "kvm-c", By: "anonymous", Reason: "disk swap"}}
	if got := src.calls(); !slices.Equal(got, want) {
		t.Errorf("calls = %+v, want %+v", got, want)
	}
	_, body := get(t, h, "/placement")
	if !strings.Contains(body, "disk swap") {
		t.Error("the page does not show the new drain mark")
	}
}

// TestPlacementDrainFormRoundTripsAHostileHostName: the form's hidden
// host field, path-escaped in the page, comes back as the exact name, so
// that a host with markup and control characters in its name can be
// drained.
func TestPlacementDrainFormRoundTripsAHostileHostName(t *testing.T) {
	src := fixture()
	h := openHandler(t, src)
	_, body := get(t, h, "/placement")
	var hosts []string
	z := xhtml.NewTokenizer(strings.NewReader(body))
	for tt := z.Next(); tt != xhtml.ErrorToken; tt = z.Next() {
		tok := z.Token()
		if tok.Data != "input" {
			continue
		}
		name, value := "", ""
		for _, a := range tok.Attr {
			switch a.Key {
			case "name":
				name = a.Val
			case "value":
				value = a.Val
			}
		}
		if name == "host" {
			hosts = append(hosts, value)
		}
	}
	if !slices.Contains(hosts, "kvm-c") || !slices.Contains(hosts, url.PathEscape(hostileHost)) {
		t.Fatalf("the forms' host fields are %q; want kvm-c and %q", hosts, url.PathEscape(hostileHost))
	}
	if rec := postMark(h, "/placement/drain", url.Values{"host": {url.PathEscape(hostileHost)}}, nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("POST drain = %d (%s)", rec.Code, rec.Body)
	}
	if got := src.calls(); len(got) != 1 || got[0].Host != hostileHost {
		t.Errorf("calls = %+v, want one drain of %q", got, hostileHost)
	}
	if _, body := get(t, h, "/placement"); strings.ContainsRune(body, 0x1b) {
		t.Error("the page holds a raw escape character")
	}
}

func TestPlacementPageShowsHostsThatNeedALookFirst(t *testing.T) {
	src := newFakeSource()
	for i := range maxPlaceHosts + 100 {
		src.place.Hosts = append(src.place.Hosts, collector.HostPlacement{Host: fmt.Sprintf("quiet-%04d", i)})
	}
	src.place.Hosts = append(src.place.Hosts, collector.HostPlacement{Host: "zz-hot",
		Hints: []protocol.Hint{{Host: "zz-hot", Kind: protocol.HintOverloaded, Summary: "hot"}}})
	_, body := get(t, openHandler(t, src), "/placement")
	for _, want := range []string{"601 hosts", "500 hosts shown, drained and hinted first", `<tr id="host-0">` + "\n" + `      <td class="name"><a href="/?host=zz-hot">zz-hot</a>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "quiet-0499") {
		t.Error("the page shows more than 500 hosts")
	}
}

// The page and the collector must agree on how long a reason may be: a
// reason the collector accepts (from the API or the CLI) is shown whole,
// and the form takes one as long.
func TestPlacementReasonLimitIsTheCollectors(t *testing.T) {
	src := fixture()
	h := openHandler(t, src)
	reason := strings.Repeat("r", collector.MaxDrainReason)
	rec := postMark(h, "/placement/drain", url.Values{"host": {"kvm-c"}, "reason": {reason}}, nil)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("POST drain with a %d-byte reason = %d (%s)", len(reason), rec.Code, rec.Body)
	}
	_, body := get(t, h, "/placement")
	if !strings.Contains(body, reason) {
		t.Errorf("the page does not show the %d-byte reason whole", len(reason))
	}
	if want := fmt.Sprintf(`maxlength="%d"`, collector.MaxDrainReason); !strings.Contains(body, want) {
		t.Errorf("the form's reason field lacks %s", want)
	}
	rec = postMark(h, "/placement/drain", url.Values{"host": {"kvm-c"}, "reason": {reason + "r"}}, nil)
	if want := fmt.Sprintf("longer than %d bytes", collector.MaxDrainReason); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
		t.Errorf("POST drain with a longer reason = %d %q; want 400 with %q", rec.Code, rec.Body, want)
	}
}

// A forged form's reason that the collector would refuse is refused by
// the page as bad input, before it reaches the collector.
func TestPlacementRefusesAReasonWithControlCharacters(t *testing.T) {
	src := fixture()
	h := openHandler(t, src)
	rec := postMark(h, "/placement/drain", url.Values{"host": {"kvm-c"}, "reason": {"kernel\x1b[2J update"}}, nil)
	if want := "control or non-printable characters"; rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
		t.Errorf("POST drain with an escape in its reason = %d %q; want 400 with %q", rec.Code, rec.Body, want)
	}
	if got := src.calls(); len(got) != 0 {
		t.Errorf("the collector was asked for %+v, want nothing", got)
	}
}
