package collector

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/guestdiag/guestdiag/kb"
)

// Handler returns the JSON API:
//
//	GET /api/vms               every VM, sorted by host then name
//	GET /api/vms/{name}?host=  one VM; host is needed only when the name
//	                           exists on several hosts (409 otherwise)
//	GET /api/vms/{name}/timeline?host=
//	                           the VM's timeline, newest first
//	GET /api/alerts?state=&severity=&host=&vm=&code=
//	                           alerts, firing first, then by severity and age
//	GET /api/alerts/{fingerprint}
//	                           one alert
//	GET /api/kb?q=&limit=      knowledge-base search (limit defaults to 20)
//	GET /api/placement         hosts, hints and plans; see placementRoutes
//	POST /api/hosts/{host}/drain, /undrain
//	GET /healthz               200 once the state is loaded, 503 before
//
// Errors are {"error":"..."}. Answers come from the collector's watched
// copies of the KV buckets. Config.Auth wraps /api/; Config.UI serves every
// other path.
func (c *Collector) Handler() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /api/vms", c.listVMs)
	api.HandleFunc("GET /api/vms/{name}", c.getVM)
	api.HandleFunc("GET /api/vms/{name}/timeline", c.getTimeline)
	api.HandleFunc("GET /api/alerts", c.listAlerts)
	api.HandleFunc("GET /api/alerts/{fingerprint}", c.getAlert)
	api.HandleFunc("GET /api/kb", c.searchKB)
	c.placementRoutes(api)
	var apiH http.Handler = api
	if c.cfg.Auth != nil {
		apiH = c.cfg.Auth(api)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", apiH)
	mux.HandleFunc("GET /healthz", c.healthz)
	if c.cfg.UI != nil {
		mux.Handle("/", c.cfg.UI(c))
	}
	return mux
}

// APIError is the body of every API error. Candidates lists the hosts that
// have a VM of the requested name when the name alone is ambiguous.
type APIError struct {
	Error      string   `json:"error"`
	Candidates []string `json:"candidates,omitempty"`
}

func (c *Collector) listVMs(w http.ResponseWriter, r *http.Request) {
	vms, ok := c.snapshot()
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: "state not loaded yet"})
		return
	}
	writeJSON(w, http.StatusOK, vms)
}

func (c *Collector) getVM(w http.ResponseWriter, r *http.Request) {
	if v, ok := c.findVM(w, r); ok {
		writeJSON(w, http.StatusOK, v)
	}
}

func (c *Collector) getTimeline(w http.ResponseWriter, r *http.Request) {
	if v, ok := c.findVM(w, r); ok {
		evs := c.Timeline(v.Host, v.Name)
		if evs == nil {
			evs = []TimelineEvent{}
		}
		writeJSON(w, http.StatusOK, evs)
	}
}

func (c *Collector) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := AlertFilter{State: AlertState(q.Get("state")), Severity: q.Get("severity"), Host: q.Get("host"), VM: q.Get("vm"), Code: q.Get("code")}
	if f.State != "" && f.State != AlertFiring && f.State != AlertResolved {
		writeJSON(w, http.StatusBadRequest, APIError{Error: fmt.Sprintf("state %q: want firing or resolved", f.State)})
		return
	}
	writeJSON(w, http.StatusOK, c.Alerts(f))
}

func (c *Collector) getAlert(w http.ResponseWriter, r *http.Request) {
	fp := r.PathValue("fingerprint")
	a, ok := c.alert(fp)
	if !ok {
		writeJSON(w, http.StatusNotFound, APIError{Error: fmt.Sprintf("no alert with fingerprint %q", fp)})
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (c *Collector) searchKB(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeJSON(w, http.StatusBadRequest, APIError{Error: fmt.Sprintf("limit %q: want a number from 1 to 1000", s)})
			return
		}
		limit = n
	}
	out := []kb.Entry{}
	if k := c.KB(); k != nil {
		for _, e := range k.Search(r.URL.Query().Get("q"), limit) {
			out = append(out, *e)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// findVM finds the VM a request names, or writes the error.
func (c *Collector) findVM(w http.ResponseWriter, r *http.Request) (VM, bool) {
	vms, ok := c.snapshot()
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: "state not loaded yet"})
		return VM{}, false
	}
	name, host := r.PathValue("name"), r.URL.Query().Get("host")
	var found []VM
	for _, v := range vms {
		if v.Name == name && (host == "" || v.Host == host) {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		msg := fmt.Sprintf("no vm named %q", name)
		if host != "" {
			msg += fmt.Sprintf(" on host %q", host)
		}
		writeJSON(w, http.StatusNotFound, APIError{Error: msg})
	case 1:
		return found[0], true
	default:
		hosts := make([]string, len(found))
		for i, v := range found {
			hosts[i] = v.Host
		}
		writeJSON(w, http.StatusConflict, APIError{
			Error:      fmt.Sprintf("vm name %q exists on %d hosts; add ?host=", name, len(found)),
			Candidates: hosts,
		})
	}
	return VM{}, false
}

func (c *Collector) healthz(w http.ResponseWriter, r *http.Request) {
	c.mu.RLock()
	n := 0
	c.mergedVMs(func(string, VM) { n++ })
	ready := c.ready && c.liveReady()
	c.mu.RUnlock()
	if !ready {
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: "state not loaded yet"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "vms": n})
}

// VMs returns every VM sorted by host then name, and whether the watchers
// have loaded the VM and liveness buckets yet.
func (c *Collector) VMs() ([]VM, bool) { return c.snapshot() }

func (c *Collector) snapshot() ([]VM, bool) {
	c.mu.RLock()
	vms := make([]VM, 0, len(c.vms))
	c.mergedVMs(func(_ string, v VM) { vms = append(vms, v) })
	ready := c.ready && c.liveReady()
	c.mu.RUnlock()
	slices.SortFunc(vms, func(a, b VM) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Name, b.Name))
	})
	return vms, ready
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
