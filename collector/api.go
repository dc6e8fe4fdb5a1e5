package collector

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

// Handler returns the JSON API:
//
//	GET /api/vms               every VM, sorted by host then name
//	GET /api/vms/{name}?host=  one VM; host is needed only when the name
//	                           exists on several hosts (409 otherwise)
//	GET /healthz               200 once the state is loaded, 503 before
//
// Errors are {"error":"..."}. Answers come from the collector's watched copy
// of the KV bucket.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/vms", c.listVMs)
	mux.HandleFunc("GET /api/vms/{name}", c.getVM)
	mux.HandleFunc("GET /healthz", c.healthz)
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
	vms, ok := c.snapshot()
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: "state not loaded yet"})
		return
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
		writeJSON(w, http.StatusOK, found[0])
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
}

func (c *Collector) healthz(w http.ResponseWriter, r *http.Request) {
	c.mu.RLock()
	ready, n := c.ready, len(c.vms)
	c.mu.RUnlock()
	if !ready {
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: "state not loaded yet"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "vms": n})
}

// snapshot returns every VM sorted by host then name, and whether the
// watcher has loaded the bucket yet.
func (c *Collector) snapshot() ([]VM, bool) {
	c.mu.RLock()
	vms := make([]VM, 0, len(c.vms))
	for _, v := range c.vms {
		vms = append(vms, v)
	}
	ready := c.ready
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
