package collectord

import (
	"fmt"
	"strings"
)

// namesFlag is a comma-separated list of user names; repeating the flag
// adds more. It shows itself as stringsFlag does.
type namesFlag struct{ stringsFlag }

func (f namesFlag) Set(s string) error {
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return fmt.Errorf("empty name in %q", s)
		}
		*f.p = append(*f.p, name)
	}
	return nil
}
