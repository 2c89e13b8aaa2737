#!/usr/bin/env bash
# Makes a minimal, self-booting Debian 12 qcow2 from Debian's packages, offline
# except for the Debian mirror, without loop devices or mounts:
#   mmdebstrap -> ext4 made with `mke2fs -d` -> MBR disk (sfdisk on a file)
#   -> GRUB core image written after the MBR with dd (what grub-bios-setup does)
#   -> compressed qcow2.
# GRUB boots /vmlinuz and /initrd.img, the symlinks Debian's kernel packages
# keep current, so a kernel upgraded inside a later build is the one that boots.
#
# Prints the image path as the last line of stdout; progress goes to stderr.
# Cached at ${GOLDEN_CACHE_DIR:-$HOME/.cache/golden}/base/debian-12.qcow2;
# `--force` rebuilds.
set -euo pipefail

cache=${GOLDEN_CACHE_DIR:-$HOME/.cache/golden}
out="$cache/base/debian-12.qcow2"
mirror=${GOLDEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${GOLDEN_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
disk_size_mib=4096

if [ "${1:-}" != "--force" ] && [ -s "$out" ]; then
  echo "$out"
  exit 0
fi

need() { command -v "$1" >/dev/null 2>&1 || { echo "make-base-image: $1 is missing (Debian package $2)" >&2; exit 1; }; }
need mmdebstrap mmdebstrap
need mke2fs e2fsprogs
need sfdisk fdisk
need grub-mkimage grub-pc-bin
need qemu-img qemu-utils
[ -f /usr/lib/grub/i386-pc/boot.img ] || { echo "make-base-image: /usr/lib/grub/i386-pc/boot.img is missing (Debian package grub-pc-bin)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "make-base-image: run as root (mmdebstrap writes device nodes and file ownership)" >&2; exit 1; }

mkdir -p "$cache/base"
work=$(mktemp -d "$cache/base/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
log() { echo "make-base-image: $*" >&2; }
started=$(date +%s)

# 1. The root filesystem. The hook configures what a golden template needs.
log "mmdebstrap bookworm (minbase + kernel, cloud-init, qemu-guest-agent, sshd)"
cat > "$work/customize.sh" <<'HOOK'
#!/bin/sh
set -eu
root="$1"
# cloud-init: NoCloud seeds only here; the locale module fails without the
# locales package, which would end cloud-init in "status: error".
cat > "$root/etc/cloud/cloud.cfg.d/90-golden.cfg" <<CFG
datasource_list: [ NoCloud, ConfigDrive, None ]
locale: false
CFG
cat > "$root/etc/fstab" <<FSTAB
LABEL=root / ext4 defaults,errors=remount-ro 0 1
FSTAB
echo debian > "$root/etc/hostname"
cat > "$root/etc/network/interfaces" <<NET
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*
NET
mkdir -p "$root/boot/grub"
cat > "$root/boot/grub/grub.cfg" <<GRUB
set timeout=0
set default=0
insmod part_msdos
insmod ext2
search --no-floppy --label root --set=root
menuentry "Debian 12 (golden base)" {
  linux /vmlinuz root=LABEL=root ro net.ifnames=0 console=tty0 console=ttyS0,115200
  initrd /initrd.img
}
GRUB
# The kernel package keeps /vmlinuz and /initrd.img pointing at the newest kernel.
[ -e "$root/vmlinuz" ] || ln -sf "$(cd "$root" && ls boot/vmlinuz-* | sort -V | tail -n1)" "$root/vmlinuz"
[ -e "$root/initrd.img" ] || ln -sf "$(cd "$root" && ls boot/initrd.img-* | sort -V | tail -n1)" "$root/initrd.img"
# A template carries no identity: host keys and machine-id are made on first boot.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/cloud/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/var/log/*.log "$root"/tmp/* 2>/dev/null || true
HOOK
chmod +x "$work/customize.sh"
mmdebstrap --quiet --variant=minbase \
  --include=linux-image-cloud-amd64,systemd-sysv,udev,dbus,cloud-init,qemu-guest-agent,openssh-server,ifupdown,isc-dhcp-client,netbase,iproute2,sudo,ca-certificates,netcat-openbsd \
  --essential-hook='mkdir -p "$1/etc/kernel" && printf "do_symlinks = yes\nlink_in_boot = no\n" > "$1/etc/kernel-img.conf"' \
  --customize-hook="$work/customize.sh \"\$1\"" \
  bookworm "$work/root" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" >&2

# 2. ext4 from the directory tree, no mount needed.
log "ext4 root filesystem (mke2fs -d)"
part_start_mib=1
fs_mib=$((disk_size_mib - part_start_mib))
mke2fs -q -t ext4 -L root -d "$work/root" "$work/root.img" "${fs_mib}M"
rm -rf "$work/root"

# 3. MBR disk: one bootable Linux partition from 1 MiB; the gap before it
#    holds GRUB's core image.
log "MBR disk with GRUB (no loop device)"
truncate -s "${disk_size_mib}M" "$work/disk.raw"
printf 'label: dos\nstart=%d, type=83, bootable\n' $((part_start_mib * 2048)) | sfdisk --quiet "$work/disk.raw"
dd if="$work/root.img" of="$work/disk.raw" bs=1M seek="$part_start_mib" conv=notrunc,sparse status=none
rm -f "$work/root.img"
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 search search_label normal linux configfile echo test
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -lt $((part_start_mib * 2048 - 1)) ] || { log "GRUB core image does not fit before the partition"; exit 1; }
# boot.img's defaults already point at sector 1 for the core image, and
# grub-mkimage fills the core image's own block list: only the first 440
# bytes of the MBR (the code, not the partition table) are replaced.
dd if=/usr/lib/grub/i386-pc/boot.img of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$work/disk.raw" bs=512 seek=1 conv=notrunc status=none

# 4. Compressed qcow2, moved into place atomically.
log "qcow2 (zstd)"
qemu-img convert -c -O qcow2 -o compression_type=zstd "$work/disk.raw" "$work/debian-12.qcow2"
mv "$work/debian-12.qcow2" "$out"
log "done in $(( $(date +%s) - started )) s: $(du -h "$out" | cut -f1)"
echo "$out"
