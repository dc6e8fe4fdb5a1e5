package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/webauth"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openHandler is the dashboard over src with no authentication and the
// fixture's clock.
func openHandler(t testing.TB, src Source) http.Handler {
	t.Helper()
	a, err := webauth.New(webauth.Config{}, discard())
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(src, a, discard())
	s.now = func() time.Time { return t0 }
	return s.routes()
}

func get(t testing.TB, h http.Handler, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// checkSafeHTML parses a page as a browser would and fails on anything
// that could run: a script element other than the dashboard's own, an
// event-handler attribute, or a javascript: URL.
func checkSafeHTML(t *testing.T, body string) {
	t.Helper()
	if !utf8.ValidString(body) {
		t.Error("page is not valid UTF-8")
	}
	z := html.NewTokenizer(strings.NewReader(body))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		for _, a := range tok.Attr {
			if strings.HasPrefix(strings.ToLower(a.Key), "on") {
				t.Errorf("element <%s> has event handler attribute %s=%q", tok.Data, a.Key, a.Val)
			}
			if (a.Key == "href" || a.Key == "src" || a.Key == "action") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
				t.Errorf("element <%s> has %s=%q", tok.Data, a.Key, a.Val)
			}
		}
		if tok.Data == "script" {
			src := ""
			for _, a := range tok.Attr {
				if a.Key == "src" {
					src = a.Val
				}
			}
			if src != "/static/app.js" {
				t.Errorf("page has a script element other than /static/app.js: %v", tok)
			}
		}
		if tok.Data == "img" || tok.Data == "iframe" || tok.Data == "object" {
			t.Errorf("page has an <%s> element: %v", tok.Data, tok)
		}
	}
}

func TestFleetPage(t *testing.T) {
	h := openHandler(t, fixture())
	res, body := get(t, h, "/")
	if res.StatusCode != 200 {
		t.Fatalf("GET / = %d, want 200", res.StatusCode)
	}
	for _, want := range []string{"kvm-a", "kvm-b", `href="/vm/kvm-a/web-1"`, `href="/vm/kvm-a/db-1"`, "2 VMs", "0.7.0", "connected", "firing alerts", `href="/api/vms"`} {
		if !strings.Contains(body, want) {
			t.Errorf("fleet page lacks %q", want)
		}
	}
	t.Run("a VM with a crit alert comes before a healthy one", func(t *testing.T) {
		web, db := strings.LastIndex(body, `href="/vm/kvm-a/web-1"`), strings.LastIndex(body, `href="/vm/kvm-a/db-1"`)
		if web < 0 || db < 0 || web > db {
			t.Errorf("web-1 at %d, db-1 at %d: want web-1 (crit alert) first", web, db)
		}
	})
	t.Run("every check has a coloured cell", func(t *testing.T) {
		row := body[strings.LastIndex(body, `href="/vm/kvm-a/web-1"`):]
		row = row[:strings.Index(row, "</tr>")]
		for _, want := range []string{`class="st st-crit">crit<`, `class="st st-warn">warn<`, `class="st st-ok">ok<`} {
			if !strings.Contains(row, want) {
				t.Errorf("web-1's row lacks %s: %s", want, row)
			}
		}
	})
	t.Run("the footer says no authentication is configured", func(t *testing.T) {
		if !strings.Contains(body, "no authentication configured") {
			t.Error("footer does not warn about the open dashboard")
		}
	})
	t.Run("security headers are sent", func(t *testing.T) {
		if got := res.Header.Get("Content-Security-Policy"); got != csp {
			t.Errorf("CSP = %q, want %q", got, csp)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("X-Content-Type-Options = %q", got)
		}
	})
	t.Run("the host filter keeps one host", func(t *testing.T) {
		_, body := get(t, h, "/?host=kvm-a")
		if strings.Contains(body, "no ICMP socket") || strings.Contains(body, "/vm/kvm-b/") || !strings.Contains(body, "/vm/kvm-a/web-1") {
			t.Error("host filter kvm-a shows kvm-b's VMs or hides kvm-a's")
		}
	})
	t.Run("only problems hides healthy VMs", func(t *testing.T) {
		_, body := get(t, h, "/?problems=1")
		if strings.Contains(body, "/vm/kvm-a/db-1") || !strings.Contains(body, "/vm/kvm-a/web-1") {
			t.Error("problems filter shows db-1 or hides web-1")
		}
	})
}

func TestFleetPageWhileLoading(t *testing.T) {
	f := fixture()
	f.loaded = false
	res, body := get(t, openHandler(t, f), "/")
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "still loading") {
		t.Errorf("GET / before load = %d, want 503 saying it is still loading", res.StatusCode)
	}
}

func TestVMPage(t *testing.T) {
	h := openHandler(t, fixture())
	res, body := get(t, h, "/vm/kvm-a/web-1")
	if res.StatusCode != 200 {
		t.Fatalf("GET VM = %d, want 200", res.StatusCode)
	}
	for _, want := range []struct{ what, text string }{
		{"the firing alert", "/ is 98% full on web-1"},
		{"its KB cause", "writes will soon fail with ENOSPC"},
		{"its KB resolution step", "journalctl --vacuum-size=200M"},
		{"its KB reference as a link", `href="https://man7.org/linux/man-pages/man1/du.1.html"`},
		{"a KB entry for an info finding", "Check that the change was planned"},
		{"the alert history", "memory 93% used on web-1"},
		{"the timeline", "res.disk_full firing: / is 98% full"},
		{"a top process", "java-busy"},
		{"a network address", "fe80::5054:ff:fe12:3456/64"},
		{"the gateway", "10.0.0.1"},
		{"an added firewall rule", "+ inet filter input: tcp dport 8080 accept"},
		{"a removed firewall rule", "- inet filter input: tcp dport 23 accept"},
		{"a software change", "3.2.2-2"},
		{"a log entry", "connect() failed (111: Connection refused)"},
		{"the JSON link", `href="/api/vms/web-1?host=kvm-a"`},
		{"the filesystem table", "/dev/vda1"},
	} {
		if !strings.Contains(body, want.text) {
			t.Errorf("VM page lacks %s (%q)", want.what, want.text)
		}
	}
	t.Run("a KB reference that is not http is text, not a link", func(t *testing.T) {
		if strings.Contains(body, `href="javascript:`) || !strings.Contains(body, "<span>javascript:alert(1)</span>") {
			t.Error("javascript: reference is a link or missing")
		}
	})
	t.Run("an unknown VM is 404", func(t *testing.T) {
		res, _ := get(t, h, "/vm/kvm-a/nope")
		if res.StatusCode != 404 {
			t.Errorf("GET unknown VM = %d, want 404", res.StatusCode)
		}
	})
	t.Run("the fragment is the main part only", func(t *testing.T) {
		res, frag := get(t, h, "/vm/kvm-a/web-1?fragment=main")
		if res.Header.Get("X-Fragment") != "main" || strings.Contains(frag, "<html") || !strings.Contains(frag, "java-busy") {
			t.Errorf("fragment: X-Fragment %q, has <html %v, has content %v", res.Header.Get("X-Fragment"), strings.Contains(frag, "<html"), strings.Contains(frag, "java-busy"))
		}
	})
}

func TestVMPageWithDataOfAnyShape(t *testing.T) {
	tests := []struct {
		name, check string
		data        string
		want        string
	}{
		{"network addresses as a string instead of a list", "network", `{"addresses":"<b>10.0.0.1</b>"}`, "&lt;b&gt;10.0.0.1&lt;/b&gt;"},
		{"resources data that is an array", "resources", `[1,2,{"x":"<script>"}]`, "&lt;script&gt;"},
		{"top processes with numbers where names go", "resources", `{"top_cpu":[{"pid":"one","name":12,"user":{"a":1}}]}`, "{&#34;a&#34;:1}"},
		{"data the collector truncated", "firewall", `{"truncated":true,"bytes":900000}`, "900000"},
		{"software changes that are objects of objects", "software", `{"changes":{"a":{"b":"c"}}}`, "&#34;b&#34;: &#34;c&#34;"},
		{"invalid UTF-8 in a string", "logs", "{\"entries\":[{\"message\":\"a\xffb\"}]}", "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixture()
			f.vms[0].Checks[tt.check].Data = json.RawMessage(tt.data)
			res, body := get(t, openHandler(t, f), "/vm/kvm-a/web-1")
			if res.StatusCode != 200 {
				t.Fatalf("GET = %d, want 200", res.StatusCode)
			}
			if !strings.Contains(body, tt.want) {
				t.Errorf("page lacks %q", tt.want)
			}
			checkSafeHTML(t, body)
		})
	}
}

func TestHostileGuestTextIsShownAsText(t *testing.T) {
	f := fixture()
	h := openHandler(t, f)
	hostile := vmHref("kvm-b", scriptName)
	pages := []string{
		"/", "/?problems=1", hostile, "/alerts", "/alerts?state=firing&host=kvm-b", "/kb?q=hostile",
		"/kb?q=" + url.QueryEscape(scriptName), "/alerts?code=" + url.QueryEscape(imgPayload),
		vmHref("kvm-b", longName), vmHref(jsName, jsName),
	}
	for _, p := range pages {
		t.Run("page "+p, func(t *testing.T) {
			res, body := get(t, h, p)
			if res.StatusCode != 200 {
				t.Fatalf("GET %s = %d, want 200", p, res.StatusCode)
			}
			checkSafeHTML(t, body)
			for _, bad := range []string{scriptName, pwnedScript, "<img", "\xff", "\x1b"} {
				if strings.Contains(body, bad) {
					t.Errorf("page has %q unescaped", bad)
				}
			}
		})
	}
	t.Run("the hostile names are visible, escaped", func(t *testing.T) {
		_, body := get(t, h, hostile)
		for _, want := range []string{
			"&lt;script&gt;alert(1)&lt;/script&gt;",
			"&#34;&gt;&lt;img src=x onerror=alert(1)&gt;",
			"&lt;script&gt;window.__pwned=1&lt;/script&gt;",
			"disk \uFFFD\uFFFD error \\x1b[31m red",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("VM page lacks %q", want)
			}
		}
	})
	t.Run("the fleet links to the hostile VM with its name path-escaped", func(t *testing.T) {
		_, body := get(t, h, "/")
		if !strings.Contains(body, `href="/vm/kvm-b/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"`) {
			t.Error("no path-escaped link to the hostile VM")
		}
		if !strings.Contains(body, `href="/vm/javascript:alert%281%29/javascript:alert%281%29"`) {
			t.Error("no relative link to the VM named javascript:…")
		}
	})
	t.Run("the 200-byte name links to its own page", func(t *testing.T) {
		_, body := get(t, h, "/")
		href := vmHref("kvm-b", longName)
		if !strings.Contains(body, `href="`+strings.ReplaceAll(href, "%3E", "%3e")+`"`) && !strings.Contains(body, `href="`+href+`"`) {
			t.Errorf("fleet page lacks the link %s", href)
		}
		res, page := get(t, h, href)
		if res.StatusCode != 200 || !strings.Contains(page, "no ICMP socket") {
			t.Errorf("GET %s = %d, want the VM's page", href, res.StatusCode)
		}
	})
}

func TestAlertsPage(t *testing.T) {
	h := openHandler(t, fixture())
	tests := []struct {
		name, query string
		want, not   []string
		json        string
	}{
		{"no filter shows firing and resolved", "", []string{"/ is 98% full on web-1", "memory 93% used"}, nil, "/api/alerts"},
		{"firing only", "state=firing", []string{"/ is 98% full on web-1"}, []string{"memory 93% used"}, "/api/alerts?state=firing"},
		{"resolved only", "state=resolved", []string{"memory 93% used"}, []string{"/ is 98% full on web-1"}, "/api/alerts?state=resolved"},
		{"crit only", "severity=crit", []string{"/ is 98% full on web-1"}, []string{"firewall ruleset changed"}, "/api/alerts?severity=crit"},
		{"one host", "host=kvm-b", []string{"proc.service_failed"}, []string{"web-1"}, "/api/alerts?host=kvm-b"},
		{"one code", "code=fw.changed", []string{"firewall ruleset changed"}, []string{"/ is 98% full"}, "/api/alerts?code=fw.changed"},
		{"an unknown state is ignored", "state=bogus", []string{"memory 93% used", "/ is 98% full"}, nil, "/api/alerts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, h, "/alerts?"+tt.query)
			if res.StatusCode != 200 {
				t.Fatalf("GET = %d", res.StatusCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("lacks %q", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(body, n) {
					t.Errorf("has %q, which the filter excludes", n)
				}
			}
			if !strings.Contains(body, `class="json" href="`+strings.ReplaceAll(tt.json, "&", "&amp;")+`"`) {
				t.Errorf("JSON link is not %s", tt.json)
			}
		})
	}
}

func TestKBPage(t *testing.T) {
	h := openHandler(t, fixture())
	_, body := get(t, h, "/kb?q=7031")
	for _, want := range []string{"A service terminated unexpectedly", "The service crashed and the SCM applied its recovery action.",
		"Read the service&#39;s own log", "provider=Service Control Manager", "event_id=7031", `href="/api/kb?q=7031"`, "The Print Spooler service terminated unexpectedly."} {
		if !strings.Contains(body, want) {
			t.Errorf("KB page lacks %q", want)
		}
	}
	if strings.Contains(body, "Filesystem almost full") {
		t.Error("KB page shows an entry that does not match the query")
	}
	_, empty := get(t, h, "/kb")
	if strings.Contains(empty, "entries for") {
		t.Error("KB page without a query lists entries")
	}
}

func TestStaticAssets(t *testing.T) {
	h := openHandler(t, fixture())
	for _, p := range []struct{ path, ctype string }{{"/static/app.js", "text/javascript"}, {"/static/app.css", "text/css"}} {
		res, body := get(t, h, p.path)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), p.ctype) || len(body) < 100 {
			t.Errorf("GET %s = %d %q (%d bytes)", p.path, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
	}
}

func TestEventsStreamChangesForThePage(t *testing.T) {
	f := fixture()
	srv := httptest.NewServer(openHandler(t, f))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events?host=kvm-b&vm="+url.QueryEscape(scriptName), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	for f.subscribers() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the stream never subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.fire(collector.Change{Host: "kvm-a", VM: "web-1", What: "vm"})
	f.fire(collector.Change{Host: "kvm-b", VM: scriptName, What: "alert"})
	sc := bufio.NewScanner(res.Body)
	var data []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
			break
		}
	}
	if len(data) != 1 {
		t.Fatalf("got no event: %v", sc.Err())
	}
	var c collector.Change
	if err := json.Unmarshal([]byte(data[0]), &c); err != nil {
		t.Fatal(err)
	}
	if c.VM != scriptName || c.What != "alert" {
		t.Errorf("first event = %+v, want the hostile VM's alert (web-1's is filtered out)", c)
	}
	if strings.Contains(data[0], "<") {
		t.Errorf("event data has a raw '<': %s", data[0])
	}
}

// TestEventsStreamEndsWhenTheSessionExpires: a stream opened with a session
// cookie stops once the session is no longer valid, instead of feeding a
// signed-out browser (or a stolen cookie) for as long as it stays open.
func TestEventsStreamEndsWhenTheSessionExpires(t *testing.T) {
	a, err := webauth.New(webauth.Config{Token: "s3cret", SessionTTL: 2 * time.Second}, discard())
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(fixture(), a, discard())
	s.keepAlive = 50 * time.Millisecond
	srv := httptest.NewServer(s.routes())
	defer srv.Close()

	// Log in with the form, as a browser would, to get a session cookie.
	login := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/login", strings.NewReader("name=token&password=s3cret"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.routes().ServeHTTP(login, req)
	var cookie *http.Cookie
	for _, c := range login.Result().Cookies() {
		if c.Name == webauth.CookieName {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("login gave no session cookie (status %d)", login.Code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	ev.AddCookie(cookie)
	res, err := http.DefaultClient.Do(ev)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("events with a fresh session: status %d", res.StatusCode)
	}
	body, err := io.ReadAll(res.Body)
	if ctx.Err() != nil {
		t.Fatalf("the stream was still open 10 s after a 2 s session: %v", err)
	}
	if !strings.Contains(string(body), "keep-alive") {
		t.Errorf("the stream ended before its first keep-alive, while the session was valid: %q", body)
	}
}
