#!/usr/bin/env python3
"""Builds the Linux examples and measures them in QEMU against bare QEMU.

    scripts/bench.py [--config debug] [--config release] [--targets ...]
                     [--modes icount,plain] [--no-build] [--markdown FILE]

Targets (each one QEMU run per mode):

  simple       `simple` (PL011 passed through): reset -> GUEST READY
  virtio       the `virtio` example: reset -> GUEST READY, then in its shell
               1 MiB to /dev/hvc0, 32 MiB O_DIRECT write and read of
               /dev/vda (bs=1M), 1024 x 4 KiB O_DIRECT writes and reads
  bare         the same guest kernel and initrd on QEMU directly (EL1, no
               seL4, 256 MiB): reset -> GUEST READY with simple's command line
  bare-virtio  bare QEMU with a virtio console (to a host file) and a virtio
               disk, the console on the PL011: the virtio figures' floor

Modes:

  icount  `-icount shift=0` plus a TCG plugin that records the instructions
          executed (all levels: seL4, PDs, guest) at every store to the PL011
          data register. Console byte k of QEMU's stdout is record k, so every
          console marker gets an instruction count. Exact run to run, except
          block I/O (QEMU finishes requests in host time).
  plain   no icount, no plugin: host seconds between console markers.

The plugin is built at bench time into the build directory from
scripts/uartsplit.c, which with no ranges records the instruction count at
every UART store as the team harness's uartmark.c does (--plugin-src
../shared/bench/plugin/uartmark.c takes that one instead; the counts are the
same). Images go to build/bench-[TAG]<config>-<example>, cargo output to
build/bench-cargo/<config>. The guest images come from build/guest
(scripts/guest-images.sh). Standard library only.
"""
import argparse
import json
import os
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "build")
GUEST = os.path.join(BUILD, "guest")
PLUGIN_SRC = os.path.join(TOP, "scripts", "uartsplit.c")
UART_DR = 0x9000000
# Bare QEMU gets the command lines of the examples' device trees.
SIMPLE_ARGS = "earlycon=pl011,0x9000000 earlyprintk=serial debug loglevel=8"
PROMPT = rb"/ # "
DISK_MIB = 64

# Console markers of a boot (regex, first match counts).
MARKERS = {
    "vmm": rb"^[A-Za-z0-9_]*VMM[A-Za-z0-9_]*\|",
    "boot1": rb"booting Linux \(boot 1\)",
    "linux": rb"Booting Linux on physical CPU",
    "ready": rb"GUEST READY",
}

# Guest benchmarks: name -> (shell command, bytes moved, timeout seconds).
def guest_benches(con_kib, blk_mib, con_dev):
    direct = "dd if=%s of=%s bs=%s count=%d %s 2>/dev/null"
    return [
        ("con", "dd if=/tmp/con.dat of=%s bs=4096 2>/dev/null" % con_dev, con_kib * 1024, 1800),
        ("blk_write", direct % ("/dev/zero", "/dev/vda", "1M", blk_mib, "oflag=direct"),
         blk_mib << 20, 600),
        ("blk_read", direct % ("/dev/vda", "/dev/null", "1M", blk_mib, "iflag=direct"),
         blk_mib << 20, 600),
        ("blk_write4k", direct % ("/dev/zero", "/dev/vda", "4096", 1024, "oflag=direct"),
         4 << 20, 600),
        ("blk_read4k", direct % ("/dev/vda", "/dev/null", "4096", 1024, "iflag=direct"),
         4 << 20, 600),
    ]


class Qemu:
    """QEMU on pipes: every chunk of console output gets its host arrival time."""

    def __init__(self, cmd, log_path, limit):
        self.buf = bytearray()
        self.times = []  # (end offset of a chunk, host seconds since start)
        self.t0 = time.monotonic()
        self.log = open(log_path + ".stderr", "wb")
        self.log_path = log_path
        self.proc = subprocess.Popen(["timeout", "-k", "5", str(limit)] + cmd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, start_new_session=True)
        self.eof = False

    def _pump(self, until):
        left = until - time.monotonic()
        if left <= 0 or self.eof:
            return False
        ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
        if ready:
            data = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not data:
                self.eof = True
                return False
            self.buf += data
            self.times.append((len(self.buf), time.monotonic() - self.t0))
        return True

    def expect(self, regex, timeout, start):
        """First match of regex at/after offset start, waiting up to timeout s."""
        r = re.compile(regex, re.M)
        until = time.monotonic() + timeout
        pos = start
        while True:
            m = r.search(self.buf, pos)
            if m:
                return m
            pos = max(start, len(self.buf) - 256)
            if not self._pump(until):
                m = r.search(self.buf, pos)
                if m:
                    return m
                raise TimeoutError("no %r within %ds" % (regex, timeout))

    def time_at(self, offset):
        """Host seconds at which the byte at offset arrived."""
        for end, t in self.times:
            if end > offset:
                return t
        return None

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        with open(self.log_path, "wb") as f:
            f.write(self.buf)
        self.log.close()


def run_command(q, cmd, timeout):
    """Types cmd into the guest shell between two markers; returns the console
    span (start, end) of the command's own output. The typed line shows
    `$((2*21))` literally, only the executed echo prints 42.

    The guest sleeps 10 ms after the start marker: a console may hold its
    output until the guest idles (the virtio example's hvc0 coalesces until
    the next WFI or timer tick), so without the sleep the marker could reach
    the UART only some way into the command, and the span would miss the
    command's start. The sleep is all idle (with `-icount sleep=off` QEMU
    skips the time), so it adds the same few instructions to every target."""
    start = len(q.buf)
    q.send("echo BS$((2*21)); read -t 0.01 _; %s; echo BE$((2*21)) $?\n" % cmd)
    s = q.expect(rb"BS42\r?\n", 60, start)
    e = q.expect(rb"BE42 (\d+)", timeout, s.end())
    q.expect(PROMPT, 60, e.end())
    if e.group(1) != b"0":
        raise RuntimeError("guest command failed (%s): %s" % (e.group(1).decode(), cmd))
    return s.end() - 1, e.start()


def uartmark_counts(path, nbytes):
    """The plugin's records: instructions at each UART byte, or None if they
    cannot be matched with the console bytes one to one."""
    with open(path, "rb") as f:
        raw = f.read()
    v = list(struct.unpack("<%dQ" % (len(raw) // 8), raw))
    if v and v[-1] >> 63:
        v.pop()
    if len(v) < nbytes:
        print("warning: %d UART stores for %d console bytes" % (len(v), nbytes), file=sys.stderr)
    return v if len(v) >= nbytes else None


def qemu_command(a, target, image, disk, hvc_out, plugin_out):
    board = parse_board(a.board)
    cmd = [a.qemu]
    if target.startswith("bare"):
        cmd += ["-machine", "virt", "-cpu", board["QEMU_CPU"], "-m", "256M",
                "-kernel", os.path.join(GUEST, "Image"),
                "-initrd", os.path.join(GUEST, "rootfs.cpio.gz"), "-append", SIMPLE_ARGS]
    else:
        cmd += ["-machine", board["QEMU_MACHINE_OPTS"], "-cpu", board["QEMU_CPU"], "-m", "2G",
                "-device", "loader,file=%s,addr=0x70000000,cpu-num=0" % image]
    cmd += ["-nographic", "-serial", "mon:stdio", "-nic", "none"]
    if target == "bare-virtio":
        cmd += ["-device", "virtio-serial-device", "-chardev", "file,id=hvc,path=%s" % hvc_out,
                "-device", "virtconsole,chardev=hvc"]
    if disk:
        cmd += ["-global", "virtio-mmio.force-legacy=false",
                "-drive", "file=%s,if=none,format=raw,id=hd" % disk,
                "-device", "virtio-blk-device,drive=hd"]
    for arg in a.qemu_arg:
        cmd += shlex.split(arg)
    if plugin_out:
        cmd += ["-icount", "shift=0,align=off,sleep=off",
                "-plugin", "%s,out=%s,addr=%#x" % (a.plugin, plugin_out, UART_DR)]
    return cmd


def parse_board(board):
    vals = {}
    with open(os.path.join(TOP, "board", board, "board.mk")) as f:
        for line in f:
            m = re.match(r"^(\w+)\s*:?=\s*(.*?)\s*$", line)
            if m:
                vals[m.group(1)] = m.group(2)
    return vals


def measure(a, config, target, mode):
    """One QEMU run; returns {figure: {"insn": M, "s": seconds}}."""
    out_dir = os.path.join(BUILD, "bench-%s%s-%s" % (a.tag, config, target))
    os.makedirs(out_dir, exist_ok=True)
    image = os.path.join(out_dir, "loader.img")
    has_devices = target in ("virtio", "bare-virtio")
    disk = os.path.join(out_dir, "bench-disk.img") if has_devices else None
    if disk:
        with open(disk, "wb") as f:
            f.truncate(DISK_MIB << 20)
    hvc_out = os.path.join(out_dir, "bench-hvc.out")
    plugin_out = os.path.join(out_dir, "bench-%s.uartmark" % mode) if mode == "icount" else None
    cmd = qemu_command(a, target, image, disk, hvc_out, plugin_out)
    log = os.path.join(out_dir, "bench-%s.log" % mode)
    print("# " + " ".join(shlex.quote(x) for x in cmd), file=sys.stderr, flush=True)
    q = Qemu(cmd, log, a.limit)
    spans, offsets = {}, {}
    try:
        ready = q.expect(MARKERS["ready"], a.boot_timeout, 0)
        for name, rx in MARKERS.items():
            m = re.search(rx, q.buf[:ready.end()], re.M)
            if m:
                offsets[name] = m.start()
        if has_devices:
            q.expect(PROMPT, 60, ready.end())
            time.sleep(1)
            con_dev = "/dev/hvc0"
            run_command(q, "dmesg -n 1; yes 0123456789abcdef0123456789abcdef0123456789abcdef"
                        "0123456789abcde | head -c %d > /tmp/con.dat" % (a.con_kib * 1024), 120)
            for name, cmd_, _, limit in guest_benches(a.con_kib, a.blk_mib, con_dev):
                if name.startswith("blk"):
                    run_command(q, "sync; echo 3 > /proc/sys/vm/drop_caches", 60)
                spans[name] = run_command(q, cmd_, limit)
            q.send("poweroff -f\n")
            time.sleep(1)
    finally:
        q.stop()
    res = {}
    t = {k: q.time_at(v) for k, v in offsets.items()}
    res["boot"] = {"s": t.get("ready")}
    if "vmm" in t:
        res["to_vmm"] = {"s": t["vmm"]}
    if "linux" in t:
        res["to_linux"] = {"s": t["linux"]}
    if "vmm" in t and "boot1" in t:
        res["vmm_boot"] = {"s": t["boot1"] - t["vmm"]}
    for name, (s, e) in spans.items():
        res[name] = {"s": q.time_at(e) - q.time_at(s)}
    if plugin_out:
        counts = uartmark_counts(plugin_out, len(q.buf))
        os.unlink(plugin_out)
        if counts is None:
            print("warning: %s: console bytes do not match UART stores" % target, file=sys.stderr)
        else:
            res["boot"]["insn"] = counts[offsets["ready"]] / 1e6
            for fig, mark in (("to_vmm", "vmm"), ("to_linux", "linux")):
                if mark in offsets:
                    res[fig]["insn"] = counts[offsets[mark]] / 1e6
            if "vmm" in offsets and "boot1" in offsets:
                res["vmm_boot"]["insn"] = (counts[offsets["boot1"]] - counts[offsets["vmm"]]) / 1e6
            for name, (s, e) in spans.items():
                res[name]["insn"] = (counts[e] - counts[s]) / 1e6
    return res


def build(a, config, example):
    out_dir = os.path.join(BUILD, "bench-%s%s-%s" % (a.tag, config, example))
    cmd = ["make", "-s", "-C", TOP, "BOARD=%s" % a.board, "EXAMPLE=%s" % example,
           "MICROKIT_CONFIG=%s" % config, "BUILD_DIR=%s" % out_dir,
           "CARGO_TARGET_DIR=%s" % os.path.join(BUILD, "bench-cargo", config), "image"]
    print("# " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def build_plugin(a):
    name = os.path.splitext(os.path.basename(a.plugin_src))[0]
    out = os.path.join(BUILD, "bench-plugin", "lib%s.so" % name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(a.plugin_src):
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall",
                        "-o", out, a.plugin_src], check=True)
    return out


FIGURES = [
    ("boot", "reset -> `GUEST READY`", "s"),
    ("to_vmm", "... of which reset -> first VMM line (loader, seL4, initialiser)", "s"),
    ("vmm_boot", "... of which first VMM line -> `booting Linux (boot 1)`", "s"),
    ("to_linux", "... of which reset -> Linux's first line (earlycon: `simple`, bare)", "s"),
    ("con", "%(con_kib)d KiB written to hvc0", "KiB/s"),
    ("blk_write", "%(blk_mib)d MiB sequential write, 1 MiB O_DIRECT", "MiB/s"),
    ("blk_read", "%(blk_mib)d MiB sequential read, 1 MiB O_DIRECT", "MiB/s"),
    ("blk_write4k", "1024 x 4 KiB O_DIRECT writes", "IOPS"),
    ("blk_read4k", "1024 x 4 KiB O_DIRECT reads", "IOPS"),
]


def combine(runs):
    """The median of each figure over `runs` (measure() results), with the
    lowest and highest value of each key under `<key>_range` when there are
    several runs."""
    out = {}
    for fig in sorted({f for r in runs for f in r}):
        for key in ("insn", "s"):
            vals = sorted(r[fig][key] for r in runs if r.get(fig, {}).get(key) is not None)
            if not vals:
                continue
            n = len(vals)
            median = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
            out.setdefault(fig, {})[key] = median
            if n > 1:
                out[fig][key + "_range"] = [vals[0], vals[-1]]
    return out


def cell(r, fig, key, a):
    v = r.get(fig, {}).get(key)
    if v is None:
        return "-"
    if key == "insn":
        spread = r[fig].get("insn_range")
        if spread and spread[1] - spread[0] >= 0.05:
            return "%.1f M (%.1f-%.1f)" % (v, spread[0], spread[1])
        return "%.1f M" % v
    rate = {"KiB/s": a.con_kib * 1.0, "MiB/s": float(a.blk_mib), "IOPS": 1024.0}
    unit = dict((f, u) for f, _, u in FIGURES)[fig]
    if unit in rate and v > 0:
        return "%.2f s (%.1f %s)" % (v, rate[unit] / v, unit)
    return "%.2f s" % v


def table(a, results, config):
    """Markdown: one row per figure; bare QEMU beside the example that has it."""
    head = "| figure (%s) | bare QEMU insn | ours insn | bare QEMU wall | ours wall |" % config
    lines = [head, "|---|---|---|---|---|"]
    for fig, label, _ in FIGURES:
        for ours, bare in (("simple", "bare"), ("virtio", "bare-virtio")):
            if fig in ("con",) or fig.startswith("blk"):
                if ours == "simple":
                    continue
            o = results.get((config, ours), {})
            # Bare QEMU does not depend on the Microkit configuration.
            b = results.get((config, bare)) or next(
                (r for (c, t), r in sorted(results.items()) if t == bare), {})
            if not any(r.get(m, {}).get(fig) for r in (o, b) for m in ("icount", "plain")):
                continue
            name = label % vars(a)
            if fig in ("boot", "to_vmm", "vmm_boot", "to_linux"):
                name += ", `%s`" % ours
            lines.append("| %s | %s | %s | %s | %s |" % (
                name, cell(b.get("icount", {}), fig, "insn", a), cell(o.get("icount", {}), fig, "insn", a),
                cell(b.get("plain", {}), fig, "s", a), cell(o.get("plain", {}), fig, "s", a)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", action="append", help="Microkit config(s) (default: debug)")
    ap.add_argument("--targets", default="simple,virtio,bare,bare-virtio")
    ap.add_argument("--modes", default="icount,plain")
    ap.add_argument("--board", default="qemu_virt_aarch64")
    ap.add_argument("--qemu", default="qemu-system-aarch64")
    ap.add_argument("--no-build", action="store_true", help="use the images already built")
    ap.add_argument("--qemu-arg", action="append", default=[],
                    help="more QEMU arguments (shell-split; repeatable), e.g. -device loader,...")
    ap.add_argument("--tag", default="", help="images and logs in build/bench-TAG<config>-<target>")
    ap.add_argument("--plugin-src", default=PLUGIN_SRC)
    ap.add_argument("--con-kib", type=int, default=1024)
    ap.add_argument("--blk-mib", type=int, default=32)
    ap.add_argument("--boot-timeout", type=int, default=600)
    ap.add_argument("--limit", type=int, default=3600, help="hard limit per QEMU run (s)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each target and mode N times; the table shows the median, and the "
                    "lowest and highest instruction counts where they differ (block figures move "
                    "by a few M between runs: QEMU completes requests in host time)")
    ap.add_argument("--json", help="append the results to this file (one JSON line per run)")
    ap.add_argument("--markdown", help="also write the table(s) to this file")
    ap.add_argument("--from-json", metavar="FILE", help="no runs: print the table of the results "
                    "in FILE (lines written by --json; later lines win)")
    a = ap.parse_args()
    configs = a.config or ["debug"]
    targets = [t for t in a.targets.split(",") if t]
    modes = [m for m in a.modes.split(",") if m]
    results = {}
    if a.from_json:
        with open(a.from_json) as f:
            for line in f:
                r = json.loads(line)
                results.setdefault((r["config"], r["target"]), {})[r["mode"]] = r["res"]
        configs = a.config or sorted({c for c, _ in results})
        print("\n\n".join(table(a, results, c) for c in configs))
        return 0
    if "icount" in modes:
        a.plugin = build_plugin(a)
    for config in configs:
        for example in ("simple", "virtio"):
            if example in targets and not a.no_build:
                build(a, config, example)
        for target in targets:
            if target.startswith("bare") and config != configs[0]:
                results[(config, target)] = results[(configs[0], target)]
                continue
            for mode in modes:
                r = combine([measure(a, config, target, mode) for _ in range(max(a.repeat, 1))])
                results.setdefault((config, target), {})[mode] = r
                line = json.dumps({"config": config, "target": target, "mode": mode, "res": r})
                print(line, file=sys.stderr, flush=True)
                if a.json:
                    with open(a.json, "a") as f:
                        f.write(line + "\n")
    text = "\n\n".join(table(a, results, c) for c in configs)
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
