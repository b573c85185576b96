#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine: the Debian
# packages (QEMU, dtc, cross gcc, tools for guest images), the arm64 package
# architecture (guest kernel and busybox come from Debian's arm64 packages),
# and the Rust target and components. Safe to run again: it only installs
# what is missing. Needs root (or sudo) for apt.
set -euo pipefail

packages=(
    qemu-system-arm        # qemu-system-aarch64: boots the examples
    device-tree-compiler   # dtc: guest device trees
    gcc-aarch64-linux-gnu  # small static guest test programs
    cpio xz-utils zstd     # guest initramfs and kernel packages
    python3                # system-test harness
    make
)

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    sudo_ dpkg --add-architecture arm64
    need_update=1
fi
if [ ${#missing[@]} -gt 0 ] || [ -n "${need_update:-}" ]; then
    sudo_ apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v rustup >/dev/null; then
    echo "setup: rustup not found: install Rust from https://rustup.rs, then run this again" >&2
    exit 1
fi
# The PDs are built without floating point or SIMD (their system descriptions
# say fpu="false", so seL4 never switches FPU state for them).
target=aarch64-unknown-none-softfloat
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" || {
        echo "setup: could not install the Rust target $target (rustup target add $target)" >&2
        exit 1
    }
fi
for c in clippy rustfmt; do
    rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done
echo "setup: done"
