package hostrelay

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
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
}

// discover returns the channels to watch now, by socket path: every glob
// match and every static entry. A static entry wins over a glob match of the
// same path because the operator named it on purpose.
func discover(cfg Config) map[string]target {
	found := make(map[string]target)
	for _, g := range cfg.Globs {
		paths, _ := filepath.Glob(g) // patterns were checked in withDefaults
		for _, p := range paths {
			name, id := vmNameFromDir(filepath.Base(filepath.Dir(p)))
			found[p] = target{Channel: Channel{Name: name, Path: p}, domID: id, globbed: true}
		}
	}
	for _, ch := range cfg.Static {
		found[ch.Path] = target{Channel: ch}
	}
	return found
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
	if !t.globbed || t.UUID != "" {
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
