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

die() { echo "guest-images: $*" >&2; exit 1; }
say() { echo "guest-images: $*"; }

for t in apt-cache apt-get dpkg-deb cpio gzip sha256sum; do
    command -v "$t" >/dev/null || die "$t not found: run scripts/setup.sh"
done
readelf=$(command -v aarch64-linux-gnu-readelf || command -v readelf) ||
    die "readelf not found: run scripts/setup.sh (gcc-aarch64-linux-gnu)"

# --- Cache check ------------------------------------------------------------

# The outputs depend on this script, guest/init and the package versions. The
# versions are resolved only when building (asking apt is slow), so a build
# keeps the kernel it got until the outputs are removed or
# GUEST_IMAGES_UPDATE=1 asks to check apt for newer packages.
inputs="script=$(sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1)
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

# Candidate version of an arm64 package.
candidate() {
    apt-cache show --no-all-versions "$1:arm64" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

meta=linux-image-cloud-arm64
kpkg=$(apt-cache depends "$meta:arm64" 2>/dev/null |
       sed -n 's/^ *Depends: \(linux-image-[^ :]*-cloud-arm64\)\(:arm64\)\{0,1\}$/\1/p' | head -n1)
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

# Prints the path of package $1 version $2, downloading it if needed.
fetch_deb() {
    local pkg=$1 ver=$2 f
    f=$debs/${pkg}_${ver//:/%3a}_arm64.deb
    if [ ! -f "$f" ]; then
        local opts=()
        # As root, apt would drop to user _apt, which can't write here.
        [ "$(id -u)" -ne 0 ] || opts=(-o APT::Sandbox::User=root)
        say "downloading $pkg $ver" >&2
        (cd "$debs" && apt-get download -q "${opts[@]}" "$pkg:arm64=$ver" >&2) ||
            die "apt-get download $pkg:arm64=$ver failed"
        [ -f "$f" ] || die "apt-get download did not produce $f"
    fi
    [ "$(dpkg-deb -f "$f" Package Version | paste -sd' ')" = "Package: $pkg Version: $ver" ] ||
        die "$f is not $pkg $ver"
    echo "$f"
}

kdeb=$(fetch_deb "$kpkg" "$kver")
bdeb=$(fetch_deb busybox-static "$bver")
for f in "$debs"/*.deb; do   # drop older versions
    [ "$f" = "$kdeb" ] || [ "$f" = "$bdeb" ] || rm -f "$f"
done

work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bdeb" "$work/busybox"

# --- Kernel Image -----------------------------------------------------------

vmlinuz=$work/kernel/boot/vmlinuz-$krel
[ -f "$vmlinuz" ] || die "$kpkg has no boot/vmlinuz-$krel"
case $(od -An -tx1 -N2 "$vmlinuz" | tr -d ' \n') in
    1f8b) gzip -dc "$vmlinuz" >"$work/Image" ;;   # gzip-compressed Image
    *) cp "$vmlinuz" "$work/Image" ;;
esac
# arm64 boot protocol: magic "ARM\x64" at offset 0x38.
magic=$(od -An -tx1 -j56 -N4 "$work/Image" | tr -d ' \n')
[ "$magic" = 41524d64 ] ||
    die "boot/vmlinuz-$krel of $kpkg is not a raw arm64 Image (magic at 0x38 is '$magic', want 41524d64 \"ARM\\x64\")"

# --- Modules ----------------------------------------------------------------

moddir=
for d in "$work/kernel/lib/modules/$krel" "$work/kernel/usr/lib/modules/$krel"; do
    [ -d "$d" ] && moddir=$d && break
done
[ -n "$moddir" ] || die "$kpkg has no lib/modules/$krel"

# Module name (dashes as underscores) -> file, for every module in the package.
declare -A modfile=()
while IFS= read -r f; do
    n=${f##*/}; n=${n%.ko*}; n=${n//-/_}
    modfile[$n]=$f
done < <(find "$moddir" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

root=$work/root
mkdir -p "$root/lib/modules"
declare -A seen=()
order=()   # load order, dependencies first

# Puts module $1 (decompressed) and, before it, its dependencies into the
# initramfs. Built-in or missing modules are skipped with a note.
add_module() {
    local m=${1//-/_} f dest deps d vermagic
    [ -z "${seen[$m]:-}" ] || return 0
    seen[$m]=1
    f=${modfile[$m]:-}
    if [ -z "$f" ]; then
        if sed 's,.*/,,; s,\.ko.*,,; s,-,_,g' "$moddir/modules.builtin" 2>/dev/null | grep -qx "$m"; then
            say "note: $m is built into the kernel, skipped"
        else
            say "note: $m is not in $kpkg, skipped"
        fi
        return 0
    fi
    dest=$root/lib/modules/$m.ko
    case $f in
        *.xz) xz -dc "$f" >"$dest" ;;
        *.zst) zstd -qdc "$f" >"$dest" ;;
        *.gz) gzip -dc "$f" >"$dest" ;;
        *) cp "$f" "$dest" ;;
    esac
    vermagic=$("$readelf" -p .modinfo "$dest" | sed -n 's/^ *\[ *[0-9a-f]*\] *vermagic=\([^ ]*\).*/\1/p')
    [ "$vermagic" = "$krel" ] || die "$m: vermagic '$vermagic' is not $krel"
    deps=$("$readelf" -p .modinfo "$dest" | sed -n 's/^ *\[ *[0-9a-f]*\] *depends=//p')
    for d in ${deps//,/ }; do
        add_module "$d"
    done
    order+=("$m")
}

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
find "$root" -type d -exec chmod 755 {} +
find "$root" -type f -exec chmod 644 {} +
chmod 755 "$root/init" "$root/bin/busybox"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
find "$root" -exec touch -h -d @0 {} +   # reproducible archive

# newc archive of one character device node owned by root, which cpio can only
# archive from a real node (needs root): $1 path, $2 major, $3 minor.
cpio_chardev() {
    local name=$1 size=$((${#1} + 1))
    # magic ino mode uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin namesize check
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        1 $((0020600)) 0 0 1 0 0 0 0 "$2" "$3" "$size" 0
    printf '%s\0' "$name"
    printf '%*s' $(( (4 - (110 + size) % 4) % 4 )) '' | tr ' ' '\0'
    # trailer
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        0 0 0 0 1 0 0 0 0 0 0 11 0
    printf 'TRAILER!!!\0\0\0\0'   # name + padding to 4 (110 + 11 + 3)
}

# The kernel opens /dev/console for init before /init can mount devtmpfs, so
# that one node is appended as a second archive (the kernel unpacks both).
{
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
        cpio -o -H newc --owner=0:0 --reproducible --quiet)
    cpio_chardev dev/console 5 1
} | gzip -9n >"$work/rootfs.cpio.gz"

# --- Install ----------------------------------------------------------------

mv "$work/Image" "$out/Image"
mv "$work/rootfs.cpio.gz" "$out/rootfs.cpio.gz"
printf '%s\n' "${order[@]}" >"$out/modules.txt"
printf '%s %s\nbusybox-static %s\n' "$kpkg" "$kver" "$bver" >"$out/VERSION"
printf '%s\n' "$key" >"$out/.stamp"
report
