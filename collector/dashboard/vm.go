package dashboard

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/protocol"
)

// Bounds of the VM page; the JSON API has everything.
const (
	maxTimeline = 200
	maxHistory  = 50
	// maxFindingKB bounds the entries shown under one finding.
	maxFindingKB = 2
)

type vmView struct {
	Name, Host, UUID string
	Channel          string
	ChannelClass     string
	ChannelSince     string
	ChannelReason    string
	LastSeen         string
	LastSeenAbs      string
	Hello            *helloView
	Uptime           string
	Spooled          string
	Dropped          string
	Checks           []checkView
	Firing           []alertView
	History          []alertRow
	Timeline         []timelineRow
	Network          *networkData
	Resources        *resourcesData
	Processes        *processesData
	Firewall         *firewallData
	FirewallChanges  []findingView
	Software         *softwareData
	SoftwareChanges  []findingView
	Logs             *logsData
}

type helloView struct {
	ClaimedHostname, OS, Platform, Kernel, Arch, Agent, Boot string
}

type checkView struct {
	Name, Status, Class string
	Summary             string
	Reported, Received  string
	Findings            []findingView
	FindingsTotal       int
	Data                string
}

type findingView struct {
	Severity, Class string
	Code, Source    string
	Unit, Provider  string
	EventID         string
	Message         string
	Count           string
	First, Last     string
	KB              []kbView
}

type timelineRow struct {
	TS, Ago, Kind, Check, From, To, Text string
	FromClass, ToClass                   string
}

func (s *server) vm(w http.ResponseWriter, r *http.Request) {
	host, name := r.PathValue("host"), r.PathValue("name")
	vms, ok := s.src.VMs()
	if !ok {
		s.errorPage(w, r, http.StatusServiceUnavailable, "The collector has not loaded its state yet; try again in a moment.")
		return
	}
	i := slices.IndexFunc(vms, func(v collector.VM) bool { return v.Host == host && v.Name == name })
	if i < 0 {
		s.errorPage(w, r, http.StatusNotFound, "No VM named "+strconv.Quote(clip(name, 256))+" on host "+strconv.Quote(clip(host, 256))+".")
		return
	}
	now := s.now()
	firing := s.src.Alerts(collector.AlertFilter{Host: host, VM: name, State: collector.AlertFiring})
	resolved := s.src.Alerts(collector.AlertFilter{Host: host, VM: name, State: collector.AlertResolved})
	v := s.buildVM(&vms[i], firing, resolved, s.src.Timeline(host, name), now)
	s.render(w, r, http.StatusOK, "vm", page{
		Title: v.Name + " on " + v.Host, Nav: "fleet", Live: true, Host: host, VM: name,
		JSON: vmJSON(host, name), Main: v,
	})
}

func (s *server) buildVM(vm *collector.VM, firing, resolved []collector.Alert, timeline []collector.TimelineEvent, now time.Time) *vmView {
	v := &vmView{
		Name: clean(vm.Name), Host: clean(vm.Host), UUID: clip(vm.UUID, 64),
		ChannelSince: stamp(vm.Channel.Since), ChannelReason: clip(vm.Channel.Reason, 512),
		LastSeen: ago(now, vm.LastSeen), LastSeenAbs: stamp(vm.LastSeen),
	}
	v.Channel, v.ChannelClass = channelText(vm.Channel.State)
	if h := vm.Hello; h != nil {
		v.Hello = &helloView{
			ClaimedHostname: clip(h.ClaimedHostname, 256), OS: clip(h.OS, 64), Platform: clip(h.Platform, 256),
			Kernel: clip(h.Kernel, 256), Arch: clip(h.Arch, 64), Agent: clip(h.AgentVersion, 64),
		}
		if h.BootTime > 0 {
			v.Hello.Boot = stamp(time.Unix(h.BootTime, 0))
		}
	}
	if hb := vm.Heartbeat; hb != nil {
		v.Uptime = (time.Duration(min(hb.UptimeSec, 1<<33)) * time.Second).String()
		v.Spooled, v.Dropped = strconv.FormatUint(hb.Spooled, 10), strconv.FormatUint(hb.Dropped, 10)
	}

	// A finding's KB resolutions are those of the firing alert raised for
	// it; findings without one (info, software changes) are matched by the
	// same matcher the alerts use.
	byKey := make(map[collector.AlertKey]*collector.Alert, len(firing))
	for i := range firing {
		a := &firing[i]
		byKey[a.Key] = a
		v.Firing = append(v.Firing, newAlertView(a, now))
	}
	for i := range resolved[:min(len(resolved), maxHistory)] {
		v.History = append(v.History, newAlertRow(&resolved[i], now))
	}

	names := make([]string, 0, len(vm.Checks))
	for n := range vm.Checks {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(statusRank(string(vm.Checks[a].Status)), statusRank(string(vm.Checks[b].Status))), cmp.Compare(a, b))
	})
	for _, n := range names {
		c := vm.Checks[n]
		cv := checkView{
			Name: clip(n, 64), Status: knownStatus(string(c.Status)), Summary: clip(c.Summary, 1024),
			Reported: stamp(c.TS), Received: ago(now, c.Received), FindingsTotal: c.FindingsTotal,
			Data: prettyJSON(c.Data),
		}
		cv.Class = statusClass(cv.Status)
		for _, f := range c.Findings {
			fv := newFinding(&f)
			if a := byKey[collector.FindingKey(vm, n, &f)]; a != nil {
				for _, m := range a.KB {
					fv.KB = append(fv.KB, kbFromMatch(m))
				}
			} else {
				entries := s.src.MatchKB(vm, &f)
				for _, e := range entries[:min(len(entries), maxFindingKB)] {
					fv.KB = append(fv.KB, kbFromEntry(e))
				}
			}
			cv.Findings = append(cv.Findings, fv)
			switch {
			case strings.HasPrefix(f.Code, "sw."):
				v.SoftwareChanges = append(v.SoftwareChanges, fv)
			case f.Code == "fw.changed":
				v.FirewallChanges = append(v.FirewallChanges, fv)
			}
		}
		v.Checks = append(v.Checks, cv)
	}
	decodeInto(vm, "network", &v.Network)
	decodeInto(vm, "resources", &v.Resources)
	decodeInto(vm, "processes", &v.Processes)
	decodeInto(vm, "firewall", &v.Firewall)
	decodeInto(vm, "software", &v.Software)
	decodeInto(vm, "logs", &v.Logs)

	for _, e := range timeline[:min(len(timeline), maxTimeline)] {
		v.Timeline = append(v.Timeline, timelineRow{
			TS: stamp(e.TS), Ago: ago(now, e.TS), Kind: clip(e.Kind, 32), Check: clip(e.Check, 64),
			From: clip(e.From, 64), To: clip(e.To, 64), Text: clip(e.Text, 1024),
			FromClass: statusClass(e.From), ToClass: statusClass(e.To),
		})
	}
	return v
}

// decodeInto sets *dst to the decoded data of the named check, leaving it
// nil when the check is absent or its data cannot be read.
func decodeInto[T any](vm *collector.VM, check string, dst **T) {
	c := vm.Checks[check]
	if c == nil {
		return
	}
	var v T
	if decodeData(c.Data, &v) {
		*dst = &v
	}
}

func newFinding(f *protocol.Finding) findingView {
	fv := findingView{
		Severity: clip(string(f.Severity), 16), Class: statusClass(string(f.Severity)),
		Code: clip(f.Code, 64), Source: clip(f.Source, 512), Unit: clip(f.Unit, 256),
		Provider: clip(f.Provider, 256), Message: clip(f.Message, 4096),
	}
	if f.EventID != 0 {
		fv.EventID = strconv.FormatUint(uint64(f.EventID), 10)
	}
	if f.Count > 1 {
		fv.Count = strconv.FormatUint(f.Count, 10)
	}
	if f.First != nil {
		fv.First = stamp(*f.First)
	}
	if f.Last != nil {
		fv.Last = stamp(*f.Last)
	}
	return fv
}
