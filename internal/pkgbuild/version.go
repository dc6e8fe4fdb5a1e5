package pkgbuild

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// describeRe matches git describe --tags --always --dirty output: a tag
	// (with an optional v and pre-release), the commits since it and the
	// hash, or the hash alone when there is no tag.
	describeRe = regexp.MustCompile(`^v?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z.]+))??(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)
	// A hash is seven or more hex digits, which no vX.Y.Z tag is.
	hashRe = regexp.MustCompile(`^([0-9a-f]{7,40})(-dirty)?$`)
)

// Version maps the output of `git describe --tags --always --dirty` to a
// version that dpkg and rpm both accept and order the way the history does:
// v1.2.3 is 1.2.3; v1.2.3-rc1 is 1.2.3~rc1 (before 1.2.3); five commits past
// v1.2.3 is 1.2.3+git5.gabc1234 (after it); a tree with no tag is
// 0.0.0+git<commits>.g<hash>, with commits the length of the history, so
// later builds sort later. A dirty tree adds ".dirty".
func Version(describe string, commits int) (string, error) {
	d := strings.TrimSpace(describe)
	if m := hashRe.FindStringSubmatch(d); m != nil {
		v := fmt.Sprintf("0.0.0+git%d.g%s", commits, m[1])
		if m[2] != "" {
			v += ".dirty"
		}
		return v, nil
	}
	m := describeRe.FindStringSubmatch(d)
	if m == nil {
		return "", fmt.Errorf("version %q: not a git describe of a vX.Y.Z tag or a hash", describe)
	}
	v := m[1]
	if m[2] != "" {
		v += "~" + m[2]
	}
	meta := ""
	if m[3] != "" {
		meta = "git" + m[3] + ".g" + m[4]
	}
	if m[5] != "" {
		meta = strings.TrimPrefix(meta+".dirty", ".")
	}
	if meta != "" {
		v += "+" + meta
	}
	return v, nil
}

// MSIVersion is the version an MSI's ProductVersion can hold: three
// numbers, the first two at most 255 and the third at most 65535. A tree
// with no tag (0.0.0+gitN...) becomes 0.0.N, so later builds still upgrade
// earlier ones; past a tag, the tag's numbers alone.
func MSIVersion(v string) (string, error) {
	base, meta, _ := strings.Cut(v, "+")
	base, _, _ = strings.Cut(base, "~")
	var n [3]int
	parts := strings.Split(base, ".")
	for i := 0; i < len(parts) && i < 3; i++ {
		if _, err := fmt.Sscanf(parts[i], "%d", &n[i]); err != nil {
			return "", fmt.Errorf("version %q: %w", v, err)
		}
	}
	if n == [3]int{} && strings.HasPrefix(meta, "git") {
		c, _, _ := strings.Cut(strings.TrimPrefix(meta, "git"), ".")
		if _, err := fmt.Sscanf(c, "%d", &n[2]); err != nil {
			return "", fmt.Errorf("version %q: %w", v, err)
		}
	}
	if n[0] > 255 || n[1] > 255 || n[2] > 65535 {
		return "", fmt.Errorf("version %q: an MSI version is at most 255.255.65535", v)
	}
	return fmt.Sprintf("%d.%d.%d", n[0], n[1], n[2]), nil
}
