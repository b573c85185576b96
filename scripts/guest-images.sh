#!/usr/bin/env bash
# Builds the Linux arm64 guest images from Debian's arm64 packages:
#
#   OUT_DIR/Image           raw arm64 kernel Image (linux-image-*-cloud-arm64)
#   OUT_DIR/rootfs.cpio.gz  initramfs: busybox (busybox-static), guest/init,
#                           the virtio and vsock modules of that kernel
#   OUT_DIR/VERSION         the kernel (and busybox) package versions used
#
# Usage: scripts/guest-images.sh [OUT_DIR]     (default: build/guest in the repo)
#
# Needs the arm64 package architecture and the tools that scripts/setup.sh
# installs; runs as any user (no root, no fakeroot). The .debs are kept in
# OUT_DIR/debs. Cached: when a stamp says that the outputs were built by this
# script from this guest/init, it does nothing (and does not ask apt). Set
# GUEST_IMAGES_UPDATE=1 to rebuild if apt now has newer packages.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/build/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
init_src=$repo/guest/init
[ -f "$init_src" ] || { echo "guest-images: $init_src is missing" >&2; exit 1; }

# Modules to put in the initramfs (their dependencies are added).
modules=(virtio virtio_ring virtio_mmio virtio_console virtio_blk
         vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport)

me=guest-images
# shellcheck source=scripts/guest-lib.sh
. "$repo/scripts/guest-lib.sh"
require_tools

# --- Cache check ------------------------------------------------------------

# The outputs depend on this script, scripts/guest-lib.sh, guest/init and the
# package versions. The versions are resolved only when building (asking apt
# is slow), so a build keeps the kernel it got until the outputs are removed
# or GUEST_IMAGES_UPDATE=1 asks to check apt for newer packages.
inputs="script=$(sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1)
lib=$(sha256sum <"$repo/scripts/guest-lib.sh" | cut -d' ' -f1)
init=$(sha256sum <"$init_src" | cut -d' ' -f1)"

report() {
    echo "Image: $out/Image ($(stat -c %s "$out/Image") bytes, $(head -n1 "$out/VERSION"))"
    echo "rootfs.cpio.gz: $out/rootfs.cpio.gz ($(stat -c %s "$out/rootfs.cpio.gz") bytes, modules: $(paste -sd' ' "$out/modules.txt"))"
    echo "VERSION: $out/VERSION ($(paste -sd' ' "$out/VERSION"))"
}

uptodate() {
    [ -f "$out/Image" ] && [ -f "$out/rootfs.cpio.gz" ] && [ -f "$out/VERSION" ] &&
        [ -f "$out/modules.txt" ] && [ "$(sed '/^kernel=/,$d' "$out/.stamp" 2>/dev/null)" = "$inputs" ]
}

if [ -z "${GUEST_IMAGES_UPDATE:-}" ] && uptodate; then
    report
    exit 0
fi

# --- Which packages -------------------------------------------------------

meta=linux-image-cloud-arm64
kpkg=$(kernel_of_meta "$meta" 'linux-image-[^ :]*-cloud-arm64')
[ -n "$kpkg" ] || die "cannot resolve $meta:arm64: is the arm64 architecture added and apt updated? (run scripts/setup.sh)"
kver=$(candidate "$kpkg")
bver=$(candidate busybox-static)
[ -n "$kver" ] || die "no version of $kpkg:arm64 in apt's lists"
[ -n "$bver" ] || die "no version of busybox-static:arm64 in apt's lists"
krel=${kpkg#linux-image-}   # kernel release (uname -r), e.g. 6.1.0-56-cloud-arm64

key="$inputs
kernel=$kpkg $kver
busybox=busybox-static $bver"
if uptodate && [ "$(cat "$out/.stamp")" = "$key" ]; then
    say "packages unchanged"
    report
    exit 0
fi
rm -f "$out/.stamp"

# --- Download ---------------------------------------------------------------

debs=$out/debs
mkdir -p "$debs"

kdeb=$(fetch_deb "$kpkg" "$kver")
bdeb=$(fetch_deb busybox-static "$bver")
keep_debs "$kdeb" "$bdeb"   # drop older versions

work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bdeb" "$work/busybox"

# --- Kernel Image -----------------------------------------------------------

extract_image "$work/kernel" "$work/Image"

# --- Modules ----------------------------------------------------------------

index_modules "$work/kernel"
root=$work/root
mkdir -p "$root/lib/modules"
for m in "${modules[@]}"; do
    add_module "$m"
done
printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order"

# --- Initramfs --------------------------------------------------------------

(cd "$root" && mkdir -p bin sbin usr/bin usr/sbin dev proc sys tmp run root etc)
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$init_src" "$root/init"
echo guest >"$root/etc/hostname"
pack_initramfs "$root" "$work/rootfs.cpio.gz" init bin/busybox

# --- Install ----------------------------------------------------------------

mv "$work/Image" "$out/Image"
mv "$work/rootfs.cpio.gz" "$out/rootfs.cpio.gz"
printf '%s\n' "${order[@]}" >"$out/modules.txt"
printf '%s %s\nbusybox-static %s\n' "$kpkg" "$kver" "$bver" >"$out/VERSION"
printf '%s\n' "$key" >"$out/.stamp"
report
