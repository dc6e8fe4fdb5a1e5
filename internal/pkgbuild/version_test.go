package pkgbuild

import "testing"

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name, describe string
		commits        int
		want, msi      string
	}{
		{"a release tag is its numbers", "v1.2.3", 0, "1.2.3", "1.2.3"},
		{"a tag without v is the same", "1.2.3", 0, "1.2.3", "1.2.3"},
		{"a pre-release sorts before its release", "v1.2.3-rc1", 0, "1.2.3~rc1", "1.2.3"},
		{"commits past a tag sort after it", "v1.2.3-5-gabc1234", 0, "1.2.3+git5.gabc1234", "1.2.3"},
		{"commits past a pre-release keep both", "v1.2.3-rc1-5-gabc1234", 0, "1.2.3~rc1+git5.gabc1234", "1.2.3"},
		{"a dirty tree says so", "v1.2.3-5-gabc1234-dirty", 0, "1.2.3+git5.gabc1234.dirty", "1.2.3"},
		{"a dirty tagged tree says so", "v1.2.3-dirty", 0, "1.2.3+dirty", "1.2.3"},
		{"no tag counts the history", "5518373", 412, "0.0.0+git412.g5518373", "0.0.412"},
		{"no tag and dirty", "5518373-dirty", 412, "0.0.0+git412.g5518373.dirty", "0.0.412"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Version(tc.describe, tc.commits)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Version(%q) = %q, want %q", tc.describe, got, tc.want)
			}
			msi, err := MSIVersion(got)
			if err != nil {
				t.Fatal(err)
			}
			if msi != tc.msi {
				t.Errorf("MSIVersion(%q) = %q, want %q", got, msi, tc.msi)
			}
		})
	}
}

func TestVersionRefusesWhatIsNoVersion(t *testing.T) {
	for _, d := range []string{"", "dev", "release-1", "v1.2.3 ; rm -rf /", "1.2.3-"} {
		t.Run(d, func(t *testing.T) {
			if got, err := Version(d, 1); err == nil {
				t.Errorf("Version(%q) = %q, want an error", d, got)
			}
		})
	}
}

func TestMSIVersionRefusesWhatDoesNotFit(t *testing.T) {
	if got, err := MSIVersion("256.0.0"); err == nil {
		t.Errorf("MSIVersion(256.0.0) = %q, want an error", got)
	}
}
