package hostrelay

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/guestdiag/guestdiag/protocol"
)

// VsockVM maps a guest's vsock context id to the VM's host-side identity.
type VsockVM struct {
	CID uint32
	Channel
}

// vsockListener is what the relay needs of a vsock listener: connections
// with the peer's context id, which the host assigned and the guest cannot
// choose, so that it names the VM as a channel path does.
type vsockListener interface {
	Accept() (net.Conn, uint32, error)
	Close() error
}

// ParseVsockVM reads NAME=CID[,uuid=UUID].
func ParseVsockVM(s string) (VsockVM, error) {
	name, rest, ok := strings.Cut(s, "=")
	cidText, uuid, _ := strings.Cut(rest, ",uuid=")
	cid, err := strconv.ParseUint(cidText, 10, 32)
	if !ok || name == "" || err != nil || cid < 3 {
		return VsockVM{}, fmt.Errorf("vsock VM %q: want NAME=CID[,uuid=UUID] with a CID of 3 or more", s)
	}
	if err := checkVMName(name); err != nil {
		return VsockVM{}, fmt.Errorf("vsock VM %q: %w", s, err)
	}
	v := VsockVM{CID: uint32(cid), Channel: Channel{Name: name, Path: "vsock:" + cidText}}
	if uuid != "" {
		u, ok := normalizeUUID(uuid)
		if !ok {
			return VsockVM{}, fmt.Errorf("vsock VM %q: %q is not a UUID", s, uuid)
		}
		v.UUID = u
	}
	return v, nil
}

// vsockDomain is what a libvirt domain definition says of its vsock device:
// <devices><vsock model='virtio'><cid auto='no' address='3'/></vsock>.
type vsockDomain struct {
	Name string `xml:"name"`
	UUID string `xml:"uuid"`
	CID  struct {
		Address string `xml:"address,attr"`
	} `xml:"devices>vsock>cid"`
}

// parseVsockDomain reads the name, UUID and vsock CID of a domain from
// `virsh dumpxml` output or a status file; ok is false without a vsock.
func parseVsockDomain(b []byte) (VsockVM, bool, error) {
	var doc struct {
		XMLName xml.Name
		vsockDomain
		Domain *vsockDomain `xml:"domain"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return VsockVM{}, false, fmt.Errorf("domain xml: %w", err)
	}
	d := doc.vsockDomain
	if doc.XMLName.Local == "domstatus" && doc.Domain != nil {
		d = *doc.Domain
	}
	if d.CID.Address == "" {
		return VsockVM{}, false, nil
	}
	cid, err := strconv.ParseUint(d.CID.Address, 10, 32)
	if err != nil || cid < 3 {
		return VsockVM{}, false, fmt.Errorf("domain %s: vsock cid %q is not a guest CID", d.Name, d.CID.Address)
	}
	v := VsockVM{CID: uint32(cid), Channel: Channel{Name: d.Name, Path: "vsock:" + d.CID.Address}}
	if u, ok := normalizeUUID(d.UUID); ok {
		v.UUID = u
	}
	return v, true, nil
}

// virshVsockVMs asks libvirt, through virsh, for the vsock CIDs of the
// running domains. It returns nothing when virsh is not installed.
func virshVsockVMs(ctx context.Context) ([]VsockVM, error) {
	virsh, err := exec.LookPath("virsh")
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	names, err := exec.CommandContext(ctx, virsh, "--readonly", "list", "--name").Output()
	if err != nil {
		return nil, fmt.Errorf("virsh list: %w", err)
	}
	var out []VsockVM
	for _, name := range strings.Fields(string(names)) {
		b, err := exec.CommandContext(ctx, virsh, "--readonly", "dumpxml", "--", name).Output()
		if err != nil {
			continue // the domain went meanwhile
		}
		if v, ok, err := parseVsockDomain(b); err == nil && ok {
			out = append(out, v)
		}
	}
	return out, nil
}

// virshUUID asks libvirt through `virsh domuuid` for a running domain's
// UUID; it fails at once when virsh is not installed.
func virshUUID(name string) (string, error) {
	virsh, err := exec.LookPath("virsh")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, virsh, "--readonly", "domuuid", "--", name).Output()
	if err != nil {
		return "", fmt.Errorf("virsh domuuid %q: %w", name, err)
	}
	u, ok := normalizeUUID(strings.TrimSpace(string(out)))
	if !ok {
		return "", fmt.Errorf("virsh domuuid %q: %w", name, errNotUUID)
	}
	return u, nil
}

// vsockTable is the CID → VM map, static entries first, then libvirt's.
// libvirt hands a freed CID (cid auto='yes') to the next VM that starts, so
// what it said is trusted for vsockLookupEvery only: a connection after
// that asks again, and a reused CID is not stamped with the old VM's name.
type vsockTable struct {
	mu     sync.Mutex
	static map[uint32]Channel
	found  map[uint32]Channel
	lookup func(context.Context) ([]VsockVM, error)
	// looked is when lookup last ran: a guest whose CID nobody mapped,
	// connecting again and again, must not run virsh each time.
	looked time.Time
}

// vsockLookupEvery bounds how often libvirt is asked, and how long its
// answer is trusted.
const vsockLookupEvery = 5 * time.Second

func newVsockTable(static []VsockVM, lookup func(context.Context) ([]VsockVM, error)) *vsockTable {
	t := &vsockTable{static: make(map[uint32]Channel, len(static)), lookup: lookup}
	for _, v := range static {
		t.static[v.CID] = v.Channel
	}
	return t
}

func (t *vsockTable) channel(ctx context.Context, cid uint32) (Channel, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch, ok := t.static[cid]; ok {
		return ch, true
	}
	if t.lookup == nil || time.Since(t.looked) < vsockLookupEvery {
		ch, ok := t.found[cid]
		return ch, ok
	}
	t.looked = time.Now()
	vms, err := t.lookup(ctx)
	if err != nil {
		return Channel{}, false
	}
	t.found = make(map[uint32]Channel, len(vms))
	for _, v := range vms {
		t.found[v.CID] = v.Channel
	}
	ch, ok := t.found[cid]
	return ch, ok
}

// Accepts per CID: a reconnecting agent needs one now and then; a guest
// connecting in a loop is cut to this, and so are the log lines it causes.
const (
	vsockAcceptRate  = rate.Limit(2)
	vsockAcceptBurst = 5
	// maxVsockLimiters bounds the per-CID table; CIDs are 32 bits.
	maxVsockLimiters = 4096
)

// serveVsock accepts vsock connections and serves each as the channel of
// the VM its CID names. A CID no one mapped is refused: without a host-side
// identity the messages could not be stamped.
func (r *Relay) serveVsock(ctx context.Context, ln vsockListener, table *vsockTable) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Books follow the VM, not the CID, which libvirt reuses; their number
	// is bounded by the VMs the host maps, which no guest can add to.
	books := make(map[string]*runBook)
	// A guest may connect in a loop: each CID gets a few connections a
	// second, and what it costs in logs is bounded the same way.
	limits := make(map[uint32]*rate.Limiter)
	for {
		conn, cid, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("vsock_accept_failed", "err", err)
			}
			return
		}
		lim, ok := limits[cid]
		if !ok {
			if len(limits) >= maxVsockLimiters {
				clear(limits)
			}
			lim = rate.NewLimiter(vsockAcceptRate, vsockAcceptBurst)
			limits[cid] = lim
		}
		if !lim.Allow() {
			conn.Close()
			continue
		}
		ch, ok := table.channel(ctx, cid)
		if !ok {
			r.log.Warn("vsock_unknown_cid", "cid", cid)
			conn.Close()
			continue
		}
		if !r.claim(ch) {
			r.log.Warn("channel_name_conflict", "vm", ch.Name, "channel", ch.Path)
			r.publishChannelEvent(ch, protocol.ChannelRefused, "VM name or UUID already watched")
			conn.Close()
			continue
		}
		key := msgKey(r.cfg.Host, ch)
		book, ok := books[key]
		if !ok {
			book = newRunBook(r.cfg.LegacyGapWait)
			books[key] = book
		}
		wg.Go(func() {
			defer r.forget(ch)
			r.serve(ctx, conn, ch, book)
		})
	}
}

// claim is adopt for a channel that discovery did not find: it refuses a
// VM whose name or UUID a watched channel already has.
func (r *Relay) claim(ch Channel) bool {
	r.mu.Lock()
	for name, v := range r.vms {
		if v.watchers > 0 && (name == ch.Name || ch.UUID != "" && v.ch.UUID == ch.UUID) {
			r.mu.Unlock()
			return false
		}
	}
	r.mu.Unlock()
	r.adopt(ch)
	return true
}
