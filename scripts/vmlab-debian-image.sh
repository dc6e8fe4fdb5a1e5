#!/usr/bin/env bash
# Builds the VM lab's Debian bookworm guest: a root made by mmdebstrap, put into
# a raw ext4 disk with `mkfs.ext4 -d` (no loop device, no mount), with the
# kernel and initrd beside it for QEMU's -kernel/-initrd.
#
#   scripts/vmlab-debian-image.sh OUT_DIR
#
# writes OUT_DIR/disk.raw, OUT_DIR/vmlinuz and OUT_DIR/initrd.img. The image
# holds nothing of guestdiag: at every boot its unit vmlab-payload.service
# mounts a second disk labelled VMLAB (read-only) and runs its boot.sh, which
# is how a test installs the agent's package and starts what it needs. The lab
# (test/vmlab/debian.go) caches OUT_DIR under a hash of this file, so any edit
# here is a new image. Needs root, mmdebstrap and e2fsprogs, and reaches
# Debian's package mirror.
set -euo pipefail

out=${1:?usage: $0 OUT_DIR}
if [ "$(id -u)" != 0 ]; then
	echo "vmlab-debian-image: run as root (mmdebstrap's root mode)" >&2
	exit 1
fi
for tool in mmdebstrap mkfs.ext4; do
	command -v "$tool" >/dev/null || { echo "vmlab-debian-image: $tool not found (apt-get install mmdebstrap e2fsprogs)" >&2; exit 1; }
done

work=$(mktemp -d "${out%/}.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

# dbus: the processes check asks systemd over D-Bus. procps: pidof and ps for
# the tests. qemu-guest-agent: the neighbour the figures compare against.
packages=systemd,systemd-sysv,udev,dbus,nftables,kmod,iproute2,procps
packages=$packages,linux-image-cloud-amd64,initramfs-tools,qemu-guest-agent

# The initrd needs only what finds a virtio root disk; the default (most
# modules, probed one by one) costs half a minute of a software-emulated boot.
# update-initramfs runs in a customize hook, where /proc and /dev are mounted.
mmdebstrap --variant=apt --include="$packages" \
	--customize-hook='echo MODULES=list >"$1/etc/initramfs-tools/conf.d/vmlab"' \
	--customize-hook='printf "virtio_pci\nvirtio_blk\n" >>"$1/etc/initramfs-tools/modules"' \
	--customize-hook='chroot "$1" update-initramfs -u -k all' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	bookworm "$root" >&2

echo debian-lab >"$root/etc/hostname"
printf '127.0.1.1\tdebian-lab\n' >>"$root/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$root/etc/fstab"

cat >"$root/usr/local/sbin/vmlab-payload" <<'EOF'
#!/bin/sh
# Runs the test's payload: boot.sh on the disk labelled VMLAB.
set -eu
mkdir -p /run/vmlab
mount -o ro LABEL=VMLAB /run/vmlab
exec /bin/sh /run/vmlab/boot.sh
EOF
chmod 0755 "$root/usr/local/sbin/vmlab-payload"

cat >"$root/etc/systemd/system/vmlab-payload.service" <<'EOF'
[Unit]
Description=vmlab test payload (boot.sh on the disk labelled VMLAB)
Requires=dev-disk-by\x2dlabel-VMLAB.device
After=dev-disk-by\x2dlabel-VMLAB.device dbus.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/vmlab-payload
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=5min

[Install]
WantedBy=multi-user.target
EOF

# DHCP on QEMU's user network (the lab always starts it with restrict=on).
cat >"$root/etc/systemd/network/80-vmlab.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF

# nftables.service loads Debian's default /etc/nftables.conf (table inet
# filter), so the firewall check starts from a real ruleset.
systemctl --root="$root" enable vmlab-payload.service systemd-networkd.service nftables.service >&2
# Timers, logins and waits that only slow a software-emulated boot down: the
# lab never logs in (tests act through the payload and the lab port).
systemctl --root="$root" mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
	e2scrub_reap.service fstrim.timer dpkg-db-backup.timer systemd-networkd-wait-online.service \
	getty@tty1.service serial-getty@ttyS0.service systemd-logind.service >&2
# Drivers for emulated hardware the lab does not use (QEMU's pc machine always
# has an IDE controller; kvm only matters for nested guests).
printf 'blacklist %s\n' ata_piix kvm_amd kvm_intel kvm pcspkr >"$root/etc/modprobe.d/vmlab.conf"

cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"
# Room for the packages the tests install; the file is sparse.
mkfs.ext4 -q -F -d "$root" -L root "$work/disk.raw" 2G
rm -rf "$root"

mkdir -p "$out"
mv "$work/vmlinuz" "$work/initrd.img" "$work/disk.raw" "$out/"
