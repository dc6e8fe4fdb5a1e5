package hostrelay

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseChannel(t *testing.T) {
	tests := []struct {
		name, in string
		want     Channel
	}{
		{"name and path", "web01=/run/web01.sock", Channel{Name: "web01", Path: "/run/web01.sock"}},
		{"a uuid is kept in lower case", "web01=/run/web01.sock,uuid=6F1C2A3B-4D5E-4F60-8172-93A4B5C6D7E8",
			Channel{Name: "web01", Path: "/run/web01.sock", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"}},
		{"a path may hold commas and equal signs", "db=/run/a,b=c.sock", Channel{Name: "db", Path: "/run/a,b=c.sock"}},
		{"only the last ,uuid= starts the uuid", "db=/run/x,uuid=y,uuid=6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8",
			Channel{Name: "db", Path: "/run/x,uuid=y", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseChannel(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseChannel(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseChannelRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"web01",
		"web01=",
		"=/run/x.sock",
		"web01=,uuid=6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8",
		"web01=/run/x.sock,uuid=",
		"web01=/run/x.sock,uuid=1234",
	} {
		if ch, err := ParseChannel(in); err == nil {
			t.Errorf("ParseChannel(%q) = %+v, want an error", in, ch)
		}
	}
}

// parse runs args through a flag set with --glob and --channel, as the
// mains have them.
func parse(args ...string) (globs []string, static []Channel, err error) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(GlobsFlag(&globs), "glob", "")
	fs.Var(ChannelsFlag(&static), "channel", "")
	err = fs.Parse(args)
	return globs, static, err
}

func TestGlobsFlag(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unset leaves nil, which means the default", nil, nil},
		{"each use adds a pattern", []string{"--glob", "/a/*/s", "--glob", "/b/*/s"}, []string{"/a/*/s", "/b/*/s"}},
		{"an empty value alone turns globbing off", []string{"--glob="}, []string{}},
		{"an empty value adds nothing to the others", []string{"--glob=", "--glob", "/a/*/s"}, []string{"/a/*/s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := parse(tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("globs %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestGlobsFlagReplacesWhatWasThere(t *testing.T) {
	globs := []string{DefaultGlob}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.Var(GlobsFlag(&globs), "glob", "")
	if err := fs.Parse([]string{"--glob", "/a/*/s"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/a/*/s"}; !reflect.DeepEqual(globs, want) {
		t.Errorf("globs %q, want %q", globs, want)
	}
}

func TestGlobsFlagRejectsABadPattern(t *testing.T) {
	if _, _, err := parse("--glob", "/run/[/s"); err == nil || !strings.Contains(err.Error(), "syntax error in pattern") {
		t.Errorf("parse error %v, want a pattern syntax error", err)
	}
}

func TestChannelsFlag(t *testing.T) {
	_, got, err := parse("--channel", "web01=/run/w.sock,uuid=6F1C2A3B-4D5E-4F60-8172-93A4B5C6D7E8", "--channel", "db=/run/d.sock")
	if err != nil {
		t.Fatal(err)
	}
	want := []Channel{
		{Name: "web01", Path: "/run/w.sock", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
		{Name: "db", Path: "/run/d.sock"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("channels %+v, want %+v", got, want)
	}
}

func TestChannelsFlagRejectsTwoChannelsForOneVM(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"the same name twice", []string{"--channel", "web01=/run/a.sock", "--channel", "web01=/run/b.sock"}},
		{"the same path twice", []string{"--channel", "web01=/run/a.sock", "--channel", "web02=/run/a.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got, err := parse(tt.args...); err == nil || !strings.Contains(err.Error(), "given twice") {
				t.Errorf("parse(%q) = %+v, %v; want a \"given twice\" error", tt.args, got, err)
			}
		})
	}
}
