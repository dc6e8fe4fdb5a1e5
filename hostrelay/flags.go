package hostrelay

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/guestdiag/guestdiag/internal/natsutil"
)

// The flags every main that runs a relay shares, so that --channel and
// --glob read the same everywhere.

// ParseChannel reads a static channel written as NAME=PATH[,uuid=UUID]. The
// path may hold commas; only a last ",uuid=" starts the UUID, which is
// returned in lower case.
func ParseChannel(s string) (Channel, error) {
	bad := func(why string) (Channel, error) {
		return Channel{}, fmt.Errorf("channel %q: %s; want NAME=PATH[,uuid=UUID]", s, why)
	}
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return bad("name and path are required")
	}
	ch := Channel{Name: name, Path: rest}
	if i := strings.LastIndex(rest, ",uuid="); i >= 0 {
		ch.Path = rest[:i]
		u, ok := normalizeUUID(rest[i+len(",uuid="):])
		if ch.Path == "" {
			return bad("path is required")
		}
		if !ok {
			return bad("not a UUID")
		}
		ch.UUID = u
	}
	return ch, nil
}

// ChannelsFlag returns a repeatable flag that appends each
// NAME=PATH[,uuid=UUID] to *p. A name or a path given twice is refused:
// two channels under one name would be merged into one VM.
func ChannelsFlag(p *[]Channel) flag.Value { return channelsFlag{p} }

type channelsFlag struct{ p *[]Channel }

func (f channelsFlag) Set(s string) error {
	ch, err := ParseChannel(s)
	if err != nil {
		return err
	}
	for _, c := range *f.p {
		if c.Name == ch.Name {
			return fmt.Errorf("channel %q: VM name %q given twice", s, ch.Name)
		}
		if c.Path == ch.Path {
			return fmt.Errorf("channel %q: path %q given twice", s, ch.Path)
		}
	}
	*f.p = append(*f.p, ch)
	return nil
}

func (f channelsFlag) String() string {
	if f.p == nil {
		return ""
	}
	out := make([]string, len(*f.p))
	for i, c := range *f.p {
		out[i] = c.Name + "=" + c.Path
		if c.UUID != "" {
			out[i] += ",uuid=" + c.UUID
		}
	}
	return strings.Join(out, " ")
}

// GlobsFlag returns a repeatable flag for Config.Globs. Left unset, *p keeps
// what it holds (nil means DefaultGlob); the first use replaces it. An
// empty value adds no pattern, so --glob= alone turns globbing off and
// leaves static channels. Patterns are checked as they are set.
func GlobsFlag(p *[]string) flag.Value { return &globsFlag{p: p} }

type globsFlag struct {
	p   *[]string
	set bool
}

func (f *globsFlag) Set(s string) error {
	if _, err := filepath.Match(s, ""); err != nil {
		return fmt.Errorf("glob %q: %w", s, err)
	}
	if !f.set {
		*f.p = []string{} // non-nil: the default is gone
		f.set = true
	}
	if s != "" {
		*f.p = append(*f.p, s)
	}
	return nil
}

func (f *globsFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	return strings.Join(*f.p, " ")
}

// NATSAuthFlags registers the flags of cfg.NATSAuth: TLS files and one of
// a creds file, an nkey seed file or a user and password file.
func NATSAuthFlags(fs *flag.FlagSet, cfg *Config) { natsutil.AuthFlags(fs, &cfg.NATSAuth) }
