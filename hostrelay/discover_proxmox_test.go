package hostrelay

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestDiscoverFindsProxmoxChannels(t *testing.T) {
	dir := socketDir(t)
	for _, f := range []string{"101.guestdiag", "102.guestdiag", "103.guestdiag", "101.qmp", "x1.guestdiag"} {
		touch(t, filepath.Join(dir, f))
	}
	cfg := testConfig(dir)
	cfg.Globs = []string{}
	cfg.ProxmoxGlob = filepath.Join(dir, "*.guestdiag")
	cfg.ProxmoxConfDir = filepath.Join("testdata", "pve")
	cfg = mustDefaults(t, cfg)
	log, _ := newTestLogger(t)
	start, _ := newChannelSet(cfg, log).update(discover(cfg))
	want := []Channel{
		{Name: "db büro.prod", Path: filepath.Join(dir, "101.guestdiag"), UUID: "7d3a1c2b-5e4f-4a60-9b7c-8d9e0f1a2b3c"},
		// No name in the config: the VM id is the name. No config: the same.
		{Name: "102", Path: filepath.Join(dir, "102.guestdiag")},
		{Name: "103", Path: filepath.Join(dir, "103.guestdiag")},
	}
	if !reflect.DeepEqual(start, want) {
		t.Errorf("started\n %v\nwant\n %v", start, want)
	}
}
