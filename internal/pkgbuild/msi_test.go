package pkgbuild

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// msiTable exports one table with msiinfo and returns its rows (after the
// three header lines: names, types, table name) as column name -> value.
func msiTable(t *testing.T, msi, table string) []map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(output(t, "msiinfo", "export", msi, table), "\r\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("msiinfo export %s: %q", table, lines)
	}
	cols := strings.Split(strings.TrimRight(lines[0], "\r"), "\t")
	var rows []map[string]string
	for _, l := range lines[3:] {
		vals := strings.Split(strings.TrimRight(l, "\r"), "\t")
		row := map[string]string{}
		for i, c := range cols {
			if i < len(vals) {
				row[c] = vals[i]
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func onlyRow(t *testing.T, rows []map[string]string, key, value string) map[string]string {
	t.Helper()
	var found []map[string]string
	for _, r := range rows {
		if r[key] == value {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d rows with %s=%s in %v, want 1", len(found), key, value, rows)
	}
	return found[0]
}

func TestMSIInstallsAndStartsTheService(t *testing.T) {
	requireTools(t, "wixl", "msibuild", "msiinfo")
	built := buildPackages(t, "v1.2.3-5-gabc1234", "-arch", "amd64", "-packages", "guestdiag-agent", "-formats", "deb")
	msi := pkgPath(t, built, "guestdiag-agent_1.2.3+git5.gabc1234_amd64.msi")

	svc := onlyRow(t, msiTable(t, msi, "ServiceInstall"), "Name", "guestdiag-agent")
	for col, want := range map[string]string{
		"DisplayName": "guestdiag agent",
		"ServiceType": "16", // SERVICE_WIN32_OWN_PROCESS
		"StartType":   "2",  // SERVICE_AUTO_START
		"StartName":   "LocalSystem",
		"Arguments":   "service run", // as `guestdiag-agent service install` records it
		"Component_":  "AgentExe",
	} {
		if svc[col] != want {
			t.Errorf("ServiceInstall %s = %q, want %q", col, svc[col], want)
		}
	}
	ctl := onlyRow(t, msiTable(t, msi, "ServiceControl"), "Name", "guestdiag-agent")
	// msidbServiceControlEvent: 1 start on install, 2 stop on install, 32
	// stop on uninstall, 128 delete on uninstall.
	if ctl["Event"] != "163" || ctl["Wait"] != "1" {
		t.Errorf("ServiceControl Event %s Wait %s, want 163 (start on install, stop on both, delete on uninstall) and 1", ctl["Event"], ctl["Wait"])
	}

	dirs := msiTable(t, msi, "Directory")
	if d := onlyRow(t, dirs, "Directory", "INSTALLDIR"); d["Directory_Parent"] != "ProgramFiles64Folder" {
		t.Errorf("the exe's folder is under %s, want ProgramFiles64Folder", d["Directory_Parent"])
	}
	if d := onlyRow(t, dirs, "Directory", "DATADIR"); d["Directory_Parent"] != "CommonAppDataFolder" {
		t.Errorf("the config's folder is under %s, want CommonAppDataFolder (ProgramData)", d["Directory_Parent"])
	}
	files := msiTable(t, msi, "File")
	if f := onlyRow(t, files, "Component_", "AgentExe"); !strings.HasSuffix(f["FileName"], "guestdiag-agent.exe") {
		t.Errorf("AgentExe installs %q, want guestdiag-agent.exe", f["FileName"])
	}
	exe, err := os.Stat(filepath.Join(builtBinaries(t), "windows_amd64", "guestdiag-agent.exe"))
	if err != nil {
		t.Fatal(err)
	}
	if f := onlyRow(t, files, "Component_", "AgentExe"); f["FileSize"] != itoa(exe.Size()) {
		t.Errorf("the MSI's exe is %s bytes, the built one %d", f["FileSize"], exe.Size())
	}
	if f := onlyRow(t, files, "Component_", "AgentConfig"); !strings.HasSuffix(f["FileName"], "agent.yaml") {
		t.Errorf("AgentConfig installs %q, want agent.yaml", f["FileName"])
	}
	// Win64 (256) + permanent (16) + never overwrite (128): the config
	// survives an upgrade and an uninstall, edited or not.
	if c := onlyRow(t, msiTable(t, msi, "Component"), "Component", "AgentConfig"); c["Attributes"] != "400" {
		t.Errorf("AgentConfig component attributes %s, want 400", c["Attributes"])
	}
	props := msiTable(t, msi, "Property")
	if p := onlyRow(t, props, "Property", "ProductVersion"); p["Value"] != "1.2.3" {
		t.Errorf("ProductVersion %s, want 1.2.3", p["Value"])
	}
	src := `SYSTEM\CurrentControlSet\Services\EventLog\Application\guestdiag-agent`
	regs := msiTable(t, msi, "Registry")
	got := map[string]string{}
	for _, r := range regs {
		if r["Root"] == "2" && r["Key"] == src {
			got[r["Name"]] = r["Value"]
		}
	}
	for name, want := range map[string]string{"EventMessageFile": `#%%SystemRoot%\System32\EventCreate.exe`, "TypesSupported": "#7", "CustomSource": "#1"} {
		if got[name] != want {
			t.Errorf("event log source %s = %q, want %q", name, got[name], want)
		}
	}
	// A major upgrade: a newer MSI replaces an older one.
	up := msiTable(t, msi, "Upgrade")
	if len(up) == 0 {
		t.Error("no Upgrade rows: a newer MSI would install beside an older one")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
