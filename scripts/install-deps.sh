#!/usr/bin/env bash
# Installs what golden needs on a fresh Debian 12 machine: QEMU, the tools of
# the base-image script, protoc (tf-provider's build), ssh, an ISO writer,
# python3-venv (the simulator's proxmoxer test).
# Idempotent and quiet when everything is already there.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need+=(qemu-system-x86)
have mmdebstrap || need+=(mmdebstrap)
have protoc || need+=(protobuf-compiler)
have grub-mkimage || need+=(grub-pc-bin)
[ -f /usr/lib/grub/i386-pc/boot.img ] || need+=(grub-pc-bin)
have mcopy || need+=(mtools)
have sfdisk || need+=(fdisk)
have mke2fs || need+=(e2fsprogs)
have genisoimage || need+=(genisoimage)
have ssh || need+=(openssh-client)
have ssh-keygen || need+=(openssh-client)
# The DigitalOcean simulator runs a real sshd per droplet (instant backend).
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
have zstd || need+=(zstd)
have bc || need+=(bc)
# The simulator's client tests run proxmoxer from a venv (tests/clients/).
have python3 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# HTTPS roots: the provider's clients (reqwest 0.13, rustls) trust the
# system's CA store, not a bundle in the binary.
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
# scripts/release.sh (make release, tests/e2e/install.rs)
have zip || need+=(zip)
have unzip || need+=(unzip)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; run: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing: ${need[*]}" >&2
apt-get update -qq
pkgs=("${need[@]}")
# Debian's qemu-system-x86 conflicts with a newer qemu-utils from backports:
# install the matching qemu-utils in the same step (downgrading if needed).
if printf '%s\n' "${pkgs[@]}" | grep -qx qemu-system-x86; then
  v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  pkgs+=("qemu-utils=$v")
fi
apt-get install -y -qq --allow-downgrades "${pkgs[@]}" >/dev/null
