#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages BytePort and its tests need.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail

packages=(
  build-essential pkg-config git curl ca-certificates
  openssh-client openssh-server          # real ssh client in tests; sshd as the git benchmark peer
  postgresql                             # the production store, started by the test harness
  qemu-system-x86 qemu-utils             # the qemu driver and the nested test host for our VMM
  busybox-static cpio e2fsprogs          # guest init, initramfs, ext4 rootfs images
  iproute2                               # runtime tests: private-range addresses in a network namespace of their own
  mmdebstrap debootstrap                 # debian:<suite> base layers
  wrk nginx-light                        # router benchmark: load generator and the reference proxy
  chromium fonts-dejavu-core             # portfolio screenshots and the dashboard's real-browser test (headless)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: Rust is not installed; install it with rustup (https://rustup.rs) — cargo 1.88 or newer" >&2
  exit 1
fi
