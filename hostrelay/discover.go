package hostrelay

import (
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/guestdiag/guestdiag/protocol"
)

// libvirtShortNameMax is how many characters of a domain name libvirt keeps
// in the domain-<id>-<name> folder (VIR_DOMAIN_SHORT_NAME_MAX).
const libvirtShortNameMax = 20

// maxDomainXML bounds how much of a status file is read.
const maxDomainXML = 8 << 20

// target is a channel to watch and how it was found.
type target struct {
	Channel
	// domID is libvirt's domain id from the folder name; "" for static
	// channels and folders not named by libvirt.
	domID   string
	globbed bool
	// settled: the source gave the whole identity; libvirt is not asked.
	settled bool
}

// discover returns the channels to watch now, by socket path: every glob
// match and every static entry. A static entry wins over a glob match of the
// same path because the operator named it on purpose.
func discover(cfg Config) map[string]target {
	found := make(map[string]target)
	for _, g := range cfg.Globs {
		paths, _ := globFiles(g) // patterns were checked in withDefaults
		for _, p := range paths {
			name, id := vmNameFromDir(filepath.Base(filepath.Dir(p)))
			found[p] = target{Channel: Channel{Name: name, Path: p}, domID: id, globbed: true}
		}
	}
	discoverProxmox(cfg, found)
	for _, ch := range cfg.Static {
		found[ch.Path] = target{Channel: ch}
	}
	return found
}

// identifyScans is how many scans a libvirt channel may wait for its
// domain's status file before it is watched without a UUID. libvirt writes
// the file shortly after QEMU has created the socket, and a channel's
// identity is settled once, when it is first watched: a VM whose message
// ids or name changed while it runs would be stored and shown twice.
const identifyScans = 3

// channelSet settles the identity of each channel found and decides which
// to watch. A VM name belongs to one channel at a time, because the name
// keys the VM's state, its message ids and its record in the collector.
type channelSet struct {
	cfg     Config
	log     *slog.Logger
	watched map[string]Channel // by path
	names   map[string]string  // VM name → path of its watched channel
	waiting map[string]int     // path → scans so far without a status file
	// skipped holds, by path, settled channels whose name or UUID another
	// channel already has; they are logged once and watched when it is free.
	skipped map[string]Channel
	uuids   map[string]string // VM UUID → path of its watched channel
	// refused holds the paths of channels that can never be watched as
	// found (a name that is not UTF-8, a path too long to connect to);
	// they are logged once, while they exist.
	refused map[string]bool
	// onRefuse, when set, is told each channel skipped or refused, once.
	onRefuse func(ch Channel, reason string)
	// domainUUID asks libvirt for a domain's UUID when its status file
	// cannot be read; virshUUID, or nil in tests.
	domainUUID func(name string) (string, error)
}

func newChannelSet(cfg Config, log *slog.Logger) *channelSet {
	return &channelSet{
		cfg:     cfg,
		log:     log,
		watched: make(map[string]Channel),
		names:   make(map[string]string),
		waiting: make(map[string]int),
		skipped: make(map[string]Channel),
		uuids:   make(map[string]string),
		refused: make(map[string]bool),
	}
}

// update takes what discover found now and returns the channels to start
// watching and the paths of those that vanished.
func (c *channelSet) update(found map[string]target) (start []Channel, gone []string) {
	for path, ch := range c.watched {
		if _, ok := found[path]; !ok {
			gone = append(gone, path)
			delete(c.watched, path)
			delete(c.names, ch.Name)
			if ch.UUID != "" {
				delete(c.uuids, ch.UUID)
			}
		}
	}
	for path := range c.refused {
		if _, ok := found[path]; !ok {
			delete(c.refused, path)
		}
	}
	slices.Sort(gone)
	for path := range c.waiting {
		if _, ok := found[path]; !ok {
			delete(c.waiting, path)
		}
	}
	for path := range c.skipped {
		if _, ok := found[path]; !ok {
			delete(c.skipped, path)
		}
	}

	var fresh []target
	for path, t := range found {
		if _, ok := c.watched[path]; !ok {
			fresh = append(fresh, t)
		}
	}
	// Static channels first, so that a globbed one never takes the name of
	// a static one; then by path, so that map order decides nothing.
	slices.SortFunc(fresh, func(a, b target) int {
		if a.globbed != b.globbed {
			if b.globbed {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Path, b.Path)
	})
	for _, t := range fresh {
		if c.refused[t.Path] {
			continue
		}
		ch, known := c.skipped[t.Path]
		if !known {
			var wait bool
			if ch, wait = c.settle(t); wait {
				continue
			}
			if err := cmp.Or(checkVMName(ch.Name), checkSocketPath(ch.Path)); err != nil {
				c.refused[ch.Path] = true
				c.log.Warn("channel_refused", "vm", ch.Name, "vm_token", protocol.EscapeToken(ch.Name), "channel", ch.Path, "err", err)
				c.refuse(ch, err.Error())
				continue
			}
		}
		if other, taken := c.names[ch.Name]; taken {
			if !known {
				c.log.Warn("channel_name_conflict", "vm", ch.Name, "channel", ch.Path, "watched", other)
				c.refuse(ch, "VM name already watched on "+other)
			}
			c.skipped[ch.Path] = ch
			continue
		}
		// The UUID keys the VM's message ids: two channels with one UUID
		// would de-duplicate each other's messages away.
		if other, taken := c.uuids[ch.UUID]; taken && ch.UUID != "" {
			if !known {
				c.log.Warn("channel_uuid_conflict", "vm", ch.Name, "uuid", ch.UUID, "channel", ch.Path, "watched", other)
				c.refuse(ch, "VM UUID already watched on "+other)
			}
			c.skipped[ch.Path] = ch
			continue
		}
		delete(c.skipped, ch.Path)
		c.watched[ch.Path] = ch
		c.names[ch.Name] = ch.Path
		if ch.UUID != "" {
			c.uuids[ch.UUID] = ch.Path
		}
		start = append(start, ch)
	}
	return start, gone
}

func (c *channelSet) refuse(ch Channel, reason string) {
	if c.onRefuse == nil {
		return
	}
	if !utf8.ValidString(ch.Name) {
		// The event is JSON too: it names the VM by its escaped token,
		// which keeps every byte.
		ch.Name = protocol.EscapeToken(ch.Name)
	}
	c.onRefuse(ch, reason)
}

// settle works out the identity a channel keeps while it exists, or says
// to wait for libvirt's status file.
func (c *channelSet) settle(t target) (ch Channel, wait bool) {
	got, err := identify(c.cfg.LibvirtRunDir, t)
	if err == nil {
		delete(c.waiting, t.Path)
		return got.Channel, false
	}
	libvirt := t.domID != "" && isDir(c.cfg.LibvirtRunDir)
	if libvirt && errors.Is(err, fs.ErrNotExist) && c.waiting[t.Path] < identifyScans-1 {
		c.waiting[t.Path]++
		return Channel{}, true
	}
	delete(c.waiting, t.Path)
	if t.domID != "" && c.domainUUID != nil {
		// The status file is root's alone on some hosts; libvirt's
		// read-only API still answers.
		if u, verr := c.domainUUID(t.Name); verr == nil {
			t.UUID = u
			return t.Channel, false
		}
	}
	level := slog.LevelDebug // not a libvirt host: names are all there is
	if libvirt {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "libvirt_identity_missing", "vm", t.Name, "channel", t.Path, "err", err)
	return t.Channel, false
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// vmNameFromDir takes the VM name from a socket's folder: libvirt's
// "domain-<id>-<name>" gives name and id, any other folder name is the VM
// name as it is.
func vmNameFromDir(dir string) (name, domID string) {
	rest, ok := strings.CutPrefix(dir, "domain-")
	if !ok {
		return dir, ""
	}
	id, name, ok := strings.Cut(rest, "-")
	if !ok || id == "" || name == "" || strings.Trim(id, "0123456789") != "" {
		return dir, ""
	}
	return name, id
}

// identify completes a globbed target from libvirt's status XML: the UUID,
// and the full name when the folder holds libvirt's truncated short name.
// A missing or unreadable file leaves the target as it is.
func identify(runDir string, t target) (target, error) {
	if !t.globbed || t.UUID != "" || t.settled {
		return t, nil
	}
	d, err := readDomainXML(filepath.Join(runDir, t.Name+".xml"))
	if errors.Is(err, os.ErrNotExist) && t.domID != "" && utf8.RuneCountInString(t.Name) == libvirtShortNameMax {
		d, err = findTruncated(runDir, t.Name, t.domID)
	}
	if err != nil {
		return t, err
	}
	u, ok := normalizeUUID(d.UUID)
	if !ok {
		return t, fmt.Errorf("domain %s: uuid %q: %w", d.Name, d.UUID, errNotUUID)
	}
	if d.Name != "" {
		t.Name = d.Name
	}
	t.UUID = u
	return t, nil
}

// findTruncated looks for the status file of the running domain whose name
// starts with short and whose id is domID.
func findTruncated(runDir, short, domID string) (libvirtDomain, error) {
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return libvirtDomain{}, err
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, short) || !strings.HasSuffix(n, ".xml") {
			continue
		}
		d, err := readDomainXML(filepath.Join(runDir, n))
		if err == nil && d.ID == domID && strings.HasPrefix(d.Name, short) {
			return d, nil
		}
	}
	return libvirtDomain{}, fmt.Errorf("no status file for domain %s (id %s): %w", short, domID, os.ErrNotExist)
}

// libvirtDomain is the part of a libvirt domain definition the relay reads.
type libvirtDomain struct {
	ID   string `xml:"id,attr"`
	Name string `xml:"name"`
	UUID string `xml:"uuid"`
}

// readDomainXML reads a libvirt status file (<domstatus><domain>…) or a plain
// domain definition (<domain>…).
func readDomainXML(path string) (libvirtDomain, error) {
	f, err := os.Open(path)
	if err != nil {
		return libvirtDomain{}, err
	}
	defer f.Close()
	var doc struct {
		XMLName xml.Name
		libvirtDomain
		Domain *libvirtDomain `xml:"domain"`
	}
	if err := xml.NewDecoder(io.LimitReader(f, maxDomainXML)).Decode(&doc); err != nil {
		return libvirtDomain{}, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case doc.XMLName.Local == "domstatus" && doc.Domain != nil:
		return *doc.Domain, nil
	case doc.XMLName.Local == "domain":
		return doc.libvirtDomain, nil
	}
	return libvirtDomain{}, fmt.Errorf("%s: no <domain> element", path)
}
