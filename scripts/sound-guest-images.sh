#!/usr/bin/env bash
# Builds the sound guest's images from Debian's arm64 packages:
#
#   OUT_DIR/Image           raw arm64 kernel Image (linux-image-6.12.*+deb12-arm64,
#                           the only Debian 12 kernel with virtio-snd, SND_VIRTIO)
#   OUT_DIR/rootfs.cpio.gz  initramfs: busybox (busybox-static), guest/sound/init,
#                           /bin/sndplay (guest/sndplay), the virtio, virtio-snd
#                           and ALSA modules of that kernel, and the Intel HDA
#                           ones (loaded only when there is a PCI audio device)
#   OUT_DIR/VERSION         the kernel (and busybox) package versions used
#
# Usage: scripts/sound-guest-images.sh [OUT_DIR]   (default: build/sound-guest)
#
# The same rules as scripts/guest-images.sh (whose steps are shared in
# scripts/guest-lib.sh): any user, .debs kept in OUT_DIR/debs, cached by a
# stamp (inputs: these scripts, guest/sound/init, guest/sndplay), and
# GUEST_IMAGES_UPDATE=1 rebuilds if apt now has newer packages. Needs
# aarch64-linux-gnu-gcc for sndplay (scripts/setup.sh installs it).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/build/sound-guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
init_src=$repo/guest/sound/init
player_src=$repo/guest/sndplay

# Modules to put in the initramfs (their dependencies are added), loaded by
# /init in this order. virtio and virtio_ring are built into this kernel.
modules=(virtio virtio_ring virtio_mmio virtio_console virtio_blk virtio_snd)
# Intel HDA (PCI) controller and QEMU's codec, which the generic parser
# drives: for booting under bare QEMU (-device intel-hda -device hda-output),
# which has no virtio-snd. The codec driver first: with no modprobe in the
# guest, the controller binds codecs only to drivers already loaded.
hda_modules=(snd_hda_codec_generic snd_hda_intel)

me=sound-guest-images
# shellcheck source=scripts/guest-lib.sh
. "$repo/scripts/guest-lib.sh"
[ -f "$init_src" ] || die "$init_src is missing"
require_tools
cross=${CROSS:-aarch64-linux-gnu-}
command -v "${cross}gcc" >/dev/null || die "${cross}gcc not found: run scripts/setup.sh"

# --- Cache check ------------------------------------------------------------

hash() { sha256sum <"$1" | cut -d' ' -f1; }
inputs="script=$(hash "${BASH_SOURCE[0]}")
lib=$(hash "$repo/scripts/guest-lib.sh")
init=$(hash "$init_src")
sndplay=$(cat "$player_src/sndplay.c" "$player_src/Makefile" "$repo/guest/include/nolibc.h" | sha256sum | cut -d' ' -f1)"

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

meta=linux-image-6.12-arm64
kpkg=$(kernel_of_meta "$meta" 'linux-image-6\.12\.[^ :]*-arm64')
[ -n "$kpkg" ] || die "cannot resolve $meta:arm64: is the arm64 architecture added and apt updated? (run scripts/setup.sh)"
kver=$(candidate "$kpkg")
bver=$(candidate busybox-static)
[ -n "$kver" ] || die "no version of $kpkg:arm64 in apt's lists"
[ -n "$bver" ] || die "no version of busybox-static:arm64 in apt's lists"
krel=${kpkg#linux-image-}   # kernel release (uname -r), e.g. 6.12.117+deb12-arm64

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
grep -qx 'CONFIG_SND_VIRTIO=[ym]' "$work/kernel/boot/config-$krel" ||
    die "$kpkg has no virtio-snd (CONFIG_SND_VIRTIO)"

# --- Player -----------------------------------------------------------------

make -s -C "$player_src" CROSS="$cross" O="$work/sndplay" >&2 ||
    die "building guest/sndplay failed"

# --- Modules ----------------------------------------------------------------

index_modules "$work/kernel"
root=$work/root
mkdir -p "$root/lib/modules"
for m in "${modules[@]}"; do
    add_module "$m"
done
printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order"
base=("${order[@]}")
order=()   # the HDA modules' own list: the shared ones (snd, snd_pcm...) are loaded already
for m in "${hda_modules[@]}"; do
    add_module "$m"
done
printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order.hda"
for m in virtio_snd snd_hda_intel; do
    [ -f "$root/lib/modules/$m.ko" ] || die "$kpkg has no module $m"
done

# --- Initramfs --------------------------------------------------------------

(cd "$root" && mkdir -p bin sbin usr/bin usr/sbin dev proc sys tmp run root etc)
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$work/sndplay/sndplay" "$root/bin/sndplay"
cp "$init_src" "$root/init"
echo guest >"$root/etc/hostname"
pack_initramfs "$root" "$work/rootfs.cpio.gz" init bin/busybox bin/sndplay

# --- Install ----------------------------------------------------------------

mv "$work/Image" "$out/Image"
mv "$work/rootfs.cpio.gz" "$out/rootfs.cpio.gz"
printf '%s\n' "${base[@]}" "${order[@]}" >"$out/modules.txt"
printf '%s %s\nbusybox-static %s\n' "$kpkg" "$kver" "$bver" >"$out/VERSION"
printf '%s\n' "$key" >"$out/.stamp"
report
