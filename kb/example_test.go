package kb_test

import (
	"fmt"

	"github.com/guestdiag/guestdiag/kb"
)

func ExampleKB_Match() {
	k, err := kb.Shipped()
	if err != nil {
		fmt.Println(err)
		return
	}
	f := kb.Finding{OS: "linux", Code: "net.gateway_unreachable", Message: "gateway 10.0.2.2 on eth0 did not answer 3 pings: complete network failure"}
	for _, e := range k.Match(f) {
		fmt.Printf("%s (%s): %s\n", e.ID, e.Severity, e.Title)
	}
	// Output:
	// guestdiag.net.gateway_unreachable (crit): The guest cannot reach its default gateway
}

func ExampleLint() {
	for _, err := range kb.Lint("testdata/bad-example") {
		fmt.Println(err)
	}
	// Output:
	// testdata/bad-example/site.yaml:5: entry "site.myapp.panic": match.pattern: error parsing regexp: missing closing ): `myapp panicked (goroutine \d+`
	// testdata/bad-example/site.yaml:6: entry "site.myapp.panic": severity: "high": want info, warn or crit
}
