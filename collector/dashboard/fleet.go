package dashboard

import (
	"cmp"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// fleetChecks are the fleet table's columns: the agent's six checks.
// Checks a guest invented share one "other" cell, so that a guest cannot
// widen everyone's table.
var fleetChecks = []string{"network", "processes", "firewall", "logs", "resources", "software"}

// cellHTML holds each status cell's complete markup. Cells are built from
// these constants only, never from guest text, which is why they may be
// template.HTML; it saves html/template escaping 60,000 cells on a 10,000
// VM page.
var cellHTML = map[string]template.HTML{}

func init() {
	for _, st := range []string{"ok", "warn", "crit", "unknown", ""} {
		label := st
		if st == "" {
			label = "–"
		}
		cellHTML[st] = template.HTML(`<td class="st ` + statusClass(st) + `">` + label + `</td>`)
	}
}

type fleetView struct {
	Loading     bool
	Hosts       []*hostView
	Firing      []alertRow
	FiringTotal int
	VMs, Shown  int
	Columns     []string
	Filter      fleetFilter
	HostNames   []string
}

type fleetFilter struct {
	Host     string
	Problems bool
}

type hostView struct {
	Name  string
	Href  string
	Count hostCount
	Rows  []vmRow
	// Table is all of Rows' HTML, joined once the rows are sorted.
	Table template.HTML
	rank  int
}

type hostCount struct {
	VMs, Crit, Warn, Unknown, OK, Down, Alerts int
}

// vmRow is one VM's row of the fleet table, rendered in Go: at 10,000 rows
// html/template's reflective escaping of a dozen fields per row costs more
// than the 200 ms the page may take. Every guest string in it goes through
// html.EscapeString (see row); the rest are constants and numbers.
type vmRow struct {
	HTML template.HTML
	rank [2]int
}

// alertAgg is what the fleet needs of one VM's firing alerts.
type alertAgg struct {
	n     int
	worst string
	text  string
}

func (s *server) fleet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := fleetFilter{Host: q.Get("host"), Problems: q.Get("problems") != ""}
	vms, ok := s.src.VMs()
	var firing []collector.Alert
	if ok {
		firing = s.src.Alerts(collector.AlertFilter{State: collector.AlertFiring})
	}
	v := buildFleet(vms, ok, firing, f, s.now())
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	s.render(w, r, code, "fleet", page{Title: "Fleet", Nav: "fleet", Live: ok, Host: f.Host, JSON: "/api/vms", Main: v})
}

// buildFleet turns the state into the fleet page's rows: hosts with a
// crit alert first, and within a host the VMs with the worst firing alert,
// then the worst check status, first. Everything the template prints is
// computed here, so the template does no more than copy strings.
func buildFleet(vms []collector.VM, loaded bool, firing []collector.Alert, f fleetFilter, now time.Time) *fleetView {
	v := &fleetView{Loading: !loaded, Columns: fleetChecks, Filter: f, FiringTotal: len(firing), VMs: len(vms)}
	if !loaded {
		return v
	}
	agg := make(map[[2]string]*alertAgg)
	for _, a := range firing {
		k := [2]string{a.Key.Host, a.Key.VM}
		g := agg[k]
		if g == nil {
			g = &alertAgg{worst: a.Severity, text: a.Summary}
			agg[k] = g
		}
		g.n++
		if statusRank(a.Severity) < statusRank(g.worst) {
			g.worst, g.text = a.Severity, a.Summary
		}
	}
	for i := range firing {
		if len(v.Firing) == 15 {
			break
		}
		if f.Host == "" || firing[i].Key.Host == f.Host {
			v.Firing = append(v.Firing, newAlertRow(&firing[i], now))
		}
	}
	var cur *hostView
	var cells strings.Builder
	for i := range vms {
		vm := &vms[i]
		if cur == nil || cur.Name != clean(vm.Host) {
			cur = &hostView{Name: clean(vm.Host), Href: "/?host=" + url.QueryEscape(vm.Host), rank: 4}
			v.Hosts = append(v.Hosts, cur)
			v.HostNames = append(v.HostNames, cur.Name)
		}
		if f.Host != "" && vm.Host != f.Host {
			continue
		}
		row := vmRow{rank: [2]int{4, 4}}
		chText, chClass := channelText(vm.Channel.State)
		agent := ""
		if vm.Hello != nil {
			agent = clip(vm.Hello.AgentVersion, 32)
		}
		cells.Reset()
		cells.WriteString(`<tr><td class="name"><a href="`)
		cells.WriteString(html.EscapeString(vmHref(vm.Host, vm.Name)))
		cells.WriteString(`">`)
		cells.WriteString(html.EscapeString(clean(vm.Name)))
		cells.WriteString(`</a></td><td class="ch `)
		cells.WriteString(chClass)
		cells.WriteString(`">`)
		cells.WriteString(html.EscapeString(chText))
		cells.WriteString(`</td><td>`)
		cells.WriteString(ago(now, vm.LastSeen))
		cells.WriteString(`</td><td>`)
		cells.WriteString(html.EscapeString(agent))
		cells.WriteString(`</td>`)
		worst := ""
		for _, name := range fleetChecks {
			st := ""
			if c := vm.Checks[name]; c != nil {
				st = knownStatus(string(c.Status))
			}
			worst = worse(worst, st)
			cells.WriteString(string(cellHTML[st]))
		}
		other, nOther := "", 0
		for name, c := range vm.Checks {
			if !slices.Contains(fleetChecks, name) {
				nOther++
				other = worse(other, knownStatus(string(c.Status)))
			}
		}
		worst = worse(worst, other)
		if nOther == 0 {
			cells.WriteString(string(cellHTML[""]))
		} else {
			cells.WriteString(`<td class="st ` + statusClass(other) + `">+` + strconv.Itoa(nOther) + `</td>`)
		}
		row.rank[1] = statusRank(worst)
		c := &cur.Count
		c.VMs++
		switch worst {
		case "crit":
			c.Crit++
		case "warn":
			c.Warn++
		case "unknown":
			c.Unknown++
		case "ok":
			c.OK++
		}
		if vm.Channel.State == "disconnected" {
			c.Down++
		}
		cells.WriteString(`<td class="al">`)
		alerts := 0
		if g := agg[[2]string{vm.Host, vm.Name}]; g != nil {
			alerts = g.n
			cells.WriteString(`<span class="badge ` + statusClass(g.worst) + `">` + strconv.Itoa(g.n) + `</span> `)
			cells.WriteString(html.EscapeString(clip(g.text, 120)))
			row.rank[0] = statusRank(g.worst)
			c.Alerts += g.n
			cur.rank = min(cur.rank, row.rank[0])
		}
		cells.WriteString("</td></tr>\n")
		row.HTML = template.HTML(cells.String())
		if f.Problems && alerts == 0 && (worst == "ok" || worst == "") && vm.Channel.State != "disconnected" {
			continue
		}
		cur.Rows = append(cur.Rows, row)
		v.Shown++
	}
	v.Hosts = slices.DeleteFunc(v.Hosts, func(h *hostView) bool { return f.Host != "" && h.Count.VMs == 0 })
	slices.SortStableFunc(v.Hosts, func(a, b *hostView) int { return cmp.Compare(a.rank, b.rank) })
	var table strings.Builder
	for _, h := range v.Hosts {
		slices.SortStableFunc(h.Rows, func(a, b vmRow) int {
			return cmp.Or(cmp.Compare(a.rank[0], b.rank[0]), cmp.Compare(a.rank[1], b.rank[1]))
		})
		table.Reset()
		n := 0
		for _, r := range h.Rows {
			n += len(r.HTML)
		}
		table.Grow(n)
		for _, r := range h.Rows {
			table.WriteString(string(r.HTML))
		}
		h.Table = template.HTML(table.String())
	}
	return v
}

func knownStatus(s string) string {
	switch s {
	case "ok", "warn", "crit", "unknown":
		return s
	}
	return "unknown"
}

// worse returns the worse of two statuses, "" meaning no data.
func worse(a, b string) string {
	if statusRank(b) < statusRank(a) {
		return b
	}
	return a
}

// channelText is the channel state as shown, and its CSS class.
func channelText(st protocol.ChannelState) (string, string) {
	switch st {
	case protocol.ChannelConnected:
		return "connected", "st-ok"
	case protocol.ChannelDisconnected:
		return "disconnected", "st-crit"
	case "":
		return "no channel event", "st-none"
	}
	return clip(string(st), 32), "st-unknown"
}
