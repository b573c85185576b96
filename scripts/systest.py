#!/usr/bin/env python3
"""Boots an example in QEMU and checks what it prints (standard library only).

    scripts/systest.py EXAMPLE [--timeout-scale N]
    scripts/systest.py getting-started --dir DIR [--make-args VAR=VALUE ...]

`getting-started` boots the crate of docs/getting-started.md built in DIR
(scripts/template-test.sh makes it) with `make -C DIR ... qemu`.

Every wait has a timeout; QEMU is always killed at the end. Each example's
scenario is a function below; it fails with a message naming the line that
did not appear, and the whole console log is kept in build/EXAMPLE/systest.log.
"""
import argparse
import os
import re
import select
import signal
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Failure(Exception):
    pass


class Qemu:
    """QEMU with the console on a pipe: expect() output, send() input.

    Console output is kept as bytes. Each read is searched once, plus a small
    overlap with what came before, so the cost is linear in the output
    whatever its size: a pattern must match within WINDOW bytes (longer
    spans use capture()).
    """

    WINDOW = 4096

    def __init__(self, make_dir, make_args, log_path, scale):
        self.scale = scale
        self.buf = bytearray()
        self.pos = 0  # how far expect() has consumed self.buf
        self.eof = False  # QEMU closed its output
        self.log = open(log_path, "wb")
        self.waits = []  # (seconds waited, seconds allowed, what) of each expect()
        cmd = ["make", "-s", "-C", make_dir, *make_args, "qemu"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def _read(self, deadline):
        """Appends what QEMU printed within the deadline; False at EOF or the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
        if not ready:
            return True
        data = os.read(self.proc.stdout.fileno(), 1 << 16)
        if not data:
            self.eof = True
            return False
        data = data.replace(b"\r", b"")
        self.log.write(data)
        self.log.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        self.buf += data
        return True

    def _failure(self, what, timeout):
        state = "QEMU exited" if self.proc.poll() is not None else f"timeout {timeout * self.scale:.0f}s"
        return Failure(f"{what} did not appear ({state})")

    def expect(self, pattern, timeout, what=None):
        """Waits for `pattern` (a str regex, multi-line mode) after the last
        match; returns the match, with groups as str."""
        began = time.monotonic()
        deadline = began + timeout * self.scale
        regex = re.compile(pattern.encode(), re.M)
        start = self.pos
        while True:
            m = regex.search(self.buf, start)
            if m:
                self.pos = m.end()
                self.waits.append((time.monotonic() - began, timeout * self.scale, what or pattern))
                return _Match(m)
            # Nothing up to here: next time, search only the new data and
            # the last WINDOW bytes before it.
            start = max(self.pos, len(self.buf) - self.WINDOW)
            if not self._read(deadline):
                raise self._failure(repr(what or pattern), timeout)

    def capture(self, begin, end, timeout, what, stall=60):
        """Waits for the literal markers `begin` then `end`; returns the bytes
        between them. Linear in the amount captured. Fails when no byte
        arrives for `stall` seconds, or after `timeout` seconds in all: a slow
        host only makes it take longer."""
        deadline = time.monotonic() + timeout * self.scale
        self.expect(re.escape(begin), timeout, f"{what} (its start marker)")
        first = self.pos
        marker = end.encode()
        start = first
        seen, progress = len(self.buf), time.monotonic()
        while True:
            at = self.buf.find(marker, start)
            if at >= 0:
                self.pos = at + len(marker)
                return bytes(self.buf[first:at])
            start = max(first, len(self.buf) - len(marker) + 1)
            now = time.monotonic()
            if len(self.buf) > seen:
                seen, progress = len(self.buf), now
            elif now - progress > stall * self.scale:
                raise Failure(f"{what!r}: no output for {stall * self.scale:.0f}s "
                              f"after {len(self.buf) - first} bytes")
            if not self._read(min(deadline, progress + stall * self.scale + 1)):
                if time.monotonic() < deadline and not self.eof:
                    continue  # the stall check above decides
                raise self._failure(f"{what!r} ({len(self.buf) - first} bytes so far)", timeout)

    def margins(self, count=3):
        """The `count` waits that came closest to their timeouts, as text: a
        timeout should be several times what its step takes on an idle host,
        as CI boots two guests per core-pair and may run on a slower one."""
        tight = sorted(self.waits, key=lambda w: w[0] / w[1], reverse=True)[:count]
        return "; ".join(f"{what!r} {took:.1f}s of {allowed:.0f}s" for took, allowed, what in tight)

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout * self.scale
        while self._read(deadline):  # until EOF (QEMU closed its output) or the deadline
            pass
        try:
            return self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise Failure(f"QEMU still running after {timeout * self.scale:.0f}s") from None

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


class _Match:
    """A bytes regex match whose groups read as str."""

    def __init__(self, m):
        self.m = m

    def group(self, *args):
        g = self.m.group(*args)
        return g.decode("utf-8", "replace") if isinstance(g, bytes) else g


def scenario_hello(q):
    q.expect(r"MON\|INFO: Microkit Monitor started!", 60, "the Microkit monitor")
    q.expect(r"SERVER\|INFO\|core: server ready", 10)
    q.expect(r"SERVER\|INFO\|core: notification from the client", 10, "the notification")
    q.expect(r"CLIENT\|INFO\|core: protected call: 20 \+ 22 = 42", 10, "the protected-call result")
    q.expect(r"CLIENT\|INFO\|core: server notified back: hello test passed", 10)


def linux_shell(q, boot_timeout):
    """Waits for the guest's marker and its shell prompt."""
    q.expect(r"^GUEST READY", boot_timeout, "the guest's GUEST READY marker")
    q.expect(r"/ # ", 30, "the guest shell prompt")


def run(q, command, expect, timeout=30, what=None):
    """Types `command` into the guest shell and waits for `expect`."""
    q.send(command + "\n")
    q.expect(expect, timeout, what or f"output of {command!r}")
    q.expect(r"/ # ", timeout, f"the prompt after {command!r}")


def scenario_simple(q):
    q.expect(r"VMM\|INFO\|boot: booting Linux \(boot 1\)", 120, "the VMM booting Linux")
    q.expect(r"Switched to clocksource arch_sys_counter", 120, "the arch_sys_counter clocksource")
    linux_shell(q, 120)
    run(q, "uname -a", r"Linux \S+ \S+ .* aarch64")
    run(q, "cat /proc/interrupts", r"arch_timer[\s\S]*uart-pl011")
    # reboot -f: PSCI SYSTEM_RESET; the VMM boots the guest again.
    q.send("reboot -f\n")
    q.expect(r"VMM\|INFO\|boot: booting Linux \(boot 2\)", 60, "the second boot after reboot -f")
    linux_shell(q, 120)
    run(q, "uname -r", r"\d+\.\d+")
    # poweroff -f: PSCI SYSTEM_OFF, forwarded to the firmware: QEMU exits.
    q.send("poweroff -f\n")
    q.expect(r"guest powered off \(PSCI SYSTEM_OFF\)", 30, "the VMM seeing SYSTEM_OFF")
    q.wait_exit(30)


def scenario_getting_started(q):
    """The VMM of docs/getting-started.md, out of tree, with the examples' guest."""
    q.expect(r"VMM\|INFO\|boot: booting Linux \(boot 1\)", 120, "the VMM booting Linux")
    linux_shell(q, 120)
    run(q, "uname -m", r"^aarch64$")
    q.send("poweroff -f\n")
    q.expect(r"guest powered off \(PSCI SYSTEM_OFF\)", 30, "the VMM seeing SYSTEM_OFF")
    q.wait_exit(30)


def smp_boot(q, boot):
    """One boot of the smp example: 4 vCPUs up, then the shell."""
    q.expect(rf"VMM\|INFO\|boot: booting Linux \(boot {boot}\)", 120, f"the VMM booting Linux (boot {boot})")
    for cpu in 1, 2, 3:
        q.expect(rf"VMM\|INFO\|psci: CPU_ON vCPU {cpu} ", 300, f"PSCI CPU_ON of vCPU {cpu} (boot {boot})")
    # No "smp: " prefix: a VMM log line may split the console line there.
    q.expect(r"Brought up 1 node, 4 CPUs", 300, f"all 4 CPUs up (boot {boot})")
    linux_shell(q, 300)


# Per-CPU IPI counts: the sum of every IPI line of /proc/interrupts, per CPU.
IPI_SUM = ("awk '/^ *IPI/ { for (i = 2; i <= 5; i++) s[i] += $i } "
           "END { print \"IPIS\", s[2], s[3], s[4], s[5], \"END\" }' /proc/interrupts")
# One busy loop per CPU, each pinned with taskset (a CPU mask); each prints
# the CPU it ran on (field 39 of /proc/self/stat, of a child that inherits
# the mask).
BUSY = ("for c in 0 1 2 3; do taskset $((1 << c)) sh -c "
        "'i=0; while [ $i -lt 3000 ]; do i=$((i + 1)); done; "
        "echo BUSY $0 done on cpu $(cut -d\" \" -f39 /proc/self/stat)' $c & done; wait; echo BUSY ALL")


def scenario_smp(q):
    """4 vCPUs: boot, nproc, IPIs on every CPU, a pinned busy loop per CPU,
    CPU 3 offline and online again, reboot, poweroff."""
    smp_boot(q, 1)
    run(q, "nproc", r"^4$", what="nproc saying 4")
    q.send(IPI_SUM + "\n")
    m = q.expect(r"IPIS (\d+) (\d+) (\d+) (\d+) END", 30, "the per-CPU IPI counts")
    counts = [int(m.group(i)) for i in range(1, 5)]
    print(f"\nsystest smp: IPIs per CPU {counts}", flush=True)
    if not all(counts):
        raise Failure(f"a CPU counted no IPI: {counts}")
    q.expect(r"/ # ", 30, "the prompt after the IPI counts")
    q.send(BUSY + "\n")
    seen = set()
    for _ in range(4):
        m = q.expect(r"BUSY (\d) done on cpu (\d+)", 300, "a pinned busy loop finishing")
        if m.group(1) != m.group(2):
            raise Failure(f"the loop pinned to CPU {m.group(1)} ran on CPU {m.group(2)}")
        seen.add(m.group(1))
    q.expect(r"BUSY ALL", 60, "all busy loops done")
    if seen != {"0", "1", "2", "3"}:
        raise Failure(f"busy loops finished on CPUs {sorted(seen)}")
    # CPU hotplug: PSCI CPU_OFF, then CPU_ON.
    q.send("echo 0 > /sys/devices/system/cpu/cpu3/online\n")
    q.expect(r"VMM\|INFO\|psci: CPU_OFF vCPU 3", 60, "PSCI CPU_OFF of vCPU 3")
    run(q, "cat /sys/devices/system/cpu/online", r"^0-2$", what="CPUs 0-2 online")
    q.send("echo 1 > /sys/devices/system/cpu/cpu3/online\n")
    q.expect(r"VMM\|INFO\|psci: CPU_ON vCPU 3 ", 60, "PSCI CPU_ON of vCPU 3 again")
    run(q, "cat /sys/devices/system/cpu/online", r"^0-3$", what="CPUs 0-3 online")
    run(q, "nproc", r"^4$", what="nproc saying 4 after CPU 3 came back")
    # reboot -f: PSCI SYSTEM_RESET; all 4 CPUs come up again.
    q.send("reboot -f\n")
    smp_boot(q, 2)
    run(q, "nproc", r"^4$", what="nproc saying 4 after reboot")
    # poweroff -f: PSCI SYSTEM_OFF, forwarded to the firmware: QEMU exits.
    q.send("poweroff -f\n")
    q.expect(r"guest powered off \(PSCI SYSTEM_OFF\)", 60, "the VMM seeing SYSTEM_OFF")
    q.wait_exit(30)

# The virtio example: a fresh disk image for each run, checked after QEMU exits.
VIRTIO_DISK = os.path.join(TOP, "build", "virtio", "systest-disk.img")  # main() moves it to --build-dir
DISK_PATTERN_BYTES = 4 << 20
# Through hvc0, byte-exact. 256 KiB: the console runs at 5-20 KiB/s in QEMU
# TCG (a VMM round trip per 16-byte hvc write), so 1 MiB alone took minutes.
CONSOLE_BYTES = 256 << 10


def pattern(size):
    """What `seq 1 700000 | head -c SIZE` prints in the guest."""
    out = "".join(f"{i}\n" for i in range(1, 700001)).encode()
    assert len(out) >= size
    return out[:size]


def scenario_virtio(q):
    # No bus= on QEMU's command line: the device is in the last free slot.
    q.expect(r"BLK_DRIVER\|INFO\|blk: virtio-blk: slot \d+ of 32", 180, "the block driver's slot scan")
    q.expect(r"BLK_DRIVER\|INFO\|blk: virtio-blk: 64 MiB", 60, "the block driver finding the disk")
    q.expect(r"VMM\|INFO\|boot: booting Linux \(boot 1\)", 60, "the VMM booting Linux")
    q.expect(r"virtio_blk virtio1: \[vda\] 131072 512-byte logical blocks", 120, "/dev/vda (64 MiB)")
    linux_shell(q, 120)
    run(q, "dmesg -n 1; cat /sys/class/tty/console/active", r"hvc0", what="hvc0 as the console")
    # About 30 s of guest CPU on an idle host (busybox seq formats each line
    # with printf), and the first step after boot: CI runs two guests at a time.
    run(q, f"seq 1 700000 | head -c {DISK_PATTERN_BYTES} > /tmp/pat; wc -c < /tmp/pat",
        rf"^{DISK_PATTERN_BYTES}$", 300)
    # Write the pattern, flush (conv=fsync: VIRTIO_BLK_T_FLUSH), drop the
    # page cache so the read really comes from the disk, compare.
    run(q, "dd if=/tmp/pat of=/dev/vda bs=1M conv=fsync 2>&1 | tail -1", r"^4\+0 records out", 120, "dd to /dev/vda")
    run(q, "echo 3 > /proc/sys/vm/drop_caches; "
           f"dd if=/dev/vda bs=1M count={DISK_PATTERN_BYTES >> 20} 2>/dev/null | cmp - /tmp/pat && echo DISK-""VERIFY-OK",
        r"^DISK-VERIFY-OK$", 120, "the pattern read back from /dev/vda")
    # CONSOLE_BYTES through hvc0 with output processing off (no \n -> \r\n), between
    # markers the typed command itself does not contain.
    q.send("stty -opost; echo BEGIN-""CONSOLE; "
           f"head -c {CONSOLE_BYTES} /tmp/pat; echo END-""CONSOLE; stty opost\n")
    # Bounded by a stall timeout, not by the host's speed.
    got = q.capture("BEGIN-CONSOLE\n", "END-CONSOLE", 1800, "the console transfer", stall=60)
    want = pattern(CONSOLE_BYTES)
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise Failure(f"console: {len(got)} bytes arrived, {len(want)} sent; first difference at byte {at}: "
                      f"{got[at:at + 20]!r} vs {want[at:at + 20]!r}")
    print(f"\n[systest] console: {len(got)} bytes arrived byte-exact", flush=True)
    q.expect(r"/ # ", 30, "the prompt after the console transfer")
    q.send("poweroff -f\n")
    q.expect(r"guest powered off \(PSCI SYSTEM_OFF\)", 30, "the VMM seeing SYSTEM_OFF")
    q.wait_exit(30)
    with open(VIRTIO_DISK, "rb") as f:
        disk = f.read(DISK_PATTERN_BYTES)
    if disk != pattern(DISK_PATTERN_BYTES):
        raise Failure("the host disk image does not hold the pattern the guest wrote")
    print(f"[systest] host disk image holds the {DISK_PATTERN_BYTES >> 20} MiB pattern", flush=True)


def setup_virtio(_extra):
    """A fresh, zeroed 64 MiB disk image; returns the make arguments."""
    os.makedirs(os.path.dirname(VIRTIO_DISK), exist_ok=True)
    with open(VIRTIO_DISK, "wb") as f:
        f.truncate(64 << 20)
    return [f"DISK={VIRTIO_DISK}"]


SETUP = {"virtio": setup_virtio}


# The sound example: QEMU records the HDA card's output here (main() moves it
# to --build-dir); scripts/check-wav.py checks it once QEMU has exited.
SOUND_WAV = os.path.join(TOP, "build", "sound", "systest.wav")


def setup_sound(_extra):
    # QEMU's wav backend does not create the directory (a fresh tree has none).
    os.makedirs(os.path.dirname(SOUND_WAV), exist_ok=True)
    if os.path.exists(SOUND_WAV):
        os.remove(SOUND_WAV)
    return [f"WAV={SOUND_WAV}"]


SETUP["sound"] = setup_sound


def scenario_sound(q):
    # example.mk puts the card in slot 2: INTA swizzles to SPI 5 (interrupt 37).
    q.expect(r"HDA_DRIVER\|INFO\|hda: 8086:2668 at 00:02\.0, INTA", 60, "the driver finding intel-hda on PCI")
    q.expect(r"HDA_DRIVER\|INFO\|hda: BAR0: 16 KiB at 0x10000000", 10, "BAR0 placed in hda_regs")
    q.expect(r"HDA_DRIVER\|INFO\|hda: interrupt 37 on channel 2", 10, "slot 2's INTA routed to interrupt 37")
    q.expect(r"HDA_DRIVER\|INFO\|hda: codec 0: pin 3 <- DAC 2", 10, "the codec walk (hda-output: pin 3, DAC 2)")
    q.expect(r"HDA_DRIVER\|INFO\|hda: serving sDDF sound stream 0", 10, "the driver serving its sDDF queues")
    # sound_client plays the counter through sound_virt in two runs
    # (START, STOP, START, STOP): the driver reports each drained STOP. (The
    # driver answers a STOP once its buffers have played, before the drain's
    # silence, so the client may start run 1 before run 0's stop line.)
    start = q.pos
    q.expect(r"SOUND_CLIENT\|INFO\|snd: run 0", 30, "the client starting run 0")
    for run in range(2):
        m = q.expect(r"HDA_DRIVER\|INFO\|hda: stopped: (\d+) periods played \((\d+) ms\) in (\d+) ms "
                     r"of wall clock, (\d+) interrupts, (\d+) underruns", 60, f"the driver's stop line (run {run})")
        periods, nominal, took, irqs, underruns = (int(m.group(i)) for i in range(1, 6))
        print(f"\n[systest] run {run}: {periods} periods ({nominal} ms nominal) in {took} ms of the card's "
              f"wall clock, {irqs} interrupts in all", flush=True)
        if underruns:
            raise Failure(f"{underruns} underruns")
    m = q.expect(r"SOUND_CLIENT\|INFO\|snd: done: 48000 frames in 2 runs, (\d+) buffers answered, (\d+) failures",
                 30, "the client's done line")
    if not re.search(rb"SOUND_CLIENT\|INFO\|snd: run 1", bytes(q.buf[start:q.pos])):
        raise Failure("the client never started run 1")
    # Run 0: 4 buffers before START, sent again after it, and 20 more; run 1
    # (after a STOP, no replay): 24.
    if (int(m.group(1)), int(m.group(2))) != (4 + 24 + 24, 0):
        raise Failure(f"the client had {m.group(1)} buffers answered (want 52) and {m.group(2)} failures")
    # How long it took is printed, not checked (example.mk runs QEMU with
    # -icount, so it is guest time; a test must not depend on the host).
    # The recording below is the check.
    q.send("\x01x")  # QEMU's monitor (Ctrl-a x): a clean exit finishes the WAV file
    q.wait_exit(30)
    check = subprocess.run([sys.executable, os.path.join(TOP, "scripts", "check-wav.py"), SOUND_WAV,
                            "--signal", "counter16", "--frames", "48000", "--max-silence", "0.5",
                            "--allow-gaps"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(check.stdout, end="", flush=True)
    if check.returncode != 0:
        raise Failure(f"the recording {SOUND_WAV} is not the counter: {check.stdout.strip()}")

# The hostile-guest test (docs/testing.md): guest/hostile/ instead of Linux,
# 50 resets, then a final boot with every check. SETUP builds the guest and
# the VMM image into their own directories (build/hostile-*, and its own cargo
# target directory, so other builds of the examples are not disturbed); its
# EXAMPLE= comes after main()'s EXAMPLE=hostile-* on make's command line and wins.
HOSTILE_RESETS = 50
HOSTILE_GUEST = os.path.join(TOP, "build", "hostile-guest")


SETUP["virtio-sound"] = setup_sound


def check_recording(seconds, *args):
    """scripts/check-wav.py on SOUND_WAV (QEMU has exited): the counter24
    signal, `seconds` long."""
    check = subprocess.run([sys.executable, os.path.join(TOP, "scripts", "check-wav.py"), SOUND_WAV,
                            "--signal", "counter24", "--seconds", str(seconds), *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(check.stdout, end="", flush=True)
    if check.returncode != 0:
        raise Failure(f"the recording {SOUND_WAV} is not the counter: {check.stdout.strip()}")


# virtio_sound's counters: the playback cut by `reboot -f`, and the rebooted
# guest's (the guests' counter24 signal has 24 bits; the first 16 s play 0..).
SOUND_ODD_PERIOD = 2_000_000
SOUND_BIG_PERIOD = 3_000_000
SOUND_CUT = 4_000_000
SOUND_REBOOTED = 1 << 23


def sndplay(q, cmd, problems, opened="", when=""):
    """Runs sndplay `cmd` at the guest's shell and waits for its prompt; a
    first underrun or a final line other than PLAY OK goes to `problems`.
    `opened`: a regex its SND OPEN line must go on with (the geometry)."""
    q.send(cmd + "\n")
    q.expect(r"SND OPEN /dev/snd/pcmC0D0p rate 48000" + opened, 30, f"{cmd}{when}: opening the PCM")
    m = q.expect(r"SND (XRUN underrun[^\r\n]*|PLAY OK[^\r\n]*|PLAY XRUN[^\r\n]*|\S+ FAIL[^\r\n]*)\r?\n",
                 120, f"{cmd}{when}: its first underrun or final line")
    if not m.group(1).startswith("PLAY OK"):
        problems.append(f"{cmd}{when}: SND {m.group(1)}")
    q.expect(r"/ # ", 60, f"the prompt after {cmd}")


def scenario_virtio_sound(q):
    # The card is probed with the driver's stream (48 kHz, 16-bit stereo
    # playback) behind it, then guest/sndplay plays 10 s of the counter
    # through the whole chain (virtio-snd -> VMM -> sound_virt -> hda_driver
    # -> QEMU's intel-hda, recorded): no underrun, its OK line, and the
    # recording whole and in order.
    q.expect(r"VMM\|INFO\|boot: booting Linux \(boot 1\)", 120, "the VMM booting Linux")
    q.expect(r"^SOUND CARD ", 180, "the guest's SOUND CARD line")
    linux_shell(q, 60)
    run(q, "cat /sys/bus/virtio/devices/*/device", r"0x0019", what="the virtio-snd device id")
    run(q, "cat /proc/asound/cards", r"VirtIO SoundCard at platform/160000\.virtio_mmio",
        what="the virtio-snd card")
    # sndplay's default geometry (4 periods of 1024 frames); -t 250: silence
    # before the drain (docs/sound-guest.md). Then start/stop/start: 3
    # cycles of 2 s, the counter going on.
    problems = []
    for cmd in ("sndplay -t 250 play 10", "sndplay -t 250 -c 3 -f 480000 play 2"):
        sndplay(q, cmd, problems)
    # Other geometries, 3 s each, checked for gaps: a guest period that does
    # not divide the card's (1000 frames against 256: the driver must not
    # pad periods with silence between buffers), and what aplay gets by
    # default (4 periods of 40 ms: Linux's virtio-snd offers buffers of at
    # most 160 ms; messages of 7680 bytes, two pieces each).
    for period, first in ((1000, SOUND_ODD_PERIOD), (1920, SOUND_BIG_PERIOD)):
        sndplay(q, f"sndplay -t 250 -p {period} -f {first} play 3", problems, rf" period {period} ")
    # reboot -f in the middle of a playback: the VMM's reset must bring the stream back
    # through the virtualiser and the driver, so that the rebooted guest
    # plays again, from counter 2^23.
    q.send(f"sndplay -f {SOUND_CUT} play 10 & sleep 2; reboot -f\n")
    q.expect(r"SND OPEN /dev/snd/pcmC0D0p rate 48000", 30, "the background sndplay opening the PCM")
    q.expect(r"guest reset \(PSCI SYSTEM_RESET\)", 60, "the VMM seeing SYSTEM_RESET")
    q.expect(r"VMM\|INFO\|boot: booting Linux \(boot 2\)", 60, "the VMM booting Linux again")
    m = q.expect(r"^SOUND CARD ([^\r\n]*)", 180, "the rebooted guest's SOUND CARD line")
    if "none" in m.group(1):
        problems.append(f"after the reboot: SOUND CARD {m.group(1)}")
    linux_shell(q, 60)
    sndplay(q, f"sndplay -t 250 -f {SOUND_REBOOTED} play 2", problems, when=" (after the reboot)")
    q.send("poweroff -f\n")
    q.expect(r"guest powered off \(PSCI SYSTEM_OFF\)", 30, "the VMM seeing SYSTEM_OFF")
    q.wait_exit(30)
    if problems:
        raise Failure("; ".join(problems))
    # The recording, one segment at a time: 10 s, then 3 x 2 s with silence
    # between the cycles; the 3 s of 1000- and of 1920-frame periods, each
    # without a gap; the playback the reboot cut, whole and in order up to
    # where it stops; the rebooted guest's 2 s.
    check_recording(16, "--allow-gaps", "--until", str(SOUND_ODD_PERIOD))
    check_recording(3, "--start", str(SOUND_ODD_PERIOD), "--ignore-before", "--until", str(SOUND_BIG_PERIOD))
    check_recording(3, "--start", str(SOUND_BIG_PERIOD), "--ignore-before", "--until", str(SOUND_CUT))
    check_recording(10, "--start", str(SOUND_CUT), "--ignore-before", "--until", str(SOUND_REBOOTED),
                    "--may-end-early")
    check_recording(2, "--start", str(SOUND_REBOOTED), "--ignore-before")


def hostile_setup(example, extra=(), board_args=()):
    build_dir = os.path.join(TOP, "build", f"hostile-{example}")
    args = [f"EXAMPLE={example}", f"LINUX={HOSTILE_GUEST}/Image-{example}",
            f"INITRD={HOSTILE_GUEST}/empty.initrd", f"BUILD_DIR={build_dir}",
            f"CARGO_TARGET_DIR={os.path.join(TOP, 'build', 'hostile-cargo')}", *extra, *board_args]
    for cmd in (["make", "-s", "-C", os.path.join(TOP, "guest", "hostile"), f"O={HOSTILE_GUEST}"],
                ["make", "-s", "-C", TOP, *args, "image"]):
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"systest hostile-{example}: FAIL: {' '.join(cmd)} failed")
    return args


def setup_hostile_simple(board_args):
    return hostile_setup("simple", board_args=board_args)


def setup_hostile_virtio(board_args):
    disk = os.path.join(TOP, "build", "hostile-virtio", "disk.img")  # fresh: the boot counter starts at 0
    os.makedirs(os.path.dirname(disk), exist_ok=True)
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    return hostile_setup("virtio", [f"DISK={disk}"], board_args)


SETUP.update({"hostile-simple": setup_hostile_simple, "hostile-virtio": setup_hostile_virtio})


def hostile_run(q, virtio):
    """Boots 1 to 51: each must start clean and print its RESULT line; boot 1
    runs every hostile check, boots 2-50 a short round, boot 51 everything
    plus the interrupt checks, then powers off. Simple mode: the harness
    types the boot's mode ('a', 'r', 'f') on the PL011; virtio mode: the guest
    counts its boots on the disk, which must agree with the VMM's count."""
    fails = {}
    final = HOSTILE_RESETS + 1
    for n in range(1, final + 1):
        start = q.pos
        q.expect(rf"VMM\|INFO\|boot: booting Linux \(boot {n}\)", 120, f"boot {n}")
        mode = "f" if n == final else "a" if n == 1 else "r"
        # 8 s on an idle host (virtio: the guest reads its disk first).
        q.expect(r"HOSTILE boot IAR:", 120, f"boot {n}: the guest's first lines")
        if virtio:
            m = q.expect(r"HOSTILE boot (\d+) \(disk counter\): mode (\w)", 120, f"boot {n}: the disk counter")
            if int(m.group(1)) != n or m.group(2) != mode:
                raise Failure(f"boot {n}: the guest counted boot {m.group(1)} (mode {m.group(2)}) on the disk")
        else:
            q.expect(r"HOSTILE command\?", 120, f"boot {n}: the guest asking for its mode")
            q.send(mode)
        if n == final and not virtio:
            q.expect(r"HOSTILE press a key", 60, "the PL011 RX interrupt prompt")
            q.send("k")
        m = q.expect(r"HOSTILE RESULT (PASS|FAIL)", 90, f"boot {n}: the guest's RESULT line")
        if n < final:
            q.expect(r"guest reset \(PSCI SYSTEM_RESET\)", 120, f"boot {n}: the VMM seeing SYSTEM_RESET")
        for line in re.findall(rb"HOSTILE FAIL [^\n]*", bytes(q.buf[start:q.pos])):
            fails.setdefault(line.decode("utf-8", "replace"), []).append(n)
        print(f"\n[systest] boot {n} (mode {mode}): {m.group(1)}", flush=True)
    q.expect(r"guest powered off \(PSCI SYSTEM_OFF\)", 30, "the VMM seeing SYSTEM_OFF")
    q.wait_exit(30)
    crashes = re.findall(rb"^\S*\|PANIC[^\n]*|^MON\|ERROR[^\n]*", bytes(q.buf), re.M)
    if crashes or fails:
        lines = [c.decode("utf-8", "replace") for c in crashes[:5]]
        lines += [f"{line} (boots {b[0]}..{b[-1]}, {len(b)} times)" if len(b) > 1 else f"{line} (boot {b[0]})"
                  for line, b in fails.items()]
        raise Failure("the hostile guest's checks failed:\n  " + "\n  ".join(lines))


def scenario_hostile_simple(q):
    hostile_run(q, virtio=False)


def scenario_hostile_virtio(q):
    hostile_run(q, virtio=True)

# multi_vm (docs/multi_vm.md): two guests on one console, each line
# labelled "[vmN] " (coloured: ESC[3Xm ... ESC[0m), input switched with
# Ctrl-\ N Enter; one disk with a GPT, partition N being guest N's /dev/vda;
# vsock between CID 3 (guest 1) and CID 4 (guest 2).
MULTI_VM_DISK = os.path.join(TOP, "build", "multi_vm", "systest-disk.img")
MULTI_VM_PART_BYTES = 60 << 20
MULTI_VM_PARTS = [(1 << 20) + i * MULTI_VM_PART_BYTES for i in range(2)]  # scripts/mkdisk.py's layout
MULTI_VM_STREAM = "64M"


# A result line of vsock-test: a whole OK line ends with the checksum (the
# line's newline may come after other output: the VMM holds console bytes
# back while the guest runs, and PD logs go straight to the console).
VSOCK_OK = r"OK \d+ bytes [\d.]+ MiB/s fnv [0-9a-f]{16}"
VSOCK_SEND = rf"VSOCK SEND ({VSOCK_OK}|FAIL [^\n]*?(?:\(errno \d+\)|\n))"
VSOCK_RECV = rf"VSOCK RECV ({VSOCK_OK}|FAIL [^\n]*?(?:\(errno \d+\)|\n))"


def vm_line(n, text):
    """A regex for a console line of guest n that holds `text` (a regex; after
    the prompt, say, for output of a job in the background)."""
    return rf"^(?:\x1b\[\d+m)?\[vm{n}\] (?:\x1b\[0m)?[^\n]*?{text}"


def vm_switch(q, n):
    """Sends input to guest n from now on (the RX virtualiser's switch sequence)."""
    q.send(f"\x1c{n}\r")


def vm_run(q, n, command, expect, timeout=60, what=None):
    """Types `command` into guest n's shell and waits for its line `expect`."""
    vm_switch(q, n)
    q.send(command + "\n")
    return q.expect(vm_line(n, expect), timeout, what or f"vm{n}: output of {command!r}")


def vm_pattern(n, size):
    """What `yes vmN-data | head -c SIZE` writes."""
    line = f"vm{n}-data\n".encode()
    return (line * (size // len(line) + 1))[:size]


def multi_vm_boot(q, n, timeout=240):
    q.expect(vm_line(n, "GUEST READY"), timeout, f"guest {n}'s GUEST READY")


def scenario_multi_vm(q):
    # (The VMMs' own log lines go to the kernel's debug console a character
    # at a time and may interleave: the guests' lines are what is matched.)
    # The two guests boot side by side: wait for both, in whichever order.
    seen = set()
    while len(seen) < 2:
        m = q.expect(vm_line(r"([12])", "GUEST READY"), 300, "both guests' GUEST READY")
        seen.add(m.group(1))
    time.sleep(2)
    for n in (1, 2):
        vm_run(q, n, "dmesg -n 1; echo VM$((0+" + str(n) + "))-ALIVE > /tmp/alive; cat /tmp/alive", rf"VM{n}-ALIVE")
        size = MULTI_VM_PART_BYTES >> 9
        vm_run(q, n, "cat /sys/block/vda/size", rf"{size}$", what=f"vm{n}: /dev/vda is its 60 MiB partition")
    # Each guest writes its pattern at the start and at the end of its
    # /dev/vda; a write past the end fails.
    for n in (1, 2):
        vm_run(q, n, f"yes vm{n}-data | head -c 1048576 > /tmp/p; "
                     "dd if=/tmp/p of=/dev/vda bs=1M conv=fsync 2>&1 | tail -1",
               r"1\+0 records out", 120, f"vm{n}: pattern written")
        last = MULTI_VM_PART_BYTES // 4096 - 1
        vm_run(q, n, f"dd if=/tmp/p of=/dev/vda bs=4096 count=1 seek={last} conv=fsync 2>&1 | tail -1",
               r"1\+0 records out", 60, f"vm{n}: last block written")
        vm_run(q, n, f"dd if=/tmp/p of=/dev/vda bs=4096 count=1 seek={last + 1} conv=fsync 2>&1 "
                     "| grep -q 'No space left\\|I/O error\\|Invalid' && echo PAST-END-""REFUSED",
               r"PAST-END-REFUSED", 60, f"vm{n}: a write past its partition refused")
    # vsock: 64 MiB each way, checked byte by byte, then 100 connections.
    vm_run(q, 2, "vsock-test cid", r"VSOCK CID 4", what="guest 2's CID")
    vm_run(q, 2, "vsock-test serve 1234 &", r"VSOCK SERVE listening on port 1234")
    vm_run(q, 1, "vsock-test cid", r"VSOCK CID 3", what="guest 1's CID")
    m = vm_run(q, 1, f"vsock-test send 4 1234 {MULTI_VM_STREAM}", VSOCK_SEND, 1800,
               "64 MiB from guest 1 to guest 2")
    if not m.group(1).startswith("OK"):
        raise Failure(f"vsock send: {m.group(1)}")
    print(f"\n[systest] vsock 1 -> 2: {m.group(1)}", flush=True)
    m = vm_run(q, 1, f"vsock-test recv 4 1234 {MULTI_VM_STREAM}", VSOCK_RECV, 1800,
               "64 MiB from guest 2 to guest 1")
    if not m.group(1).startswith("OK"):
        raise Failure(f"vsock recv: {m.group(1)}")
    print(f"\n[systest] vsock 2 -> 1: {m.group(1)}", flush=True)
    m = vm_run(q, 1, "vsock-test cycles 4 1234 100", r"VSOCK (CYCLES OK 100|[A-Z]+ FAIL[^\n]*)", 600,
               "100 connect/send/close cycles")
    if "FAIL" in m.group(1):
        raise Failure(f"vsock cycles: {m.group(1)}")
    vm_run(q, 1, "vsock-test send 4 9 1K", r"VSOCK SEND FAIL connect \(errno 104\)", 60,
           "a connection to a closed port refused (ECONNRESET)")
    vm_run(q, 1, "vsock-test send 7 9 1K", r"VSOCK SEND FAIL connect \(errno \d+\)", 60,
           "a connection to an unknown CID refused")
    # Guest 1 reboots while guest 2 sends to it: guest 2's connection ends
    # with an error, then a new connection works.
    vm_run(q, 1, "vsock-test serve 1235 &", r"VSOCK SERVE listening on port 1235")
    vm_switch(q, 2)
    q.send("vsock-test send 3 1235 4G\n")
    time.sleep(5)
    vm_switch(q, 1)
    q.send("reboot -f\n")
    m = q.expect(vm_line(2, VSOCK_SEND), 120, "guest 2's transfer ending when guest 1 reboots")
    if not m.group(1).startswith("FAIL"):
        raise Failure(f"the transfer to a rebooting guest did not fail: {m.group(1)}")
    print(f"\n[systest] guest 2 saw: {m.group(1)}", flush=True)
    multi_vm_boot(q, 1)
    time.sleep(2)
    vm_run(q, 1, "dmesg -n 1; vsock-test serve 1235 &", r"VSOCK SERVE listening on port 1235")
    m = vm_run(q, 2, "vsock-test send 3 1235 1M", VSOCK_SEND, 300, "a new connection after the reboot")
    if not m.group(1).startswith("OK"):
        raise Failure(f"vsock after reboot: {m.group(1)}")
    vm_run(q, 2, "cat /tmp/alive", r"VM2-ALIVE", what="guest 2 never rebooted")
    # Guest 1 powers off alone; guest 2 runs on; then guest 2 powers off.
    vm_switch(q, 1)
    q.send("poweroff -f\n")
    q.expect(r"VMM1\|.*guest powered off \(PSCI SYSTEM_OFF\)", 60, "vmm1 seeing guest 1's SYSTEM_OFF")
    vm_run(q, 2, "echo STILL-""HERE", r"STILL-HERE", what="guest 2 running after guest 1's poweroff")
    vm_switch(q, 2)
    q.send("poweroff -f\n")
    q.expect(r"VMM2\|.*guest powered off \(PSCI SYSTEM_OFF\)", 60, "vmm2 seeing guest 2's SYSTEM_OFF")
    q.kill()
    with open(MULTI_VM_DISK, "rb") as f:
        disk = f.read()
    want = bytearray(len(disk))
    # The partition table: the protective MBR, GPT header and entries at the
    # start, their backup at the end (scripts/mkdisk.py wrote them).
    want[:34 * 512] = disk[:34 * 512]
    want[-33 * 512:] = disk[-33 * 512:]
    for n, start in enumerate(MULTI_VM_PARTS, 1):
        p = vm_pattern(n, 1 << 20)
        want[start:start + len(p)] = p
        end = start + MULTI_VM_PART_BYTES
        want[end - 4096:end] = p[:4096]
    if disk != want:
        at = next(i for i in range(len(disk)) if disk[i] != want[i])
        raise Failure(f"the disk image differs from what the guests wrote in their partitions at byte {at:#x}: "
                      f"{disk[at:at + 16]!r}, expected {bytes(want[at:at + 16])!r}")
    print("[systest] disk image: each guest's writes inside its own partition, nothing elsewhere", flush=True)


def setup_multi_vm(extra):
    """A fresh 128 MiB disk with a GPT and two 60 MiB partitions (the
    example's own default is an MBR; both are parsed by the same code, and
    the host tests cover both)."""
    os.makedirs(os.path.dirname(MULTI_VM_DISK), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(TOP, "scripts", "mkdisk.py"), MULTI_VM_DISK,
                    "--size", "128M", "--table", "gpt", "--parts", "60M,60M"], check=True)
    return [f"DISK={MULTI_VM_DISK}", "SERIAL_COLOUR=1"]


SETUP["multi-vm"] = setup_multi_vm


SCENARIOS = {name[len("scenario_"):].replace("_", "-"): f
             for name, f in globals().items() if name.startswith("scenario_")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Scenario names use dashes; an example's own name (multi_vm) works too.
    ap.add_argument("example", type=lambda e: e.replace("_", "-"), choices=sorted(SCENARIOS))
    ap.add_argument("--timeout-scale", type=float, default=float(os.environ.get("SYSTEST_TIMEOUT_SCALE", 1)),
                    help="multiply every timeout (slow machines)")
    ap.add_argument("--dir", help="getting-started: the directory of the crate to boot")
    ap.add_argument("--make-args", nargs="*", default=[], help="more make variables (VAR=VALUE)")
    ap.add_argument("--board", help="BOARD= (default: the Makefile's, qemu_virt_aarch64)")
    ap.add_argument("--build-dir", help="BUILD_DIR= for the images and the log (default build/<example>)")
    args = ap.parse_args()
    global VIRTIO_DISK, MULTI_VM_DISK, SOUND_WAV
    extra = [f"BOARD={args.board}"] if args.board else []
    name = args.example.replace("-", "_")
    if not os.path.isdir(os.path.join(TOP, "examples", name)):
        name = args.example  # hostile-*, getting-started
    build_dir = os.path.join(TOP, "build", name)
    if args.build_dir:
        build_dir = os.path.abspath(args.build_dir)
        extra.append(f"BUILD_DIR={build_dir}")
        VIRTIO_DISK = os.path.join(build_dir, "systest-disk.img")
        MULTI_VM_DISK = os.path.join(build_dir, "systest-disk.img")
        SOUND_WAV = os.path.join(build_dir, "systest.wav")
    log_path = os.path.join(build_dir, "systest.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    if args.example == "getting-started":
        if not args.dir:
            ap.error("getting-started needs --dir")
        make_dir, make_args = args.dir, args.make_args
    else:
        make_dir = TOP
        make_args = [f"EXAMPLE={name}", *(SETUP[args.example](extra) if args.example in SETUP else []),
                     *extra, *args.make_args]
    q = Qemu(make_dir, make_args, log_path, args.timeout_scale)
    start = time.monotonic()
    try:
        SCENARIOS[args.example](q)
    except Failure as e:
        print(f"\nsystest {args.example}: FAIL after {time.monotonic() - start:.1f}s: {e} (log: {log_path})",
              flush=True)
        return 1
    finally:
        q.kill()
    print(f"\nsystest {args.example}: PASS in {time.monotonic() - start:.1f}s", flush=True)
    print(f"systest {args.example}: closest to their timeouts: {q.margins()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
