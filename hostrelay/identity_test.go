package hostrelay

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/protocol"
)

func TestChannelSetRefusesNamesThatJSONWouldMerge(t *testing.T) {
	dir := socketDir(t)
	touch(t, filepath.Join(dir, "domain-1-bad\xffname", channelFile))
	touch(t, filepath.Join(dir, "domain-2-bad\xfename", channelFile))
	good := filepath.Join(dir, "domain-3-good", channelFile)
	touch(t, good)
	cfg := mustDefaults(t, testConfig(dir))
	log, logs := newTestLogger(t)
	cs := newChannelSet(cfg, log)
	var refused []Channel
	cs.onRefuse = func(ch Channel, reason string) { refused = append(refused, ch) }

	start, _ := cs.update(discover(cfg))
	if want := []Channel{{Name: "good", Path: good}}; !reflect.DeepEqual(start, want) {
		t.Errorf("started %v, want only %v", start, want)
	}
	if start, _ := cs.update(discover(cfg)); len(start) != 0 {
		t.Errorf("second scan started %v, want nothing", start)
	}
	got := logs.lines("channel_refused")
	if len(got) != 2 {
		t.Fatalf("refusals logged %d times, want once per channel: %q", len(got), got)
	}
	for i, token := range []string{"bad~FFname", "bad~FEname"} {
		if !strings.Contains(got[i], "level=WARN") || !strings.Contains(got[i], "vm_token="+token) || !strings.Contains(got[i], "not valid UTF-8") {
			t.Errorf("refusal %d logged as %q, want a warning naming %s and saying why", i, got[i], token)
		}
		if refused[i].Name != token {
			t.Errorf("refusal event %d names the VM %q, want its escaped token %q", i, refused[i].Name, token)
		}
	}
}

func TestStaticChannelNamesMustBeUTF8(t *testing.T) {
	if _, err := ParseChannel("bad\xffname=/run/a.sock"); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("ParseChannel: %v, want a refusal saying the name is not UTF-8", err)
	}
	_, err := Config{Host: "hv1", Globs: []string{}, Static: []Channel{{Name: "bad\xfename", Path: "/run/b.sock"}}}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("withDefaults: %v, want a refusal saying the name is not UTF-8", err)
	}
}

func TestChannelSetGivesEachUUIDOneChannel(t *testing.T) {
	t.Run("a globbed channel whose UUID a static channel has is skipped with a warning and an event", func(t *testing.T) {
		dir := socketDir(t)
		globbed := filepath.Join(dir, "domain-1-web01", channelFile)
		touch(t, globbed)
		cfg := testConfig(dir)
		cfg.LibvirtRunDir = filepath.Join("testdata", "libvirt-run")
		static := Channel{Name: "web01-copy", Path: filepath.Join(dir, "copy.sock"), UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"}
		cfg.Static = []Channel{static}
		cfg = mustDefaults(t, cfg)
		log, logs := newTestLogger(t)
		cs := newChannelSet(cfg, log)
		var reasons []string
		cs.onRefuse = func(ch Channel, reason string) { reasons = append(reasons, ch.Name+": "+reason) }
		start, _ := cs.update(discover(cfg))
		if want := []Channel{static}; !reflect.DeepEqual(start, want) {
			t.Errorf("started %v, want only %v", start, want)
		}
		if got := logs.lines("channel_uuid_conflict"); len(got) != 1 || !strings.Contains(got[0], "level=WARN") {
			t.Errorf("conflict logged as %q, want one warning", got)
		}
		if want := []string{"web01: VM UUID already watched on " + static.Path}; !reflect.DeepEqual(reasons, want) {
			t.Errorf("refusal events %q, want %q", reasons, want)
		}
	})
	t.Run("two static channels with one UUID are a config error", func(t *testing.T) {
		u := "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"
		_, err := Config{Host: "hv1", Globs: []string{}, Static: []Channel{{Name: "a", Path: "/a", UUID: u}, {Name: "b", Path: "/b", UUID: strings.ToUpper(u)}}}.withDefaults()
		if err == nil || !strings.Contains(err.Error(), "listed twice") {
			t.Errorf("withDefaults: %v, want the UUID refused as listed twice", err)
		}
	})
}

func TestChannelSetWarnsOfASocketPathTooLongToConnect(t *testing.T) {
	dir := socketDir(t)
	long := filepath.Join(dir, "domain-1-"+strings.Repeat("x", 120), channelFile)
	touch(t, long)
	cfg := mustDefaults(t, testConfig(dir))
	log, logs := newTestLogger(t)
	start, _ := newChannelSet(cfg, log).update(discover(cfg))
	if len(start) != 0 {
		t.Errorf("started %v, want nothing", start)
	}
	if got := logs.lines("channel_refused"); len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "over the 107") {
		t.Errorf("long path logged as %q, want one warning saying it is too long", got)
	}
}

func TestVMNamesStaySingleSubjectTokens(t *testing.T) {
	for _, name := range []string{
		"web 01", "datenbank-büro-äöü", "数据库", strings.Repeat("long-name.", 21), "a.b", "*", ">", "a.*.>", "~7E", "",
	} {
		t.Run("the name "+protocol.Clip(name, 24)+" is one token", func(t *testing.T) {
			for _, subj := range []string{protocol.ReportSubject("hv1", name, "disk"), protocol.HeartbeatSubject("hv1", name), protocol.ChannelSubject("hv1", name)} {
				tokens := strings.Split(subj, ".")
				vm := tokens[len(tokens)-1]
				if strings.HasPrefix(subj, "guestdiag.report.") {
					vm = tokens[len(tokens)-2]
				}
				if strings.ContainsAny(subj, " *>") {
					t.Errorf("subject %q holds a space or a wildcard", subj)
				}
				if got, err := protocol.UnescapeToken(vm); err != nil || got != name {
					t.Errorf("subject %q: VM token %q reads back as %q (%v), want %q", subj, vm, got, err, name)
				}
			}
		})
	}
}

func TestChannelSetAsksLibvirtForAUUIDWithoutAStatusFile(t *testing.T) {
	dir := socketDir(t)
	path := filepath.Join(dir, "domain-3-web09", channelFile)
	touch(t, path)
	cfg := mustDefaults(t, testConfig(dir)) // the run folder does not exist
	log, _ := newTestLogger(t)
	cs := newChannelSet(cfg, log)
	// A stand-in for `virsh domuuid`, which needs a libvirt daemon.
	cs.domainUUID = func(name string) (string, error) {
		if name != "web09" {
			t.Errorf("asked for the UUID of %q, want web09", name)
		}
		return "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8", nil
	}
	start, _ := cs.update(discover(cfg))
	if want := []Channel{{Name: "web09", Path: path, UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"}}; !reflect.DeepEqual(start, want) {
		t.Errorf("started %v, want %v", start, want)
	}
}
