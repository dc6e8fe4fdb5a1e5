package all

import (
	// The checks register themselves when their package is linked in.
	_ "github.com/guestdiag/guestdiag/checks"
)
