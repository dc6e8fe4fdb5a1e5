// Package wine holds the tests that run the windows/amd64 agent under
// Debian's Wine 8 (through internal/winetest): its checks against what Wine
// implements, the Windows service under Wine's service manager, and the
// Windows port transport against a named-pipe server standing in for the
// virtio-serial device (./standin). They are TestIntegrationWine* tests,
// enabled with GUESTDIAG_WINE=1 or GUESTDIAG_VMLAB=1, and required (failing
// when Wine is missing) with GUESTDIAG_VMLAB=require, as `make test-vmlab`
// sets. Wine is not Windows: nothing here has run on real Windows.
package wine
