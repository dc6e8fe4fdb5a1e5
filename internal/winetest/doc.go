// Package winetest runs windows/amd64 builds of guestdiag under Debian's Wine
// 8 for tests: it makes a fresh WINEPREFIX per test, puts the ProcessPrng
// stand-in DLL that Go programs need under Wine 8 into it, builds Windows
// executables and runs them with /usr/lib/wine/wine64. It is test equipment:
// Wine is not Windows, and what passes here has not run on real Windows.
package winetest
