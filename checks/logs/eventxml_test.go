package logs

import (
	"encoding/xml"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseLogsEventXML(t *testing.T) {
	tests := []struct {
		file, provider, channel string
		id                      uint32
		pri                     int
		record                  uint64
		msg                     string
	}{
		{"win_scm_7000.xml", "Service Control Manager", "System", 7000, priErr, 48213, "param1=Print Spooler, param2=%%1053"},
		{"win_scm_7031.xml", "Service Control Manager", "System", 7031, priErr, 48290, "The Windows Update service terminated unexpectedly.  It has done this 1 time(s).  The following corrective action will be taken in 120000 milliseconds: Restart the service."},
		{"win_disk_7.xml", "disk", "System", 7, priErr, 48511, `The device, \Device\Harddisk1\DR1, has a bad block.`},
		{"win_kernel_power_41.xml", "Microsoft-Windows-Kernel-Power", "System", 41, priCrit, 48702, "BugcheckCode=0, BugcheckParameter1=0x0"},
		{"win_app_error_1000.xml", "Application Error", "Application", 1000, priErr, 9127, "AppName=w3wp.exe, AppVersion=10.0.20348.1"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			e, err := parseEventXML(b)
			if err != nil {
				t.Fatal(err)
			}
			if e.Provider != tt.provider || e.Source != tt.channel || e.EventID != tt.id || e.Priority != tt.pri || e.RecordID != tt.record {
				t.Errorf("got %q %q %d %d %d", e.Provider, e.Source, e.EventID, e.Priority, e.RecordID)
			}
			if !strings.HasPrefix(e.Message, tt.msg) {
				t.Errorf("message %q, want it to start with %q", e.Message, tt.msg)
			}
			if e.Time.IsZero() || e.Time.Location() != time.UTC {
				t.Errorf("time %v", e.Time)
			}
		})
	}
}

func TestLogsEventQuery(t *testing.T) {
	q := eventQuery([]string{"System", "Microsoft-Windows-Sysmon/Operational", "A&B"}, eventLevels(priErr), 5*time.Minute)
	var ql struct {
		Queries []struct {
			Path   string `xml:"Path,attr"`
			Select struct {
				Path  string `xml:"Path,attr"`
				XPath string `xml:",chardata"`
			} `xml:"Select"`
		} `xml:"Query"`
	}
	if err := xml.Unmarshal([]byte(q), &ql); err != nil {
		t.Fatalf("%v: %s", err, q)
	}
	if len(ql.Queries) != 3 || ql.Queries[2].Select.Path != "A&B" {
		t.Fatalf("queries %+v", ql.Queries)
	}
	if want := "*[System[(Level=1 or Level=2) and TimeCreated[timediff(@SystemTime) <= 300000]]]"; ql.Queries[0].Select.XPath != want {
		t.Errorf("xpath %q, want %q", ql.Queries[0].Select.XPath, want)
	}
}
