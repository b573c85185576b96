#!/usr/bin/env python3
"""Measures the virtio example's disk and console throughput in QEMU.

    scripts/bench-virtio.py [--mib N] [--runs R]

Boots `make EXAMPLE=virtio qemu` with a fresh disk image, then in the guest,
timed by busybox `time` (guest clock): a sequential write of N MiB to
/dev/vda with O_DIRECT-free dd + fsync, a sequential read of N MiB after
dropping the page cache, and 1 MiB written to hvc0 (which travels VMM ->
serial virtualiser -> PL011 driver -> QEMU's stdio). Prints MiB/s per run.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import systest  # noqa: E402


def timed(q, command, what):
    q.send(f"time sh -c '{command}'\n")
    m = q.expect(r"real\s+(\d+)m\s*([\d.]+)s", 600, what)
    q.expect(r"/ # ", 60, f"the prompt after {what}")
    return int(m.group(1)) * 60 + float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    log = os.path.join(systest.TOP, "build", "virtio", "bench.log")
    q = systest.Qemu("virtio", log, 1, systest.setup_virtio())
    results = []
    try:
        systest.linux_shell(q, 180)
        systest.run(q, "dmesg -n 1", r"")
        n = args.mib
        for r in range(args.runs):
            w = timed(q, f"dd if=/dev/zero of=/dev/vda bs=1M count={n} conv=fsync 2>/dev/null", "the write")
            systest.run(q, "echo 3 > /proc/sys/vm/drop_caches", r"")
            rd = timed(q, f"dd if=/dev/vda of=/dev/null bs=1M count={n} 2>/dev/null", "the read")
            c = timed(q, "head -c 1048576 /dev/zero | tr \"\\\\000\" x", "the console write")
            results.append((n / w, n / rd, 1 / c))
        q.send("poweroff -f\n")
        q.wait_exit(30)
    finally:
        q.kill()
    print()
    for i, (w, rd, c) in enumerate(results, 1):
        print(f"run {i}: /dev/vda write {w:.1f} MiB/s, read {rd:.1f} MiB/s; hvc0 {c * 1024:.0f} KiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
