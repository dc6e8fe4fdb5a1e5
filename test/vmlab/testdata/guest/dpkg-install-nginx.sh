# What dpkg does to its status file when a package is installed: write
# status-new next to it, then rename it over status.
cd /var/lib/dpkg
cp status status-new
cat >> status-new <<'PKG'
Package: nginx
Status: install ok installed
Priority: optional
Section: httpd
Installed-Size: 1186
Maintainer: Debian Nginx Maintainers <pkg-nginx-maintainers@alioth-lists.debian.net>
Architecture: amd64
Version: 1.22.1-9+deb12u3
Depends: nginx-common (= 1.22.1-9+deb12u3), libc6 (>= 2.34)
Description: small, powerful, scalable web/proxy server
 Nginx ("engine X") is a high-performance web and reverse proxy server
 created by Igor Sysoev. It can be used both as a standalone web server
 and as a proxy to reduce the load on back-end HTTP or mail servers.

PKG
mv status-new status
