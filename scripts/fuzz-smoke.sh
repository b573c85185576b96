#!/usr/bin/env bash
# Fuzz smoke: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 30) each, from the
# seed corpus (fuzz/src/seeds.rs). Needs a nightly toolchain (`cargo +nightly`) and
# cargo-fuzz (`cargo install cargo-fuzz`); without them it says why and succeeds.
# A crash fails the script; libFuzzer leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-30}"

skip() { echo "fuzz smoke skipped: $*"; exit 0; }
cargo +nightly --version >/dev/null 2>&1 || skip "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz is not installed (cargo install cargo-fuzz)"

echo "== fuzz: seed corpus"
cargo +nightly test --release --quiet -- --include-ignored
targets=$(cargo +nightly fuzz list)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
    echo "== fuzz: $t (${seconds} s)"
    cargo +nightly fuzz build "$t" 2>&1 | grep -E '^(error|warning)' -A8 || true
    cargo +nightly fuzz build "$t" >/dev/null 2>&1 || { echo "FAIL: fuzz target $t does not build"; exit 1; }
    rc=0
    cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 60 "$log"
        echo "FAIL: fuzz target $t (exit $rc); the input is in fuzz/artifacts/$t/"
        exit 1
    fi
done
echo "fuzz smoke: $(echo $targets | wc -w) targets, ${seconds} s each, no crash"
