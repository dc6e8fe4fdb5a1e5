// Package vmlab boots real QEMU guests (busybox initramfs, Debian cloud kernel) so
// acceptance tests can run the guestdiag agent against a real virtio-serial port and
// QEMU's restricted user network. It works on Linux hosts only and needs
// qemu-system-x86_64, /bin/busybox from busybox-static, and apt-get/dpkg-deb to fetch
// the linux-image-cloud-amd64 kernel package into a cache; on other systems the
// package is empty. It also builds and caches a full Debian bookworm guest
// (systemd, udev, journald, D-Bus, nftables) with mmdebstrap, booted from a qcow2
// overlay, which needs root, mmdebstrap and qemu-img. Its tests are named
// TestIntegration* and run only when GUESTDIAG_VMLAB is 1 or "require".
package vmlab
