// Package pkgbuild builds guestdiag's deb and rpm packages with nfpm used as
// a library, and the Windows agent's MSI with Debian's wixl. It is a build
// tool behind `make packages` (cmd/guestdiag-pkg) and ships in no package.
package pkgbuild
