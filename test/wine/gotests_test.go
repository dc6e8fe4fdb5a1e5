package wine

import (
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/winetest"
)

// The logs check's package and its Windows event parser tests.
const (
	logsPackage     = "github.com/guestdiag/guestdiag/checks/logs"
	logsParserTests = "^(TestParseLogsEventXML|TestLogsEventQuery)$"
)

// TestIntegrationWineGoTests runs Go tests built for windows/amd64 under
// Wine, in one prefix: guestagent's Windows port tests (port_windows_test.go)
// on named pipes standing in for the device — overlapped reads and writes,
// Close cancelling a pending read with CancelIoEx, the write deadline, EOF
// when the host side leaves, retries until the port appears — and the logs
// check's Windows event parsers on their fixtures, since the live event log
// path cannot run under Wine (TestIntegrationWineChecks).
func TestIntegrationWineGoTests(t *testing.T) {
	portExe, portDir := winetest.BuildTest(t, "github.com/guestdiag/guestdiag/guestagent")
	logsExe, logsDir := winetest.BuildTest(t, logsPackage)
	p := winetest.NewPrefix(t)

	t.Run("guestagent's Windows port tests pass", func(t *testing.T) {
		r := p.RunIn(portDir, 3*time.Minute, portExe, "-test.run", "^TestWinPort", "-test.v", "-test.count", "1")
		if r.Exit != 0 {
			t.Fatalf("guestagent's port tests under Wine: %v", r)
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.Contains(l, "answers IOCTL_GET_INFORMATION") {
				t.Log(strings.TrimSpace(l))
			}
		}
		for _, name := range []string{
			"TestWinPortCarriesBytesBothWays", "TestWinPortReadsEOFWhenTheHostLeaves",
			"TestWinPortCloseEndsAPendingRead", "TestWinPortWriteDeadlineEndsAWriteNobodyReads",
			"TestWinPortConnectRetriesUntilThePortAppears", "TestWinPortConnectEndsWithItsContext",
			"TestWinPortDefaultPathIsTheGlobalPortName", "TestWinPortTakesAHandleWithoutPortInformationAsConnected",
		} {
			if !strings.Contains(r.Stdout, "--- PASS: "+name+" ") {
				t.Errorf("%s did not pass under Wine:\n%s", name, r.Stdout)
			}
		}
	})

	t.Run("the logs check's event parsers pass on their fixtures", func(t *testing.T) {
		r := p.RunIn(logsDir, 3*time.Minute, logsExe, "-test.run", logsParserTests, "-test.v", "-test.count", "1")
		if r.Exit != 0 || !strings.Contains(r.Stdout, "--- PASS") || strings.Contains(r.Stdout, "--- FAIL") {
			t.Fatalf("logs parsers under Wine: %v", r)
		}
		t.Logf("%d parser tests passed under Wine", strings.Count(r.Stdout, "--- PASS"))
	})
}
