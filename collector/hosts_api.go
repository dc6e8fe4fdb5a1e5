package collector

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/guestdiag/guestdiag/protocol"
)

// anonymous is who writes when Config.Admin is nil.
const anonymous = "anonymous"

// maxDrainBody bounds the body of a drain request.
const maxDrainBody = 64 << 10

// placementRoutes adds the placement API to mux:
//
//	GET  /api/placement              hosts, hints and plans (Placement)
//	POST /api/hosts/{host}/drain     {"reason":"..."}: mark for maintenance
//	POST /api/hosts/{host}/undrain   remove the mark
//
// The writes take Content-Type application/json, which a cross-site form
// cannot send, and need Config.Admin's consent.
func (c *Collector) placementRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/placement", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Placement())
	})
	mux.HandleFunc("POST /api/hosts/{host}/drain", func(w http.ResponseWriter, r *http.Request) { c.drainHandler(w, r, true) })
	mux.HandleFunc("POST /api/hosts/{host}/undrain", func(w http.ResponseWriter, r *http.Request) { c.drainHandler(w, r, false) })
}

// DrainRequest is the body of POST /api/hosts/{host}/drain.
type DrainRequest struct {
	Reason string `json:"reason"`
}

func (c *Collector) drainHandler(w http.ResponseWriter, r *http.Request, drain bool) {
	what := "undrain"
	if drain {
		what = "drain"
	}
	host := r.PathValue("host")
	if err := validHostName(host); err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{Error: fmt.Sprintf("%s: %v", what, err)})
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, APIError{Error: what + ": send Content-Type: application/json"})
		return
	}
	by := anonymous
	if c.cfg.Admin != nil {
		user, err := c.cfg.Admin(r)
		if err != nil {
			writeJSON(w, http.StatusForbidden, APIError{Error: fmt.Sprintf("%s of host %q needs an admin: %v", what, host, err)})
			return
		}
		if by, err = operator(user); err != nil {
			writeJSON(w, http.StatusForbidden, APIError{Error: fmt.Sprintf("%s of host %q: %v", what, host, err)})
			return
		}
	}
	var req DrainRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDrainBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, APIError{Error: fmt.Sprintf("%s: body: %v", what, err)})
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, APIError{Error: fmt.Sprintf("%s: body is not {\"reason\":\"...\"}: %v", what, err)})
			return
		}
	}
	if err := CheckOperatorText(req.Reason); err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{Error: fmt.Sprintf("%s: reason: %v", what, err)})
		return
	}
	if !drain && req.Reason != "" {
		writeJSON(w, http.StatusBadRequest, APIError{Error: "undrain takes no reason"})
		return
	}
	if drain {
		err = c.Drain(r.Context(), host, by, req.Reason)
	} else {
		err = c.Undrain(r.Context(), host, by)
	}
	switch {
	case errors.Is(err, ErrNotConnected):
		writeJSON(w, http.StatusServiceUnavailable, APIError{Error: fmt.Sprintf("%s: %v", what, err)})
		return
	case err != nil:
		c.log.Error("drain_failed", "host", host, "drain", drain, "err", err)
		writeJSON(w, http.StatusInternalServerError, APIError{Error: fmt.Sprintf("%s of host %q: %v", what, host, err)})
		return
	}
	c.log.Info("host_drain_changed", "host", host, "drain", drain, "by", by, "reason", req.Reason)
	writeJSON(w, http.StatusOK, c.hostPlacement(host))
}

// Placement returns the hosts sorted by name, each with its newest usage,
// drain mark, raised hints and the number of VM records on it, and the
// newest plans first. A host appears once a relay reported it, an
// operator drained it, or a VM record names it.
func (c *Collector) Placement() Placement {
	counts := make(map[string]int)
	c.mu.RLock()
	for _, v := range c.vms {
		counts[v.Host]++
	}
	c.mu.RUnlock()
	byHost := make(map[string]HostPlacement)
	c.hosts.mu.RLock()
	for _, e := range c.hosts.recs {
		byHost[e.rec.Host] = placementOf(e.rec)
	}
	c.hosts.mu.RUnlock()
	for host, n := range counts {
		hp, ok := byHost[host]
		if !ok {
			hp = HostPlacement{Host: host, Hints: []protocol.Hint{}}
		}
		hp.VMs = n
		byHost[host] = hp
	}
	p := Placement{Hosts: make([]HostPlacement, 0, len(byHost)), Plans: c.planRecords()}
	for _, hp := range byHost {
		p.Hosts = append(p.Hosts, hp)
	}
	slices.SortFunc(p.Hosts, func(a, b HostPlacement) int { return cmp.Compare(a.Host, b.Host) })
	return p
}

func (c *Collector) hostPlacement(host string) HostPlacement {
	for _, hp := range c.Placement().Hosts {
		if hp.Host == host {
			return hp
		}
	}
	return HostPlacement{Host: host, Hints: []protocol.Hint{}}
}

// placementOf is rec as the placement view shows it, hints sorted by kind
// and resource.
func placementOf(rec hostRecord) HostPlacement {
	hp := HostPlacement{Host: rec.Host, Usage: rec.Usage, Drain: rec.Drain, Hints: make([]protocol.Hint, 0, len(rec.Hints))}
	for _, h := range rec.Hints {
		hp.Hints = append(hp.Hints, h)
	}
	slices.SortFunc(hp.Hints, func(a, b protocol.Hint) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Resource, b.Resource))
	})
	return hp
}
