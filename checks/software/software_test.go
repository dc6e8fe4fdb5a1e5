package software

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/protocol"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func find(pkgs []pkg, name string) (pkg, bool) {
	i := slices.IndexFunc(pkgs, func(p pkg) bool { return p.Name == name })
	if i < 0 {
		return pkg{}, false
	}
	return pkgs[i], true
}

// The fixture is /var/lib/dpkg/status of a Debian 12.11 machine, where
// dpkg-query -W -f='${Status}\n' | grep -c 'install ok installed' printed
// 750 and dpkg-query -W printed the versions below.
func TestParseSoftwareDpkgStatusOfARealDebian(t *testing.T) {
	pkgs, err := parseDpkgStatus(fixture(t, "dpkg-status.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(pkgs), 750; got != want {
		t.Errorf("got %d installed packages, want %d", got, want)
	}
	for _, want := range []pkg{
		{"bash", "5.2.15-2+b8", "amd64"},
		{"coreutils", "9.1-1", "amd64"},
		{"libc6", "2.36-9+deb12u14", "amd64"},
		{"rpm", "4.18.0+dfsg-1+deb12u1", "amd64"},
	} {
		got, ok := find(pkgs, want.Name)
		if !ok {
			t.Errorf("%s not found", want.Name)
			continue
		}
		if got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	archs := map[string]int{}
	for _, p := range pkgs {
		archs[p.Arch]++
	}
	if archs["amd64"] != 601 || archs["all"] != 149 {
		t.Errorf("got architectures %v, want amd64 601 and all 149", archs)
	}
}

func TestParseSoftwareDpkgStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []pkg
		wantErr string
	}{
		{
			name: "installed, held, selected-for-removal and mid-transaction packages count, config-files and not-installed do not",
			in: "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n" +
				"Package: b\nStatus: hold ok installed\nVersion: 2\nArchitecture: all\n\n" +
				"Package: c\nStatus: deinstall ok installed\nVersion: 3\nArchitecture: amd64\n\n" +
				"Package: d\nStatus: deinstall ok config-files\nVersion: 4\nArchitecture: amd64\n\n" +
				"Package: e\nStatus: install reinstreq half-installed\nVersion: 5\nArchitecture: amd64\n\n" +
				"Package: f\nStatus: install ok triggers-pending\nVersion: 6\nArchitecture: amd64\n\n" +
				"Package: g\nStatus: install ok unpacked\nVersion: 7\nArchitecture: amd64\n\n" +
				"Package: h\nStatus: purge ok not-installed\nArchitecture: amd64\n",
			want: []pkg{{"a", "1", "amd64"}, {"b", "2", "all"}, {"c", "3", "amd64"},
				{"e", "5", "amd64"}, {"f", "6", "amd64"}, {"g", "7", "amd64"}},
		},
		{
			name: "continuation lines and several blank lines are skipped",
			in: "\n\nPackage: a\nStatus: install ok installed\nDescription: short\n long line: with a colon\n .\n more\n" +
				"Version: 1:2.0-1\nArchitecture: arm64\n\n\n\nPackage: b\nVersion: 2\nStatus: install ok installed\n",
			want: []pkg{{"a", "1:2.0-1", "arm64"}, {"b", "2", ""}},
		},
		{
			name: "one package in two architectures stays two packages",
			in: "Package: libz\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 1\n\n" +
				"Package: libz\nStatus: install ok installed\nArchitecture: i386\nMulti-Arch: same\nVersion: 1\n",
			want: []pkg{{"libz", "1", "amd64"}, {"libz", "1", "i386"}},
		},
		{
			name: "CRLF line endings are accepted",
			in:   "Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\n\r\n",
			want: []pkg{{"a", "1", ""}},
		},
		{
			name:    "a line that is not a field names its line",
			in:      "Package: a\nStatus: install ok installed\ngarbage\n",
			wantErr: "line 3:",
		},
		{
			name:    "a paragraph without Package names its first line",
			in:      "Package: a\n\nStatus: install ok installed\nVersion: 1\n",
			wantErr: "line 3: paragraph without a Package field",
		},
		{
			name: "an empty file has no packages",
			in:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDpkgStatus([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSoftwareAPKInstalled(t *testing.T) {
	got, err := parseAPKInstalled(fixture(t, "apk-installed"))
	if err != nil {
		t.Fatal(err)
	}
	want := []pkg{
		{"musl", "1.2.4_git20230717-r4", "x86_64"},
		{"busybox", "1.36.1-r15", "x86_64"},
		{"alpine-baselayout-data", "3.4.3-r2", "x86_64"},
		{"ca-certificates-bundle", "20230506-r0", "x86_64"},
		{"libcrypto3", "3.1.4-r1", "x86_64"},
		{"apk-tools", "2.14.0-r5", "x86_64"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	_, err = parseAPKInstalled([]byte("P:musl\nV:1\n\nP:x\nthis is not apk\n"))
	if err == nil || !strings.Contains(err.Error(), "line 5:") {
		t.Errorf("got error %v, want one naming line 5", err)
	}
	_, err = parseAPKInstalled([]byte("C:Q1abc=\nA:x86_64\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1: package without P: or V:") {
		t.Errorf("got error %v, want a package without P: or V: at line 1", err)
	}
}

func TestParseSoftwareRPMQuery(t *testing.T) {
	in := "bash\t5.1.8-6.el9_1\tx86_64\n" +
		"shadow-utils\t2:4.9-8.el9\tx86_64\n" +
		"gpg-pubkey\tfd431d51-4ae0493b\t(none)\n" +
		"glibc\t2.34-60.el9\ti686\n"
	got, err := parseRPMQuery([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []pkg{
		{"bash", "5.1.8-6.el9_1", "x86_64"},
		{"shadow-utils", "2:4.9-8.el9", "x86_64"},
		{"gpg-pubkey", "fd431d51-4ae0493b", ""},
		{"glibc", "2.34-60.el9", "i686"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseRPMQuery([]byte("bash\t5.1\tx86_64\nerror: rpmdb open failed\n")); err == nil || !strings.Contains(err.Error(), "line 2:") {
		t.Errorf("got error %v, want one naming line 2", err)
	}
}

func TestParseSoftwareRegExport(t *testing.T) {
	tests := []struct {
		file string
		want map[string][]pkg
	}{
		{"uninstall-x64.reg", map[string][]pkg{"x64": {
			{"7-Zip 23.01 (x64)", "23.01", "x64"},
			{"Git", "2.43.0", "x64"},
			{"PowerShell 7-x64", "7.4.1.0", "x64"},
		}}},
		{"uninstall-x86.reg", map[string][]pkg{"x86": {
			{"Google Chrome", "121.0.6167.140", "x86"},
			{"Microsoft Edge", "121.0.2277.98", "x86"},
			{"Microsoft Visual C++ 2015-2022 Redistributable (x86) - 14.38.33135", "14.38.33135.0", "x86"},
			{"Mozilla Maintenance Service", "122.0.1", "x86"},
		}}},
	}
	for _, tt := range tests {
		t.Run("the programs of "+tt.file+" leave out system components, updates and keys without a name", func(t *testing.T) {
			views, err := parseRegExport(fixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(views) != len(tt.want) {
				t.Fatalf("got views %v, want %v", views, tt.want)
			}
			for arch, want := range tt.want {
				if got := uninstallPackages(views[arch], arch); !slices.Equal(got, want) {
					t.Errorf("%s: got %+v\nwant %+v", arch, got, want)
				}
			}
		})
	}
}

func TestParseSoftwareRegExportJoinsContinuedHexValues(t *testing.T) {
	views, err := parseRegExport(fixture(t, "uninstall-x86.reg"))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(views["x86"], func(e regEntry) bool { return e.Key == "{3A4BE2E5-6E0F-4F5B-8D1A-0C66C5E36B2D}" })
	if i < 0 {
		t.Fatalf("key not found in %+v", views["x86"])
	}
	want := `"C:\ProgramData\Package Cache\{3A4BE2E5-6E0F-4F5B-8D1A-0C66C5E36B2D}\VC_redist.x86.exe"  /uninstall`
	if got := views["x86"][i].Values["uninstallstring"]; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := len(views["x86"]); got != 4 {
		t.Errorf("got %d subkeys, want 4", got)
	}
}

func TestParseSoftwareRegExportNamesTheBadLine(t *testing.T) {
	in := "Windows Registry Editor Version 5.00\r\n\r\n[HKEY_LOCAL_MACHINE\\" + uninstallKey + "\\X]\r\n\"DisplayName\"=\"X\"\r\n\"Bad\"=dword:\r\n"
	_, err := parseRegExport([]byte(in))
	if err == nil || !strings.Contains(err.Error(), "line 5:") {
		t.Errorf("got error %v, want one naming line 5", err)
	}
}

func TestSoftwareCompareVersions(t *testing.T) {
	tests := []struct {
		src, a, b string
		want      int
	}{
		{SourceDpkg, "2.36-9+deb12u13", "2.36-9+deb12u14", -1},
		{SourceDpkg, "1.0~rc1-1", "1.0-1", -1},
		{SourceDpkg, "1:0.9-1", "2.0-1", 1},
		{SourceDpkg, "1.0-1", "1.0-1.1", -1},
		{SourceDpkg, "1.0a", "1.0", 1},
		{SourceDpkg, "1.10", "1.9", 1},
		{SourceDpkg, "1.0+dfsg-1", "1.0-1", 1},
		{SourceDpkg, "007", "7", 0},
		{SourceRPM, "1.0~rc1-1", "1.0-1", -1},
		{SourceRPM, "1.0^git1-1", "1.0-1", 1},
		{SourceRPM, "2:1-1", "1:9-9", 1},
		{SourceRPM, "1.10-1", "1.9-1", 1},
		{SourceRPM, "1.0a-1", "1.0.1-1", -1},
		{SourceRPM, "5.14.0-362.8.1.el9_3", "5.14.0-362.13.1.el9_3", -1},
		{SourceRPM, "1.0-1.el9", "1.0-1.el9", 0},
		{SourceAPK, "1.36.1-r15", "1.36.1-r2", 1},
		{SourceWindows, "121.0.6167.140", "121.0.6167.85", 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s against %s", tt.src, tt.a, tt.b), func(t *testing.T) {
			if got := compareVersions(tt.src, tt.a, tt.b); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
			if got := compareVersions(tt.src, tt.b, tt.a); got != -tt.want {
				t.Errorf("reversed: got %d, want %d", got, -tt.want)
			}
		})
	}
}

// fakeGather serves programmable databases to a Software check.
type fakeGather struct {
	dbs []database
	err error
}

func (f *fakeGather) gather(context.Context) ([]database, error) { return f.dbs, f.err }

func newWithFake(t *testing.T, state *checks.State, f *fakeGather) *Software {
	t.Helper()
	s, err := New(Config{}, checks.Env{State: state})
	if err != nil {
		t.Fatal(err)
	}
	s.gather = f.gather
	return s
}

func codes(fs []protocol.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code+" "+f.Message)
	}
	return out
}

func TestSoftwareRunReportsChangesOnlyUntilCommitted(t *testing.T) {
	state := checks.NewState(t.TempDir(), Name)
	fake := &fakeGather{dbs: []database{{Source: SourceRPM, Path: "/var/lib/rpm", Packages: []pkg{
		{"bash", "5.1.8-6.el9", "x86_64"},
		{"kernel", "5.14.0-362.8.1.el9_3", "x86_64"},
		{"openssl", "1:3.0.7-24.el9", "x86_64"},
		{"zlib", "1.2.11-40.el9", "x86_64"},
	}}}}
	s := newWithFake(t, state, fake)
	res := s.Run(context.Background())
	data := res.Data.(Data)
	if res.Status != protocol.StatusOK || len(res.Findings) != 0 || !data.Baseline || data.Total != 4 {
		t.Fatalf("first run: got %s %q findings %v data %+v, want an ok baseline of 4", res.Status, res.Summary, res.Findings, data)
	}
	if res.Summary != "baseline recorded: 4 packages (rpm 4)" {
		t.Errorf("got summary %q", res.Summary)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}

	fake.dbs[0].Packages = []pkg{
		{"bash", "5.1.8-9.el9", "x86_64"},
		{"kernel", "5.14.0-362.8.1.el9_3", "x86_64"},
		{"kernel", "5.14.0-362.13.1.el9_3", "x86_64"},
		{"openssl", "1:3.0.7-20.el9", "x86_64"},
		{"vim-minimal", "2:8.2.2637-20.el9_1", "x86_64"},
	}
	want := []string{
		"sw.installed installed kernel (x86_64) 5.14.0-362.13.1.el9_3 [rpm]",
		"sw.installed installed vim-minimal (x86_64) 2:8.2.2637-20.el9_1 [rpm]",
		"sw.removed removed zlib (x86_64) 1.2.11-40.el9 [rpm]",
		"sw.upgraded upgraded bash (x86_64) from 5.1.8-6.el9 to 5.1.8-9.el9 [rpm]",
		"sw.upgraded downgraded openssl (x86_64) from 1:3.0.7-24.el9 to 1:3.0.7-20.el9 [rpm]",
	}
	for run := range 2 { // not committed: the second run reports the same
		res = s.Run(context.Background())
		if got := codes(res.Findings); !slices.Equal(got, want) {
			t.Fatalf("run %d: got findings\n%s\nwant\n%s", run, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, f := range res.Findings {
			if f.Severity != protocol.SeverityInfo {
				t.Errorf("%s: got severity %s, want info", f.Code, f.Severity)
			}
		}
	}
	data = res.Data.(Data)
	if res.Status != protocol.StatusOK || data.Installed != 2 || data.Removed != 1 || data.Upgraded != 2 || len(data.Changes) != 5 {
		t.Errorf("got status %s data %+v, want ok with 2 installed, 1 removed, 2 upgraded", res.Status, data)
	}
	if want := "5 package changes since the last snapshot: 2 installed, 1 removed, 2 upgraded; 5 packages (rpm 5)"; res.Summary != want {
		t.Errorf("got summary %q, want %q", res.Summary, want)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if res = s.Run(context.Background()); len(res.Findings) != 0 {
		t.Errorf("after commit: got findings %v, want none", codes(res.Findings))
	}

	restarted := newWithFake(t, state, fake)
	res = restarted.Run(context.Background())
	if data := res.Data.(Data); len(res.Findings) != 0 || data.Baseline {
		t.Errorf("after restart: got %q findings %v, want no changes and no new baseline", res.Summary, codes(res.Findings))
	}
}

func TestSoftwareRunAggregatesManyChanges(t *testing.T) {
	fake := &fakeGather{dbs: []database{{Source: SourceDpkg, Path: "/var/lib/dpkg/status"}}}
	s := newWithFake(t, nil, fake)
	s.cfg.MaxListed = 100
	s.Run(context.Background())
	s.Commit()
	for i := range 120 {
		fake.dbs[0].Packages = append(fake.dbs[0].Packages, pkg{fmt.Sprintf("pkg%03d", i), "1.0", "amd64"})
	}
	res := s.Run(context.Background())
	if got, want := len(res.Findings), findingsPerCode+1; got != want {
		t.Fatalf("got %d findings, want %d", got, want)
	}
	last := res.Findings[len(res.Findings)-1]
	if last.Count != 120-findingsPerCode || last.Message != "105 more packages installed (listed in the data)" {
		t.Errorf("got aggregate %+v", last)
	}
	data := res.Data.(Data)
	if len(data.Changes) != 100 || data.ChangesOmitted != 20 || data.Installed != 120 {
		t.Errorf("got %d changes, %d omitted, %d installed; want 100, 20, 120", len(data.Changes), data.ChangesOmitted, data.Installed)
	}
}

func TestSoftwareRunBaselinesANewSourceOnItsOwn(t *testing.T) {
	fake := &fakeGather{dbs: []database{{Source: SourceDpkg, Path: "/var/lib/dpkg/status", Packages: []pkg{{"a", "1", "all"}}}}}
	s := newWithFake(t, nil, fake)
	s.Run(context.Background())
	s.Commit()
	fake.dbs = []database{{Source: SourceRPM, Path: "/var/lib/rpm", Packages: []pkg{{"b", "1-1", "noarch"}}}}
	res := s.Run(context.Background())
	data := res.Data.(Data)
	if len(res.Findings) != 0 || !slices.Equal(data.NewSources, []string{"rpm"}) || !slices.Equal(data.GoneSources, []string{"dpkg"}) {
		t.Errorf("got %q findings %v data %+v, want rpm baselined and dpkg gone without findings", res.Summary, res.Findings, data)
	}
}

func TestSoftwareRunIsUnknownWhenItCannotGather(t *testing.T) {
	fake := &fakeGather{err: fmt.Errorf("%w (looked for /var/lib/dpkg/status)", errNoDatabase)}
	s := newWithFake(t, nil, fake)
	res := s.Run(context.Background())
	if res.Status != protocol.StatusUnknown || res.Summary != "no package database found (looked for /var/lib/dpkg/status)" {
		t.Errorf("got %s %q", res.Status, res.Summary)
	}
	if s.pending != nil {
		t.Error("an unknown run left a snapshot to commit")
	}
}

func TestSoftwareConfigRejectsABadRPMMode(t *testing.T) {
	if _, err := New(Config{RPM: "yes"}, checks.Env{}); err == nil {
		t.Error("got no error for rpm \"yes\"")
	}
}
