#!/usr/bin/env bash
# Follows docs/getting-started.md as a new user would: the template crate
# (templates/linux-vmm) is copied to a temporary directory outside this
# workspace, with libvmm as a path dependency, and built for
# aarch64-unknown-none-softfloat. With a Microkit SDK it is built into a loader image
# with the guest images of the examples and booted in QEMU to the guest's
# shell (scripts/systest.py getting-started).
#   scripts/template-test.sh [SDK]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
sdk=${1:-}

python3 scripts/check-guide.py
dir=$(mktemp -d "${TMPDIR:-/tmp}/my-vmm.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cp -r templates/linux-vmm/. "$dir"
sed -i "s|@LIBVMM_DIR@|$top|g" "$dir/Cargo.toml"
echo "template crate in $dir"

if [ -z "$sdk" ]; then
    (cd "$dir" && cargo build --release --target aarch64-unknown-none-softfloat)
    echo "ok: the template crate builds out of tree (no SDK: not booted)"
    exit 0
fi
[ -f build/guest/Image ] || scripts/guest-images.sh build/guest
make -s -C "$dir" MICROKIT_SDK="$sdk" LINUX="$top/build/guest/Image" INITRD="$top/build/guest/rootfs.cpio.gz"
python3 scripts/systest.py getting-started --dir "$dir" \
    --make-args MICROKIT_SDK="$sdk" LINUX="$top/build/guest/Image" INITRD="$top/build/guest/rootfs.cpio.gz"
