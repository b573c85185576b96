#!/usr/bin/env bash
# Everything CI checks (`make test`):
#   1. host: rustfmt, clippy (host and aarch64 soft-float, -D warnings), cargo test,
#      the Python tests of scripts/ (scripts/test_*.py), cargo deny (where
#      installed), the aarch64 build of every crate and example;
#   2. with a Microkit SDK (MICROKIT_SDK, else /opt/microkit-sdk): every
#      example built and booted in QEMU, its output checked by
#      scripts/systest.py; a release-config build checked for release labels;
#      the other boards of board/ (GICv3 QEMU: booted; hardware: built), each
#      where the SDK has it, said skipped where not.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-none-softfloat

step() { printf '\n== %s\n' "$*"; }

step "rustfmt"
cargo fmt --all --check
step "clippy (host)"
cargo clippy --all-targets -- -D warnings
step "clippy ($target, crates and examples)"
cargo clippy --workspace --exclude libvmm-build --target $target -- -D warnings
step "host tests"
cargo test
step "host tests (python: scripts/test_*.py, the checks of scripts/check-wav.py)"
python3 -m unittest discover -s scripts -p 'test_*.py'
step "cargo deny (deny.toml: licences, bans, sources; advisories where a database is here)"
if cargo deny --version >/dev/null 2>&1; then
    cargo deny --offline check licenses bans sources
    # The RustSec database comes from GitHub (`cargo deny fetch`), out of CI's reach:
    # advisories are checked only against a copy already on this machine.
    if compgen -G "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/*/.git" >/dev/null; then
        cargo deny --offline check advisories
    else
        echo "advisories skipped: no RustSec database on this machine (cargo deny fetch)"
    fi
else
    echo "cargo deny skipped: cargo-deny is not installed (cargo install cargo-deny --locked)"
fi
step "build ($target)"
cargo build --workspace --exclude libvmm-build --release --target $target

sdk="${MICROKIT_SDK:-/opt/microkit-sdk}"
if [ ! -x "$sdk/bin/microkit" ]; then
    step "getting-started: the guide's crate, out of tree"
    scripts/template-test.sh
    step "system tests skipped: no Microkit SDK at $sdk (set MICROKIT_SDK to run them)"
    exit 0
fi

if [ -d "$sdk/board/qemu_virt_aarch64/release" ]; then
step "release config uses release labels"
make -s EXAMPLE=hello MICROKIT_SDK="$sdk" MICROKIT_CONFIG=release image
generated=$(find build/cargo/qemu_virt_aarch64-release -name sel4_config.rs -path '*libvmm*' | head -1)
want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['IRQAckIRQ'])" \
    "$sdk/board/qemu_virt_aarch64/release/invocations_all.json")
grep -q "IRQ_ACK_IRQ: u64 = $want;" "$generated" || { echo "FAIL: $generated does not use IRQAckIRQ=$want"; exit 1; }
echo "ok: release build uses IRQAckIRQ = $want ($generated)"
fi

# The system tests see only what scripts/setup.sh installs: packages that are
# often present but that setup.sh does not install are hidden, where this
# shell may do so (root, unshare), so a test cannot come to depend on them.
hide_dirs=(/usr/lib/ipxe/qemu)   # ipxe-qemu: boot ROMs of QEMU's PCI NICs
isolate=
if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then isolate=1; fi
run_isolated() {  # run_isolated COMMAND [ARG...]
    if [ -n "$isolate" ]; then
        HIDE="${hide_dirs[*]}" unshare -m sh -c '
            for d in $HIDE; do if [ -d "$d" ]; then mount -t tmpfs none "$d" || exit 1; fi; done
            exec "$@"' sh "$@"
    else
        "$@"
    fi
}
if [ -n "$isolate" ]; then
    echo "system tests run with these hidden (not installed by scripts/setup.sh): ${hide_dirs[*]}"
fi

# Phase 1 builds the images (cargo uses every core); phase 2 boots them,
# SYSTEST_JOBS at a time (default: one per core; QEMU runs each single-vCPU
# guest on one thread). Each test's console and harness output goes to
# build/systest-logs/NAME.log, printed when it fails.
summary=()
tests=()   # "NAME<TAB>command args..."
for dir in examples/*/; do
    example=$(basename "$dir")
    step "build: $example"
    start=$SECONDS
    make -s EXAMPLE="$example" MICROKIT_SDK="$sdk" image
    summary+=("$(printf '%-34s build %4ds' "$example" $((SECONDS - start)))")
    tests+=("$example	python3 scripts/systest.py $example")
done
# smp's default kernel is the 1-core debug one (docs/smp.md); it also runs,
# its vCPUs still on the VMM's core, on the 4-core smp-debug kernel.
if [ -d "$sdk/board/qemu_virt_aarch64/smp-debug" ]; then
    step "build: smp on the smp-debug kernel"
    start=$SECONDS
    make -s EXAMPLE=smp MICROKIT_CONFIG=smp-debug MICROKIT_SDK="$sdk" BUILD_DIR="$PWD/build/smp-smp-debug" image
    summary+=("$(printf '%-34s build %4ds' "smp (smp-debug)" $((SECONDS - start)))")
    tests+=("smp-smp-debug	python3 scripts/systest.py smp --build-dir build/smp-smp-debug --make-args MICROKIT_CONFIG=smp-debug")
fi
# The hostile-guest test (docs/testing.md): guest/hostile/ instead of Linux,
# 50 resets in each of simple and virtio; it builds into build/hostile-*.
tests+=("hostile-simple	python3 scripts/systest.py hostile-simple")
tests+=("hostile-virtio	python3 scripts/systest.py hostile-virtio")
# The sound guest on bare QEMU (docs/sound-guest.md): no VMM, QEMU's intel-hda.
tests+=("sound-guest-qemu	python3 scripts/sound-qemu-test.py")
# The other boards (board/*/, docs/porting.md), each where the SDK has it:
# one that runs in QEMU (QEMU_MACHINE_OPTS in its board.mk, e.g. the GICv3
# qemu_virt_aarch64_gicv3) boots every example it has a guest DTS for;
# hardware boards build them (a loader image), as there is no hardware here.
for dir in board/*/; do
    board=$(basename "$dir")
    [ "$board" = qemu_virt_aarch64 ] && continue
    if [ ! -d "$sdk/board/$board/debug" ]; then
        step "board $board skipped: the SDK at $sdk has no board $board (docs/porting.md)"
        continue
    fi
    qemu=$(sed -n 's/^QEMU_MACHINE_OPTS *:*= *//p' "$dir/board.mk")
    for dts in "$dir"*.dts; do
        example=$(basename "$dts" .dts)
        [ -d "examples/$example" ] || continue
        step "build: $example for $board"
        start=$SECONDS
        make -s BOARD="$board" EXAMPLE="$example" MICROKIT_SDK="$sdk" BUILD_DIR="$PWD/build/$example-$board" image
        test -s "build/$example-$board/loader.img"
        if [ -n "$qemu" ]; then
            summary+=("$(printf '%-34s build %4ds' "$example/$board" $((SECONDS - start)))")
            tests+=("$example-$board	python3 scripts/systest.py $example --board $board --build-dir build/$example-$board")
        else
            summary+=("$(printf '%-34s build %4ds  (no hardware: not booted)' "$example/$board" $((SECONDS - start)))")
        fi
    done
done
# The crate of docs/getting-started.md, out of tree, built and booted.
tests+=("getting-started	scripts/template-test.sh $sdk")

jobs_max=${SYSTEST_JOBS:-$(nproc)}
logs=build/systest-logs
rm -rf "$logs"; mkdir -p "$logs"
step "system tests: ${#tests[@]}, $jobs_max at a time (logs in $logs/)"
running=0
for t in "${tests[@]}"; do
    name=${t%%	*}; cmd=${t#*	}
    if [ "$running" -ge "$jobs_max" ]; then wait -n || true; running=$((running - 1)); fi
    echo "start: $name"
    (
        start=$SECONDS
        # shellcheck disable=SC2086 # cmd is a word list of our own
        if run_isolated $cmd >"$logs/$name.log" 2>&1; then r=PASS; else r=FAIL; fi
        echo "$r $((SECONDS - start))" >"$logs/$name.result"
        echo "$r: $name ($((SECONDS - start))s)"
    ) &
    running=$((running + 1))
done
wait
failed=()
for t in "${tests[@]}"; do
    name=${t%%	*}
    read -r r secs <"$logs/$name.result" || { r=FAIL; secs=0; }
    summary+=("$(printf '%-34s boot and checks %4ds  %s' "$name" "$secs" "$r")")
    [ "$r" = PASS ] || failed+=("$name")
done
for name in "${failed[@]}"; do
    step "FAILED: $name (last lines of $logs/$name.log)"
    tail -n 40 "$logs/$name.log"
done
step "summary"
printf '%s\n' "${summary[@]}"
echo "make test: ${SECONDS}s in all"
[ ${#failed[@]} -eq 0 ] || { echo "system tests failed: ${failed[*]}"; exit 1; }
