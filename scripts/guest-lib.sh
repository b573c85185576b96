# shellcheck shell=bash
# Shared parts of the guest image scripts (scripts/guest-images.sh,
# scripts/sound-guest-images.sh). Sourced, not run. The sourcing script sets
#   me      the name its messages start with
#   debs    where downloaded .debs are kept (before calling fetch_deb)
#   root    the initramfs tree being built (before calling add_module)
# and, through index_modules, gets kpkg/krel/moddir/modfile for add_module.
# Nothing here needs root: packages are fetched with `apt-get download` and
# unpacked with `dpkg-deb -x`; device nodes are written into the cpio archive.

die() { echo "$me: $*" >&2; exit 1; }
say() { echo "$me: $*"; }

# Checks the tools every guest image build needs; sets `readelf`.
require_tools() {
    local t
    for t in apt-cache apt-get dpkg-deb cpio gzip sha256sum; do
        command -v "$t" >/dev/null || die "$t not found: run scripts/setup.sh"
    done
    readelf=$(command -v aarch64-linux-gnu-readelf || command -v readelf) ||
        die "readelf not found: run scripts/setup.sh (gcc-aarch64-linux-gnu)"
}

# --- Packages ---------------------------------------------------------------

# Candidate version of an arm64 package.
candidate() {
    apt-cache show --no-all-versions "$1:arm64" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

# The kernel package that meta package $1 (arm64) depends on, whose name
# matches the basic regular expression $2 (e.g. 'linux-image-[^ :]*-cloud-arm64').
kernel_of_meta() {
    apt-cache depends "$1:arm64" 2>/dev/null |
        sed -n "s/^ *Depends: \\($2\\)\\(:arm64\\)\\{0,1\\}\$/\\1/p" | head -n1
}

# Prints the path of package $1 version $2 in $debs, downloading it if needed.
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

# Removes from $debs every .deb but the ones named as arguments.
keep_debs() {
    local f k keep
    for f in "$debs"/*.deb; do
        keep=
        for k in "$@"; do [ "$f" != "$k" ] || keep=1; done
        [ -n "$keep" ] || rm -f "$f"
    done
}

# --- Kernel Image -----------------------------------------------------------

# Writes the raw arm64 Image of the kernel unpacked at $1 (package $kpkg,
# release $krel) to $2.
extract_image() {
    local vmlinuz=$1/boot/vmlinuz-$krel magic
    [ -f "$vmlinuz" ] || die "$kpkg has no boot/vmlinuz-$krel"
    case $(od -An -tx1 -N2 "$vmlinuz" | tr -d ' \n') in
        1f8b) gzip -dc "$vmlinuz" >"$2" ;;   # gzip-compressed Image
        *) cp "$vmlinuz" "$2" ;;
    esac
    # arm64 boot protocol: magic "ARM\x64" at offset 0x38.
    magic=$(od -An -tx1 -j56 -N4 "$2" | tr -d ' \n')
    [ "$magic" = 41524d64 ] ||
        die "boot/vmlinuz-$krel of $kpkg is not a raw arm64 Image (magic at 0x38 is '$magic', want 41524d64 \"ARM\\x64\")"
}

# --- Modules ----------------------------------------------------------------

declare -A modfile=()   # module name (dashes as underscores) -> file
declare -A seen=()      # modules already handled by add_module
order=()                # load order, dependencies first

# Finds the modules of the kernel unpacked at $1 (package $kpkg, release
# $krel): sets moddir and modfile.
index_modules() {
    local d f n
    moddir=
    for d in "$1/lib/modules/$krel" "$1/usr/lib/modules/$krel"; do
        [ -d "$d" ] && moddir=$d && break
    done
    [ -n "$moddir" ] || die "$kpkg has no lib/modules/$krel"
    while IFS= read -r f; do
        n=${f##*/}; n=${n%.ko*}; n=${n//-/_}
        modfile[$n]=$f
    done < <(find "$moddir" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
}

# Puts module $1 (decompressed) and, before it, its dependencies into
# $root/lib/modules and appends them to `order`. Built-in or missing modules
# are skipped with a note.
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

# --- Initramfs --------------------------------------------------------------

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

# Packs the tree $1 into the gzip-compressed newc initramfs $2, reproducibly:
# directories 755, files 644 except the executables named (relative to $1)
# after $2 (755), /tmp 1777, /root 700, every owner root, every mtime 0.
pack_initramfs() {
    local tree=$1 archive=$2 x
    shift 2
    find "$tree" -type d -exec chmod 755 {} +
    find "$tree" -type f -exec chmod 644 {} +
    for x in "$@"; do chmod 755 "$tree/$x"; done
    chmod 1777 "$tree/tmp"
    chmod 700 "$tree/root"
    find "$tree" -exec touch -h -d @0 {} +   # reproducible archive
    # The kernel opens /dev/console for init before /init can mount devtmpfs, so
    # that one node is appended as a second archive (the kernel unpacks both).
    {
        (cd "$tree" && find . -mindepth 1 | LC_ALL=C sort |
            cpio -o -H newc --owner=0:0 --reproducible --quiet)
        cpio_chardev dev/console 5 1
    } | gzip -9n >"$archive"
}
