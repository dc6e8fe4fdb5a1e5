#!/usr/bin/env bash
# Installs what `make demo` and `make test` need beyond Go: QEMU, a static
# busybox and an apt package list that knows the Debian cloud kernel (the lab
# downloads it with `apt-get download` on first use), and the tools the checks'
# integration tests drive: ip (network namespaces), nft (rulesets), rpm and
# rpmbuild (an rpm database), setpriv (an unprivileged ICMP probe); the
# packaging tools `make packages` and its tests use: dpkg-deb, wixl,
# msitools (msibuild, msiinfo) and systemd-sysusers; mmdebstrap and qemu-img
# for the lab's Debian guest (a root built from Debian's mirror, booted from
# a copy-on-write overlay); Wine and MinGW (the Windows agent under Wine); and
# the real
# peers of the alert and dashboard tests: Prometheus Alertmanager and headless
# Chromium. As root with apt-get it
# installs them; otherwise it says what to install and stops.
set -euo pipefail

missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
	missing+=(busybox-static)
fi
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v rpmbuild >/dev/null 2>&1 || missing+=(rpm)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
command -v systemd-sysusers >/dev/null 2>&1 || missing+=(systemd)
command -v wixl >/dev/null 2>&1 || missing+=(wixl)
command -v msiinfo >/dev/null 2>&1 || missing+=(msitools)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The Windows agent's tests run it under Wine (test/wine); MinGW builds the
# ProcessPrng stand-in DLL that Go programs need under Wine 8.
[ -x /usr/lib/wine/wine64 ] || missing+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing+=(gcc-mingw-w64-x86-64-win32)
kernel_known() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | grep -q 'Depends: linux-image-'; }

if ! command -v go >/dev/null 2>&1; then
	echo "deps: Go is not installed; install Go 1.26 or newer from go.dev/dl" >&2
	exit 1
fi

# The nats CLI: docs/deploy.md's backup and restore, which test/cluster runs.
if ! command -v nats >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/nats" ]; then
	echo "deps: installing the nats CLI (go install github.com/nats-io/natscli/nats@v0.5.0)" >&2
	go install github.com/nats-io/natscli/nats@v0.5.0
fi

if [ ${#missing[@]} -eq 0 ] && kernel_known; then
	exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing: ${missing[*]:-} ${missing[*]:+and }an apt list with linux-image-cloud-amd64" >&2
	echo "deps: on Debian, as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]:-qemu-system-x86 busybox-static}" >&2
	exit 1
fi

echo "deps: installing ${missing[*]:-nothing new} (apt-get update first)" >&2
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! kernel_known; then
	echo "deps: apt does not know linux-image-cloud-amd64; the VM lab needs Debian's cloud kernel package" >&2
	exit 1
fi
