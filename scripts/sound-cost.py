#!/usr/bin/env python3
"""Measures what playing sound costs: the virtio-snd chain against idle, and
against Linux's own HDA driver on bare QEMU.

    scripts/sound-cost.py [--targets chain,bare] [--modes icount,plain]
                          [--seconds 5] [--out build/sound-cost]   (modes: icount, split, plain)

Targets:

  chain  the `virtio_sound` example: the sound guest behind the VMM's
         virtio-snd, sound_virt and the HDA driver PD, QEMU's intel-hda
  bare   the same guest kernel and initrd straight on QEMU (EL1, no seL4),
         playing through Linux's snd_hda_intel on the same intel-hda card
         (as scripts/sound-qemu-test.py)

In each, at the guest's shell, two windows of the same guest:

  idle   `sleep SECONDS` between two console markers
  play   `sndplay -t 0 play SECONDS` (48 kHz, 16-bit stereo, 4 periods of
         1024 frames), from its `SND OPEN` line to its `SND PLAY OK` line,
         whose elapsed_ms (the guest's clock, first write to the end of the
         drain) is the window's length

Modes:

  icount  `-icount shift=0,align=off,sleep=off` and scripts/uartsplit.c
          without ranges (as scripts/bench.py; --plugin-src takes the team's
          shared/bench/plugin/uartmark.c instead, with the same counts):
          the instructions executed at every PL011 data register store, so
          every console marker gets the instruction count of the whole
          machine (seL4, every PD, the guest). Per second of the window; with
          shift=0 the virtual CPU runs 10^9 instructions per second of guest
          time, so instructions / 10^9 per second is the share of the CPU
          used. Exact run to run: no host timing enters.
  split   (chain only) as icount, with scripts/uartsplit.c instead: one
          instruction count per code address range, taken from the ELF
          files: the VMM's text, the two sound PDs' (sound_virt and
          hda_driver are linked at the same addresses, so they share a
          count), the seL4 kernel's window, the guest kernel's half of the
          address space, and the rest (the guest's user programs, the
          Microkit monitor). Its total is the icount mode's.
  plain   no icount, no plugin: QEMU's host CPU time (utime + stime of its
          process, /proc/PID/stat) per host second of the window. Depends on
          the host.

Prints one table (and writes it to OUT/sound-cost.md). Logs and WAV files
go to OUT. Standard library only.
"""
import argparse
import os
import re
import select
import shlex
import struct
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PLUGIN_SRC = os.path.join(TOP, "scripts", "uartsplit.c")
UART_DR = 0x9000000
GUEST = os.path.join(TOP, "build", "sound-guest")
PROMPT = rb"/ # "


class Qemu:
    """QEMU with its console on a pipe, every byte kept (byte k of stdout is
    the k-th PL011 store: the plugin's record k)."""

    def __init__(self, cmd, log):
        self.buf = bytearray()
        self.pos = 0
        self.log = open(log, "wb")
        self.times = []   # (buffer length, host CPU seconds of QEMU) after each read
        print("# " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, start_new_session=True)
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick

    def expect(self, pattern, timeout):
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("timeout waiting for %r" % pattern)
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if ready:
                data = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not data:
                    raise RuntimeError("QEMU exited waiting for %r" % pattern)
                self.log.write(data)
                self.log.flush()
                self.buf += data
                self.times.append((len(self.buf), self.cpu(), time.monotonic()))

    def at(self, offset):
        """QEMU's host CPU seconds and the host time when byte `offset` was read."""
        for n, cpu, t in self.times:
            if n > offset:
                return cpu, t
        raise RuntimeError("no read covers byte %d" % offset)

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def build_plugin(out_dir, src):
    out = os.path.join(out_dir, os.path.basename(src).replace(".c", ".so").replace("uart", "libuart"))
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall",
                        "-o", out, src], check=True)
    return out


def chain_command(out, wav):
    """The virtio_sound example's QEMU line, from the Makefile (built first)."""
    args = ["make", "-s", "-C", TOP, "EXAMPLE=virtio_sound", "BUILD_DIR=%s" % os.path.join(out, "chain"),
            "WAV=%s" % wav]
    subprocess.run(args + ["image"], check=True, stdout=sys.stderr)
    dry = subprocess.run(args + ["-n", "qemu"], check=True, stdout=subprocess.PIPE, text=True).stdout
    line = [x for x in dry.splitlines() if x.startswith("qemu-system-aarch64 ")][-1]
    return shlex.split(line)


def bare_command(wav):
    return ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a53", "-m", "512M",
            "-nographic", "-nic", "none", "-serial", "mon:stdio",
            "-kernel", os.path.join(GUEST, "Image"), "-initrd", os.path.join(GUEST, "rootfs.cpio.gz"),
            "-append", "console=ttyAMA0", "-icount", "shift=0,align=off,sleep=off",
            "-device", "intel-hda", "-device", "hda-output,audiodev=snd0,mixer=off",
            "-audiodev", "wav,id=snd0,path=%s,out.frequency=48000" % wav]


def text_ranges(path):
    """(low, high) of each executable LOAD segment of an ELF64 file."""
    with open(path, "rb") as f:
        elf = f.read()
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    out = []
    for i in range(phnum):
        ptype, flags, _, vaddr, _, _, memsz = struct.unpack_from("<IIQQQQQ", elf, phoff + i * phentsize)
        if ptype == 1 and flags & 1:
            out.append((vaddr, vaddr + memsz))
    return out


def split_ranges(out):
    """The split mode's buckets: [(name, low, high)]; the rest is 'other'."""
    sdk = os.environ.get("MICROKIT_SDK", "/opt/microkit-sdk")
    chain = os.path.join(out, "chain")
    pds = text_ranges(os.path.join(chain, "sound_virt.elf")) + text_ranges(os.path.join(chain, "hda_driver.elf"))
    vmm = text_ranges(os.path.join(chain, "vmm.elf"))
    sel4 = []
    for config in ("release", "debug"):
        elf = os.path.join(sdk, "board", "qemu_virt_aarch64", config, "elf", "sel4.elf")
        if os.path.exists(elf):
            sel4 = text_ranges(elf)
            break
    if len(vmm) != 1 or not pds or len(sel4) != 1:
        raise RuntimeError("unexpected text segments: vmm %s, PDs %s, seL4 %s" % (vmm, pds, sel4))
    lo, hi = min(r[0] for r in pds), max(r[1] for r in pds)
    if lo < vmm[0][1] and vmm[0][0] < hi:
        raise RuntimeError("the VMM's text overlaps the sound PDs'")
    return [("VMM", *vmm[0]), ("sound_virt + hda_driver", lo, hi), ("seL4 kernel", *sel4[0]),
            ("guest kernel", 0xffff000000000000, 0xffffffffffffffff)]


def strip_icount(cmd):
    out = []
    skip = False
    for c in cmd:
        if skip:
            skip = False
        elif c == "-icount":
            skip = True
        else:
            out.append(c)
    return out


def measure(a, target, mode):
    out = a.out
    wav = os.path.join(out, "%s-%s.wav" % (target, mode))
    cmd = chain_command(out, wav) if target == "chain" else bare_command(wav)
    marks = os.path.join(out, "%s-%s.uartmark" % (target, mode))
    ranges = split_ranges(out) if mode == "split" else []
    if mode in ("icount", "split"):
        if "-icount" not in cmd:
            raise RuntimeError("the QEMU line has no -icount")
        plugin = a.plugin if mode == "icount" else a.split_plugin
        cmd += ["-plugin", "%s,out=%s,addr=%#x" % (plugin, marks, UART_DR) +
                "".join(",range=%x:%x" % (lo, hi) for _, lo, hi in ranges)]
    else:
        cmd = strip_icount(cmd)
    q = Qemu(cmd, os.path.join(out, "%s-%s.log" % (target, mode)))
    try:
        q.expect(rb"^GUEST READY", 300)
        q.expect(PROMPT, 60)
        # Once after boot, the chain's guest runs about 160 M instructions
        # of one-off work during its first command (bare QEMU's does not):
        # a warm-up sleep keeps it out of the windows.
        q.send("sleep 2\n")
        q.expect(PROMPT, 60)
        # The markers come from the shell's expansion, not from its echo of the line.
        q.send("M=WINDOW; echo $M-IDLE-START; sleep %d; echo $M-IDLE-END\n" % a.seconds)
        idle = (q.expect(rb"^WINDOW-IDLE-START", 60).start(),
                q.expect(rb"^WINDOW-IDLE-END", 60 + 10 * a.seconds).start())
        q.expect(PROMPT, 30)
        q.send("sndplay -t 0 play %d\n" % a.seconds)
        start = q.expect(rb"^SND OPEN ", 60).start()
        m = q.expect(rb"^SND (PLAY OK|\S+ FAIL|PLAY XRUN)[^\r\n]*\r?\n", 60 + 10 * a.seconds)
        if m.group(1) != b"PLAY OK":
            raise RuntimeError("sndplay: %s" % m.group(0).decode())
        elapsed = int(re.search(rb"elapsed_ms (\d+)", m.group(0)).group(1)) / 1000
        play = (start, m.start())
        q.expect(PROMPT, 30)
        q.send("poweroff -f\n")
        time.sleep(2)
    finally:
        q.stop()
    res = {}
    if mode == "split":
        with open(marks, "rb") as f:
            raw = f.read()
        k = len(ranges) + 1
        rec = [struct.unpack_from("<%dQ" % k, raw, i * 8 * k) for i in range(len(raw) // (8 * k))]
        if len(rec) < play[1]:
            raise RuntimeError("%d UART stores for %d console bytes" % (len(rec), len(q.buf)))
        os.unlink(marks)
        names = [n for n, _, _ in ranges] + ["other"]
        for name, (s, e), secs in (("idle", idle, a.seconds), ("play", play, elapsed)):
            res[name] = {n: (rec[e][i] - rec[s][i]) / secs for i, n in enumerate(names)}
    elif mode == "icount":
        with open(marks, "rb") as f:
            raw = f.read()
        counts = struct.unpack("<%dQ" % (len(raw) // 8), raw)
        if len(counts) < play[1]:
            raise RuntimeError("%d UART stores for %d console bytes" % (len(counts), len(q.buf)))
        os.unlink(marks)
        res["idle"] = (counts[idle[1]] - counts[idle[0]]) / a.seconds
        res["play"] = (counts[play[1]] - counts[play[0]]) / elapsed
    else:
        for name, (s, e) in (("idle", idle), ("play", play)):
            (c0, t0), (c1, t1) = q.at(s), q.at(e)
            res[name] = (c1 - c0) / (t1 - t0)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="chain,bare")
    ap.add_argument("--modes", default="icount")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(TOP, "build", "sound-cost"))
    ap.add_argument("--plugin-src", default=PLUGIN_SRC)
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)
    modes = a.modes.split(",")
    if "icount" in modes:
        a.plugin = build_plugin(a.out, a.plugin_src)
    if "split" in modes:
        a.split_plugin = build_plugin(a.out, os.path.join(TOP, "scripts", "uartsplit.c"))
    rows = []
    split = []
    for target in a.targets.split(","):
        for mode in modes:
            if mode == "split" and target != "chain":
                continue
            r = measure(a, target, mode)
            if mode == "split":
                for n in r["idle"]:
                    i, p = r["idle"][n], r["play"][n]
                    split.append("| %s | %.2f | %.2f | %.2f |" % (n, i / 1e6, p / 1e6, (p - i) / 1e6))
                print("\n".join(split), flush=True)
                continue
            if mode == "icount":
                cost = r["play"] - r["idle"]
                rows.append("| %s | icount | %.1f M insn/s (%.1f %%) | %.1f M insn/s (%.1f %%) | "
                            "%.1f M insn per s of audio (%.1f %% of the CPU) |"
                            % (target, r["idle"] / 1e6, r["idle"] / 1e7, r["play"] / 1e6, r["play"] / 1e7,
                               cost / 1e6, cost / 1e7))
            else:
                rows.append("| %s | plain | %.0f %% of a host core | %.0f %% | %.0f points |"
                            % (target, 100 * r["idle"], 100 * r["play"], 100 * (r["play"] - r["idle"])))
            print(rows[-1], flush=True)
    table = ("| target | mode | idle | playing | playing - idle |\n|---|---|---|---|---|\n"
             + "\n".join(rows) + "\n")
    if split:
        table += ("\n| chain, by code address (M insn/s) | idle | playing | playing - idle |\n"
                  "|---|---|---|---|\n" + "\n".join(split) + "\n")
    with open(os.path.join(a.out, "sound-cost.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
