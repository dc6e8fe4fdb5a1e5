package all

// The checks register themselves when their package is linked in.
import (
	_ "github.com/guestdiag/guestdiag/checks/firewall"
	_ "github.com/guestdiag/guestdiag/checks/logs"
	_ "github.com/guestdiag/guestdiag/checks/network"
	_ "github.com/guestdiag/guestdiag/checks/processes"
	_ "github.com/guestdiag/guestdiag/checks/resources"
	_ "github.com/guestdiag/guestdiag/checks/software"
)
