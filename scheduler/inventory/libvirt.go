package inventory

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
)

// Iface is one row of `virsh domiflist DOMAIN`.
type Iface struct {
	Name, Type, Source, Model, MAC string
}

// ParseDomIfList parses `virsh domiflist` output: a header, a rule of
// dashes, then one interface a line. A domain with no interfaces gives an
// empty list.
func ParseDomIfList(b []byte) ([]Iface, error) {
	var out []Iface
	sc := bufio.NewScanner(bytes.NewReader(b))
	line, body := 0, false
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		switch {
		case t == "":
			continue
		case !body && strings.HasPrefix(t, "---"):
			body = true
			continue
		case !body:
			if f := strings.Fields(t); len(f) < 3 || f[0] != "Interface" {
				return nil, fmt.Errorf("domiflist line %d: want the header \"Interface Type Source Model MAC\"", line)
			}
			continue
		}
		f := strings.Fields(t)
		if len(f) != 5 {
			return nil, fmt.Errorf("domiflist line %d: want 5 columns, got %d", line, len(f))
		}
		out = append(out, Iface{Name: f[0], Type: f[1], Source: f[2], Model: f[3], MAC: f[4]})
	}
	if !body {
		return nil, errors.New("domiflist: no header rule; not virsh domiflist output")
	}
	return out, sc.Err()
}

// Network is what chunking needs of `virsh net-dumpxml NETWORK`.
type Network struct {
	Name   string
	Bridge string
	// Isolated: the network has no <forward>, so its guests reach only
	// each other (and the host).
	Isolated bool
}

// ParseNetXML parses libvirt network XML.
func ParseNetXML(b []byte) (Network, error) {
	var x struct {
		XMLName xml.Name `xml:"network"`
		Name    string   `xml:"name"`
		Forward *struct {
			Mode string `xml:"mode,attr"`
		} `xml:"forward"`
		Bridge struct {
			Name string `xml:"name,attr"`
		} `xml:"bridge"`
	}
	if err := xml.Unmarshal(b, &x); err != nil {
		return Network{}, fmt.Errorf("network xml: %w", err)
	}
	if x.Name == "" {
		return Network{}, errors.New("network xml: no <name>")
	}
	return Network{Name: x.Name, Bridge: x.Bridge.Name, Isolated: x.Forward == nil}, nil
}

// HostNets is one host's domains' interfaces and the networks they use.
type HostNets struct {
	Host    string
	Domains map[string][]Iface
	Nets    map[string]Network
	// PrivateBridges are the host bridges with no uplink: only guests'
	// interfaces are attached to them.
	PrivateBridges map[string]bool
}

// Chunks names a chunk for every VM that shares an isolated network or a
// private bridge with another VM of the same host. Segments that a VM joins
// are one chunk (a VM on two private networks keeps both sets of peers); it
// is named after its first segment in sort order, "HOST/net/NAME" or
// "HOST/bridge/NAME". A VM alone on its segments is no chunk.
func Chunks(hosts []HostNets) map[string]string {
	out := map[string]string{}
	for _, h := range hosts {
		parent := map[string]string{}
		var find func(string) string
		find = func(k string) string {
			if p, ok := parent[k]; ok && p != k {
				r := find(p)
				parent[k] = r
				return r
			}
			parent[k] = k
			return k
		}
		union := func(a, b string) {
			ra, rb := find(a), find(b)
			if ra == rb {
				return
			}
			// A segment roots, the smaller name first, so the chunk's
			// name does not depend on map order.
			va, vb := strings.HasPrefix(ra, "\x00"), strings.HasPrefix(rb, "\x00")
			if va && !vb || va == vb && rb < ra {
				ra, rb = rb, ra
			}
			parent[rb] = ra
		}
		for dom, ifs := range h.Domains {
			for _, i := range ifs {
				var key string
				switch {
				case i.Type == "network" && h.Nets[i.Source].Isolated:
					key = h.Host + "/net/" + i.Source
				case i.Type == "bridge" && h.PrivateBridges[i.Source]:
					key = h.Host + "/bridge/" + i.Source
				default:
					continue
				}
				// A VM is a node of the graph too, under a prefix no
				// segment has.
				union(key, "\x00"+dom)
			}
		}
		size := map[string]int{}
		for k := range parent {
			if strings.HasPrefix(k, "\x00") {
				size[find(k)]++
			}
		}
		for k := range parent {
			if dom, ok := strings.CutPrefix(k, "\x00"); ok && size[find(k)] > 1 {
				out[dom] = find(k)
			}
		}
	}
	return out
}

// Runner runs virsh with args and returns its standard output.
type Runner func(ctx context.Context, args ...string) ([]byte, error)

// GatherNets asks one host's libvirt (through run, which carries its URI)
// for its running domains, their interfaces and the networks they use.
// privateBridges are the bridges the configuration says have no uplink:
// libvirt cannot tell that of a host bridge.
func GatherNets(ctx context.Context, host string, run Runner, privateBridges []string) (HostNets, error) {
	h := HostNets{Host: host, Domains: map[string][]Iface{}, Nets: map[string]Network{}, PrivateBridges: map[string]bool{}}
	for _, b := range privateBridges {
		h.PrivateBridges[b] = true
	}
	out, err := run(ctx, "list", "--name")
	if err != nil {
		return h, fmt.Errorf("virsh list on %s: %w", host, err)
	}
	for _, dom := range strings.Split(string(out), "\n") {
		if dom = strings.TrimSpace(dom); dom == "" {
			continue
		}
		b, err := run(ctx, "domiflist", dom)
		if err != nil {
			return h, fmt.Errorf("virsh domiflist %s on %s: %w", dom, host, err)
		}
		ifs, err := ParseDomIfList(b)
		if err != nil {
			return h, fmt.Errorf("%s on %s: %w", dom, host, err)
		}
		h.Domains[dom] = ifs
		for _, i := range ifs {
			if _, ok := h.Nets[i.Source]; i.Type != "network" || ok {
				continue
			}
			b, err := run(ctx, "net-dumpxml", i.Source)
			if err != nil {
				return h, fmt.Errorf("virsh net-dumpxml %s on %s: %w", i.Source, host, err)
			}
			n, err := ParseNetXML(b)
			if err != nil {
				return h, fmt.Errorf("%s on %s: %w", i.Source, host, err)
			}
			h.Nets[i.Source] = n
		}
	}
	return h, nil
}
