package cluster

import (
	"os"
	"strings"
	"testing"
)

func TestDeployDocQuotesTheTestedFiles(t *testing.T) {
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"n1.conf", "accounts.conf", "create-r3.sh"} {
		t.Run("deploy.md quotes "+f+" byte for byte", func(t *testing.T) {
			b, err := os.ReadFile("testdata/" + f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(doc), "```\n"+string(b)+"```\n") {
				t.Errorf("docs/deploy.md has no fenced block equal to testdata/%s", f)
			}
		})
	}
	t.Run("the other nodes differ from n1 only in their name and certificates", func(t *testing.T) {
		n1, err := os.ReadFile("testdata/n1.conf")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"n2", "n3"} {
			b, err := os.ReadFile("testdata/" + n + ".conf")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.ReplaceAll(string(b), n, "n1"), string(n1); got != want {
				t.Errorf("%s.conf with %s written as n1:\n%s\nwant n1.conf:\n%s", n, n, got, want)
			}
		}
	})
}
