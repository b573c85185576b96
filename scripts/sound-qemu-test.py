#!/usr/bin/env python3
"""The sound guest on bare QEMU, without our VMM: plays, records, checks.

    scripts/sound-qemu-test.py [SCENARIO...] [--out DIR] [--timeout-scale N]

Boots the sound guest (scripts/sound-guest-images.sh) straight under
qemu-system-aarch64, with QEMU's Intel HDA controller and codec recording
into a WAV file (QEMU 7.2 has no virtio-snd device: the guest's
snd_hda_intel driver plays instead of virtio-snd), has guest/sndplay play
the counter signal, and checks the recording with scripts/check-wav.py. This
proves the player, the signal and the checker end to end; the VMM's
virtio-snd chain is then tested with the same guest, player and checker.

Scenarios (default: all):
  play      10 s of the signal, one stream: every frame, in order
  cycles    start/stop/start: 3 cycles of 2 s on one open stream, then 2
            more after reopening the device; the counter continues (10 s)
  reboot    `reboot -f` 3 s into a 10 s playback; the rebooted guest plays
            10 s from counter 2^23, which must be complete
  xrun      the player stopped (SIGSTOP) for 1 s in a 4 s playback: it must
            report the underrun (SND XRUN, exit status 3), and what it
            plays after it must be recorded whole
  nodevice  no sound card: the guest boots quietly, sndplay says so

QEMU runs with `-icount shift=0,align=off,sleep=off`: guest time counts
instructions and skips idle time, and QEMU's HDA codec and wav backend run
on that clock, so host load cannot starve the audio path (--realtime leaves
icount out: then a busy host can make QEMU's codec drop a whole 2048-frame
buffer, which the check reports). The guest plays with -t 250 (a quarter
second of silence before each drain): QEMU's codec drops what it still
buffers when the guest stops the stream at the end of a drain. Both are
QEMU behaviours, explained in docs/sound-guest.md.

Every wait has a timeout; QEMU is always killed at the end. Logs and WAV
files are kept in DIR (default build/sound-qemu-test). Standard library only.
"""
import argparse
import importlib.util
import os
import re
import select
import signal
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 48000
REBOOT_START = 1 << 23
# The shell's prompt; busybox's line editor then asks the terminal where the
# cursor is (ESC [ 6 n).
PROMPT = r'^/ # (\x1b\[6n)?'
# Kernel lines that must not appear (checked over the whole console log).
ALARMING = re.compile(rb'^.*(WARNING:|BUG:|Oops|Call trace|Kernel panic|'
                      rb'\b(error|failed|timeout)\b).*$', re.M | re.I)


class Failure(Exception):
    pass


class Qemu:
    """qemu-system-aarch64 with the console on a pipe."""

    def __init__(self, images, wav, log_path, scale, hda=True, icount=True):
        self.scale, self.buf, self.pos = scale, bytearray(), 0
        self.log = open(log_path, 'wb')
        cmd = ['qemu-system-aarch64', '-machine', 'virt', '-cpu', 'cortex-a53', '-m', '512M',
               '-nographic', '-nic', 'none', '-kernel', os.path.join(images, 'Image'),
               '-initrd', os.path.join(images, 'rootfs.cpio.gz'),
               '-append', 'console=ttyAMA0']
        if icount:
            cmd += ['-icount', 'shift=0,align=off,sleep=off']
        if hda:
            # mixer=off: no codec amplifiers, so the samples reach the file unscaled;
            # out.frequency: the wav backend's default is 44100 Hz (it would resample).
            cmd += ['-device', 'intel-hda', '-device', 'hda-output,audiodev=snd0,mixer=off',
                    '-audiodev', f'wav,id=snd0,path={wav},out.frequency={RATE}']
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def _read(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
        if ready:
            data = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not data:
                self.proc.wait()
                return False
            data = data.replace(b'\r', b'')
            self.log.write(data)
            self.log.flush()
            self.buf += data
        return True

    def expect(self, pattern, timeout):
        """Waits for regex `pattern` after the last match; returns the match.
        Output arrives in pieces: a pattern for a whole line ends in \\n."""
        deadline = time.monotonic() + timeout * self.scale
        regex = re.compile(pattern.encode(), re.M)
        while True:
            m = regex.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            if not self._read(deadline):
                rc = self.proc.poll()
                state = 'timeout' if rc is None else f'QEMU exited with status {rc}'
                raise Failure(f'{pattern!r} did not appear ({state})')

    def send(self, line):
        self.proc.stdin.write(line.encode() + b'\n')
        self.proc.stdin.flush()

    def command(self, command, timeout):
        """Types a shell command at the guest's next prompt; it then prints
        "CMD EXIT <status>" (see status())."""
        self.expect(PROMPT, timeout)
        self.send(f'{command}; echo "CMD EXIT $?"')

    def status(self, timeout):
        """The exit status of the last command()."""
        return int(self.expect(r'^CMD EXIT (\d+)\n', timeout).group(1))

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout * self.scale
        while self.proc.poll() is None and self._read(deadline):
            pass
        if self.proc.poll() is None:
            raise Failure('QEMU did not exit after poweroff')

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def play_line(q, timeout):
    """Waits for sndplay's verdict (no underrun, exit 0); returns its fields."""
    m = q.expect(r'^SND PLAY (OK|XRUN) (.*)\n', timeout)
    fields = m.group(2).decode().split()
    info = dict(zip(fields[::2], fields[1::2]))
    print(f'  sndplay: SND PLAY {m.group(1).decode()} {m.group(2).decode()}')
    if m.group(1) != b'OK' or info.get('xruns') != '0':
        raise Failure(f'sndplay reported underruns: {m.group(0).decode()}')
    if q.status(timeout) != 0:
        raise Failure('sndplay failed')
    return info


def check_wav(wav, *args, must_pass=True):
    r = subprocess.run([sys.executable, os.path.join(TOP, 'scripts', 'check-wav.py'), wav, *args],
                       stdout=subprocess.PIPE, text=True)
    for line in r.stdout.splitlines():
        print(f'  {line}')
    if r.returncode != 0 and must_pass:
        raise Failure(f'check-wav.py {" ".join(args)}: the recording is wrong')


def check_cut_sequence(wav):
    """The reboot scenario's first sequence, cut by the reset: counter 0..k-1,
    whole and in order, with only silence around it."""
    spec = importlib.util.spec_from_file_location('check_wav', os.path.join(TOP, 'scripts',
                                                                             'check-wav.py'))
    cw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cw)
    with open(wav, 'rb') as f:
        data, _ = cw.parse_wav(f.read(), RATE)
    second = cw.find_frame(data, cw.signal_bytes(REBOOT_START, 1))
    first = cw.first_nonsilent(data)
    part = data[:second * 4].rstrip(b'\0')
    part = part + b'\0' * (-len(part) % 4)
    frames = len(part) // 4 - first
    if frames <= 0:
        raise Failure('nothing was recorded before the reboot')
    ok, lines = cw.check(part, RATE, frames)
    print(f'  before the reboot: {lines[-1]}')
    if not ok:
        raise Failure('the sequence cut by the reboot is not whole and in order')


def boot(q, timeout):
    q.expect(r'^SOUND CARD (.*)\n', timeout)
    q.expect(r'^GUEST READY\n', timeout)


def scenario_play(q, wav, t):
    boot(q, t)
    assert_card(q)
    q.command('sndplay -t 250 play 10', t)
    play_line(q, t)
    return ['--seconds', '10']


def scenario_cycles(q, wav, t):
    boot(q, t)
    assert_card(q)
    q.command('sndplay -t 250 -c 3 play 2', t)
    play_line(q, t)
    q.command(f'sndplay -t 250 -R -c 2 -g 300 -f {3 * 2 * RATE} play 2', t)
    play_line(q, t)
    return ['--seconds', '10', '--allow-gaps']


def scenario_reboot(q, wav, t):
    boot(q, t)
    assert_card(q)
    q.expect(PROMPT, t)
    q.send('sndplay play 10 & sleep 3; reboot -f')
    q.expect(r'^SND OPEN ', t)
    boot(q, t)   # the same QEMU: the machine was reset
    q.command(f'sndplay -t 250 -f {REBOOT_START} play 10', t)
    play_line(q, t)
    return ['--seconds', '10', '--start', str(REBOOT_START), '--ignore-before']


def scenario_xrun(q, wav, t):
    boot(q, t)
    assert_card(q)
    # In a shell without job control (the interactive one's `wait` would
    # return as soon as the player stops).
    q.command("sh -c 'sndplay -t 250 play 4 & p=$!; sleep 1; kill -STOP $p; sleep 1; "
              "kill -CONT $p; wait $p'", t)
    m = q.expect(r'^SND XRUN underrun before frame (\d+) \(cycle 0\), recovered\n', t)
    resumed = int(m.group(1))
    m = q.expect(r'^SND PLAY (OK|XRUN) (.*)\n', t)
    print(f'  sndplay: {m.group(0).decode().strip()}')
    if m.group(1) != b'XRUN' or b' xruns 1 ' not in m.group(2):
        raise Failure('sndplay did not count the underrun')
    status = q.status(t)
    if status != 3:
        raise Failure(f'sndplay exited with status {status}, not 3 (underruns)')
    # What was in flight at the underrun is QEMU's to lose (docs/sound-guest.md);
    # from the frame the player wrote again on, nothing may be.
    return ['--start', str(resumed), '--ignore-before', '--frames', str(4 * RATE - resumed)]


def scenario_nodevice(q, wav, t):
    m = q.expect(r'^SOUND CARD (.*)\n', t)
    if not m.group(1).startswith(b'none'):
        raise Failure(f'a sound card without a sound device: {m.group(0).decode()}')
    q.expect(r'^GUEST READY\n', t)
    q.command('sndplay play 1', t)
    q.expect(r'^SND OPEN FAIL /dev/snd/pcmC0D0p \(errno 2\)\n', t)
    if q.status(t) != 1:
        raise Failure('sndplay without a device did not exit with status 1')
    return None


def assert_card(q):
    m = re.findall(rb'^SOUND CARD (.*)$', bytes(q.buf), re.M)
    if not m or m[-1].startswith(b'none'):
        raise Failure('the guest found no sound card')


SCENARIOS = {'play': scenario_play, 'cycles': scenario_cycles, 'reboot': scenario_reboot,
             'xrun': scenario_xrun, 'nodevice': scenario_nodevice}


def run_scenario(name, images, out, scale, icount):
    wav, log = os.path.join(out, f'{name}.wav'), os.path.join(out, f'{name}.log')
    if os.path.exists(wav):
        os.remove(wav)
    print(f'== {name} (console: {log})')
    q = Qemu(images, wav, log, scale, hda=name != 'nodevice', icount=icount)
    try:
        check_args = SCENARIOS[name](q, wav, 120)
        q.expect(PROMPT, 120)
        q.send('poweroff -f')
        q.wait_exit(60)
    finally:
        q.kill()
    alarms = [m.group(0).decode(errors='replace') for m in ALARMING.finditer(bytes(q.buf))]
    alarms = [a for a in alarms if not a.startswith(('SND OPEN FAIL', 'sndplay'))]
    if alarms:
        raise Failure('alarming kernel lines:\n    ' + '\n    '.join(alarms))
    if check_args is not None:
        check_wav(wav, '--signal', 'counter24', *check_args)
    if name == 'reboot':
        check_cut_sequence(wav)
    if name == 'xrun':
        print('  the whole recording, for the record (what the underrun did):')
        check_wav(wav, '--signal', 'counter24', '--seconds', '4', must_pass=False)
    print(f'PASS: {name}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('scenarios', nargs='*', metavar='SCENARIO',
                    help=f'one of {", ".join(SCENARIOS)} (default: all)')
    ap.add_argument('--out', default=os.path.join(TOP, 'build', 'sound-qemu-test'))
    ap.add_argument('--images', default=os.path.join(TOP, 'build', 'sound-guest'))
    ap.add_argument('--timeout-scale', type=float, default=1.0)
    ap.add_argument('--realtime', action='store_true',
                    help='no -icount: QEMU follows the host clock (measures, may lose data)')
    args = ap.parse_args()
    names = args.scenarios or list(SCENARIOS)
    for name in names:
        if name not in SCENARIOS:
            ap.error(f'no scenario {name!r}: {", ".join(SCENARIOS)}')
    os.makedirs(args.out, exist_ok=True)
    subprocess.run([os.path.join(TOP, 'scripts', 'sound-guest-images.sh'), args.images],
                   check=True, stdout=subprocess.DEVNULL)
    failed = []
    for name in names:
        try:
            run_scenario(name, args.images, args.out, args.timeout_scale, not args.realtime)
        except Failure as e:
            print(f'FAIL: {name}: {e}')
            failed.append(name)
    if failed:
        print(f'sound-qemu-test: failed: {" ".join(failed)}')
        return 1
    print(f'sound-qemu-test: all passed ({" ".join(names)})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
