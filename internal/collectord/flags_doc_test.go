package collectord

import (
	"flag"
	"os"
	"strings"
	"testing"
)

// TestFlagsAreDocumented keeps docs/configuration.md's table of the
// collector's flags complete: guestdiag-collector and guestdiag up both
// take every flag Flags registers.
func TestFlagsAreDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	Flags(fs, &Config{})
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(doc, "| `--"+f.Name+"`") {
			t.Errorf("docs/configuration.md has no row for --%s", f.Name)
		}
	})
}
