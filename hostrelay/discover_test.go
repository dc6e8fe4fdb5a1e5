package hostrelay

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestVMNameFromDir(t *testing.T) {
	tests := []struct {
		name, dir, wantName, wantID string
	}{
		{"libvirt folder gives name and id", "domain-1-web01", "web01", "1"},
		{"name may hold dashes, dots and spaces", "domain-12-db-1.prod eu", "db-1.prod eu", "12"},
		{"any other folder is the name", "web02", "web02", ""},
		{"non-numeric id is not libvirt's", "domain-x-web03", "domain-x-web03", ""},
		{"empty name is not libvirt's", "domain-4-", "domain-4-", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotName, gotID := vmNameFromDir(tt.dir)
			if gotName != tt.wantName || gotID != tt.wantID {
				t.Errorf("vmNameFromDir(%q) = %q, %q; want %q, %q", tt.dir, gotName, gotID, tt.wantName, tt.wantID)
			}
		})
	}
}

func TestDiscoverFindsLibvirtAndStaticChannels(t *testing.T) {
	dir := socketDir(t)
	for _, p := range []string{
		"domain-1-web01/" + channelFile,
		"domain-12-db.prod eu/" + channelFile,
		"domain-5-accounting-postgres-/" + channelFile,
		"domain-9-broken/" + channelFile,
		"domain-3-web02/other.sock", // not the guestdiag channel
		"notes/readme",
	} {
		touch(t, filepath.Join(dir, "target", p))
	}
	static := filepath.Join(dir, "static.sock")
	cfg, err := Config{
		Host:          "hv1",
		Globs:         []string{filepath.Join(dir, "target", "domain-*", channelFile)},
		LibvirtRunDir: filepath.Join("testdata", "libvirt-run"),
		Static:        []Channel{{Name: "appliance", Path: static, UUID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"}},
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}

	got := make(map[string]Channel)
	for path, tgt := range discover(cfg) {
		tgt, _ = identify(cfg.LibvirtRunDir, tgt)
		got[path] = tgt.Channel
	}

	ch := func(folder, name, uuid string) (string, Channel) {
		p := filepath.Join(dir, "target", folder, channelFile)
		return p, Channel{Name: name, Path: p, UUID: uuid}
	}
	want := make(map[string]Channel)
	for _, c := range []struct{ folder, name, uuid string }{
		{"domain-1-web01", "web01", "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
		{"domain-12-db.prod eu", "db.prod eu", ""},
		{"domain-5-accounting-postgres-", "accounting-postgres-primary", "0b9e4c1a-2f3d-4e5f-8a6b-7c8d9e0f1a2b"},
		{"domain-9-broken", "broken", ""},
	} {
		p, c := ch(c.folder, c.name, c.uuid)
		want[p] = c
	}
	want[static] = Channel{Name: "appliance", Path: static, UUID: "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"}

	if !reflect.DeepEqual(got, want) {
		t.Errorf("discovered channels:\n got %v\nwant %v", got, want)
	}
}

func TestIdentify(t *testing.T) {
	run := filepath.Join("testdata", "libvirt-run")
	tests := []struct {
		name     string
		in       target
		want     Channel
		wantErr  error
		wantFail bool
	}{
		{
			name: "uuid comes from the domain element of the status file, not from metadata or sysinfo",
			in:   target{Channel: Channel{Name: "web01", Path: "p"}, domID: "1", globbed: true},
			want: Channel{Name: "web01", Path: "p", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"},
		},
		{
			name: "a truncated libvirt short name is completed from the status file with the same domain id",
			in:   target{Channel: Channel{Name: "accounting-postgres-", Path: "p"}, domID: "6", globbed: true},
			want: Channel{Name: "accounting-postgres-replica", Path: "p", UUID: "1c0f5d2b-3a4e-4f60-9b7c-8d9e0f1a2b3c"},
		},
		{
			name:    "no status file leaves the VM without uuid",
			in:      target{Channel: Channel{Name: "gone", Path: "p"}, domID: "2", globbed: true},
			want:    Channel{Name: "gone", Path: "p"},
			wantErr: os.ErrNotExist,
		},
		{
			name:    "a status file with a bad uuid leaves the VM without uuid",
			in:      target{Channel: Channel{Name: "broken", Path: "p"}, domID: "9", globbed: true},
			want:    Channel{Name: "broken", Path: "p"},
			wantErr: errNotUUID,
		},
		{
			name: "static channels are not looked up",
			in:   target{Channel: Channel{Name: "web01", Path: "p"}},
			want: Channel{Name: "web01", Path: "p"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identify(run, tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("identify error = %v, want %v", err, tt.wantErr)
			}
			if got.Channel != tt.want {
				t.Errorf("identify = %+v, want %+v", got.Channel, tt.want)
			}
		})
	}
}

func TestConfigRejectsBadStaticChannels(t *testing.T) {
	tests := []struct {
		name   string
		static []Channel
	}{
		{"missing path", []Channel{{Name: "a"}}},
		{"missing name", []Channel{{Path: "/x"}}},
		{"same path twice", []Channel{{Name: "a", Path: "/x"}, {Name: "b", Path: "/x"}}},
		{"same name twice", []Channel{{Name: "a", Path: "/x"}, {Name: "a", Path: "/y"}}},
		{"uuid that is not one", []Channel{{Name: "a", Path: "/x", UUID: "1234"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := (Config{Host: "h", Static: tt.static}).withDefaults(); err == nil {
				t.Errorf("withDefaults accepted %+v", tt.static)
			}
		})
	}
}

func touch(tb testing.TB, path string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func TestChannelSetSettlesIdentityOnce(t *testing.T) {
	const uuid = "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"
	fixture := filepath.Join("testdata", "libvirt-run", "web01.xml")
	setup := func(t *testing.T) (Config, *channelSet, string) {
		dir := socketDir(t)
		path := filepath.Join(dir, "domain-1-web01", channelFile)
		touch(t, path)
		if err := os.Mkdir(filepath.Join(dir, "run"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := mustDefaults(t, testConfig(dir))
		log, _ := newTestLogger(t)
		return cfg, newChannelSet(cfg, log), path
	}
	// waitScans runs the scans on which a channel without a status file is
	// not watched yet.
	waitScans := func(t *testing.T, cfg Config, cs *channelSet) {
		t.Helper()
		for i := 1; i < identifyScans; i++ {
			if start, _ := cs.update(discover(cfg)); len(start) != 0 {
				t.Fatalf("scan %d started %v, want to wait for libvirt's status file", i, start)
			}
		}
	}

	t.Run("a status file written after the channel is watched changes nothing", func(t *testing.T) {
		cfg, cs, path := setup(t)
		waitScans(t, cfg, cs)
		start, _ := cs.update(discover(cfg))
		want := Channel{Name: "web01", Path: path}
		if !reflect.DeepEqual(start, []Channel{want}) {
			t.Fatalf("started %v, want %v", start, []Channel{want})
		}
		copyFile(t, fixture, filepath.Join(cfg.LibvirtRunDir, "web01.xml"))
		for range 2 {
			start, gone := cs.update(discover(cfg))
			if len(start) != 0 || len(gone) != 0 {
				t.Errorf("after the status file appeared: started %v, stopped %v; want neither", start, gone)
			}
		}
		if got := cs.watched[path]; got != want {
			t.Errorf("watched as %+v, want %+v", got, want)
		}
	})
	t.Run("a status file written while the channel waits gives its UUID", func(t *testing.T) {
		cfg, cs, path := setup(t)
		if start, _ := cs.update(discover(cfg)); len(start) != 0 {
			t.Fatalf("first scan started %v, want to wait", start)
		}
		copyFile(t, fixture, filepath.Join(cfg.LibvirtRunDir, "web01.xml"))
		start, _ := cs.update(discover(cfg))
		want := []Channel{{Name: "web01", Path: path, UUID: uuid}}
		if !reflect.DeepEqual(start, want) {
			t.Errorf("started %v, want %v", start, want)
		}
	})
	t.Run("a truncated name is completed before the channel is watched", func(t *testing.T) {
		dir := socketDir(t)
		path := filepath.Join(dir, "domain-6-accounting-postgres-", channelFile)
		touch(t, path)
		cfg := testConfig(dir)
		cfg.LibvirtRunDir = filepath.Join("testdata", "libvirt-run")
		cfg = mustDefaults(t, cfg)
		log, _ := newTestLogger(t)
		start, _ := newChannelSet(cfg, log).update(discover(cfg))
		want := []Channel{{Name: "accounting-postgres-replica", Path: path, UUID: "1c0f5d2b-3a4e-4f60-9b7c-8d9e0f1a2b3c"}}
		if !reflect.DeepEqual(start, want) {
			t.Errorf("started %v, want %v", start, want)
		}
	})
	t.Run("without libvirt's run folder a channel is watched at once", func(t *testing.T) {
		cfg, cs, path := setup(t)
		cfg.LibvirtRunDir = filepath.Join(cfg.LibvirtRunDir, "missing")
		cs.cfg = cfg
		start, _ := cs.update(discover(cfg))
		if want := []Channel{{Name: "web01", Path: path}}; !reflect.DeepEqual(start, want) {
			t.Errorf("started %v, want %v", start, want)
		}
	})
}

func TestChannelSetGivesEachNameOneChannel(t *testing.T) {
	t.Run("a globbed channel with a static channel's name is skipped and logged once", func(t *testing.T) {
		dir := socketDir(t)
		touch(t, filepath.Join(dir, "domain-1-web01", channelFile))
		cfg := testConfig(dir)
		cfg.LibvirtRunDir = filepath.Join("testdata", "libvirt-run")
		static := Channel{Name: "web01", Path: filepath.Join(dir, "web01.sock")}
		cfg.Static = []Channel{static}
		cfg = mustDefaults(t, cfg)
		log, logs := newTestLogger(t)
		cs := newChannelSet(cfg, log)
		start, _ := cs.update(discover(cfg))
		if want := []Channel{static}; !reflect.DeepEqual(start, want) {
			t.Errorf("first scan started %v, want only %v", start, want)
		}
		if start, gone := cs.update(discover(cfg)); len(start) != 0 || len(gone) != 0 {
			t.Errorf("second scan started %v, stopped %v; want neither", start, gone)
		}
		if got := logs.lines("channel_name_conflict"); len(got) != 1 || !strings.Contains(got[0], "level=WARN") {
			t.Errorf("conflict logged as %q, want one warning", got)
		}
	})
	t.Run("of two globbed channels with one name the first by path is watched, the other once it is gone", func(t *testing.T) {
		dir := socketDir(t)
		first := filepath.Join(dir, "domain-1-web01", channelFile)
		second := filepath.Join(dir, "domain-2-web01", channelFile)
		touch(t, first)
		touch(t, second)
		cfg := mustDefaults(t, testConfig(dir)) // no run folder: nothing waits
		log, logs := newTestLogger(t)
		cs := newChannelSet(cfg, log)
		start, _ := cs.update(discover(cfg))
		if want := []Channel{{Name: "web01", Path: first}}; !reflect.DeepEqual(start, want) {
			t.Errorf("first scan started %v, want %v", start, want)
		}
		if err := os.RemoveAll(filepath.Dir(first)); err != nil {
			t.Fatal(err)
		}
		start, gone := cs.update(discover(cfg))
		if want := []Channel{{Name: "web01", Path: second}}; !reflect.DeepEqual(start, want) || !reflect.DeepEqual(gone, []string{first}) {
			t.Errorf("after the first went: started %v, stopped %q; want %v and %q", start, gone, want, first)
		}
		if got := logs.lines("channel_name_conflict"); len(got) != 1 {
			t.Errorf("conflict logged %d times, want once: %q", len(got), got)
		}
	})
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}
