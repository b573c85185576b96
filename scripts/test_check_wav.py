"""Tests of scripts/check-wav.py, the sound tests' WAV checker.

    python3 -m unittest discover -s scripts -p 'test_*.py'     (scripts/test.sh)
    scripts/check-wav.py --self-test                            (the same tests)

Each test builds a WAV file as QEMU's wav audiodev would write it (44-byte
header, sizes filled in, or left 0 by a killed QEMU), holding the counter
signal with one defect, and checks what the checker says about it: the
verdict, the exit status and the file frame it points at. Most use the guest
player's signal (counter24); Counter16 covers the `sound` example's. The
last tests build guest/sndplay for this host and check that its `wav`
command (the guest player's own signal generator) passes the Python checker.
"""
import contextlib
import importlib.util
import io
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location('check_wav', os.path.join(HERE, 'check-wav.py'))
cw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cw)

RATE = 48000
SECONDS = 1
N = RATE * SECONDS
PERIOD = 1024


def silence(frames):
    return b'\0' * (4 * frames)


def sig(start, count):
    return cw.signal_bytes(start, count)


def wav_bytes(data, rate=RATE, channels=2, bits=16, finished=True, extra_chunk=b''):
    """A WAV file like QEMU's: RIFF, fmt (PCM), [extra], data. finished=False
    leaves the sizes 0, as a QEMU that did not exit cleanly does."""
    block = channels * bits // 8
    fmt = struct.pack('<4sIHHIIHH', b'fmt ', 16, 1, channels, rate, rate * block, block, bits)
    riff = 4 + len(fmt) + len(extra_chunk) + 8 + len(data) if finished else 0
    return (struct.pack('<4sI4s', b'RIFF', riff, b'WAVE') + fmt + extra_chunk +
            struct.pack('<4sI', b'data', len(data) if finished else 0) + data)


class CheckerCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='check-wav-test.')

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_checker(self, blob, *args, defaults=('--signal', 'counter24', '--seconds', str(SECONDS))):
        """Runs check-wav.py's main on blob (by default as counter24, 1 s; args
        come after and win); returns (exit status, output)."""
        path = os.path.join(self.dir, 'x.wav')
        with open(path, 'wb') as f:
            f.write(blob)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = cw.main([path, *defaults, *args])
        return status, out.getvalue()

    def assert_fails(self, blob, *needles, args=()):
        status, out = self.run_checker(blob, *args)
        self.assertEqual(status, 1, out)
        self.assertIn('FAIL', out)
        for needle in needles:
            self.assertIn(needle, out)
        return out


class SignalTest(unittest.TestCase):
    def test_no_counter_frame_is_silence(self):
        # Only frames whose left sample is 0 could be: n = k * 65536.
        for k in range(256):
            self.assertNotEqual(cw.encode(k << 16), (0, 0))

    def test_decode_inverts_encode(self):
        for n in list(range(0, 70000)) + [cw.COUNTER_LIMIT - 1, 0x123456]:
            self.assertEqual(cw.decode(*cw.encode(n)), n)

    def test_consecutive_frames_differ(self):
        # A repeated frame can never pass for the next one.
        for n in range(0, 1 << 20, 997):
            self.assertNotEqual(cw.encode(n), cw.encode(n + 1))


class GoodFiles(CheckerCase):
    def test_sequence_with_silence_before_and_after(self):
        status, out = self.run_checker(wav_bytes(silence(1234) + sig(0, N) + silence(777)))
        self.assertEqual(status, 0, out)
        self.assertIn('OK: counter24 0..47999', out)
        self.assertIn('file frame 1234 (0.026 s)', out)
        self.assertIn('after it 777 frames', out)

    def test_sequence_alone(self):
        status, out = self.run_checker(wav_bytes(sig(0, N)))
        self.assertEqual(status, 0, out)

    def test_sizes_left_zero_by_a_killed_qemu(self):
        status, out = self.run_checker(wav_bytes(silence(10) + sig(0, N), finished=False))
        self.assertEqual(status, 0, out)
        self.assertIn('QEMU did not finish the file', out)

    def test_other_chunks_and_a_partial_last_frame(self):
        listing = struct.pack('<4sI', b'LIST', 5) + b'INFOx\0'   # odd size: padded
        status, out = self.run_checker(wav_bytes(sig(0, N) + b'\0\0', extra_chunk=listing))
        self.assertEqual(status, 0, out)
        self.assertIn('partial frame', out)

    def test_another_start(self):
        status, out = self.run_checker(wav_bytes(sig(5000, N)), '--start', '5000')
        self.assertEqual(status, 0, out)


class BadFiles(CheckerCase):
    def test_lost_period(self):
        data = silence(100) + sig(0, 10 * PERIOD) + sig(11 * PERIOD, N - 11 * PERIOD) + silence(2000)
        self.assert_fails(wav_bytes(data), f'file frame {100 + 10 * PERIOD} ',
                          f'expected counter {10 * PERIOD}, got {11 * PERIOD}',
                          f'{PERIOD} frames lost')

    def test_repeated_period(self):
        data = sig(0, 20 * PERIOD) + sig(19 * PERIOD, N - 19 * PERIOD)
        out = self.assert_fails(wav_bytes(data), f'file frame {20 * PERIOD} ',
                                f'{PERIOD} frames out of place (counter {19 * PERIOD}..'
                                f'{20 * PERIOD - 1}, played again or late), then counter {20 * PERIOD}')
        self.assertIn('1 problem(s)', out)

    def test_a_few_stale_frames_inserted(self):
        # An underrun on QEMU's intel-hda: 48 old frames, then the sequence goes on.
        data = sig(0, 5000) + sig(900, 48) + sig(5000, N - 5000)
        out = self.assert_fails(wav_bytes(data), 'file frame 5000 ', '48 frames out of place')
        self.assertIn('1 problem(s)', out)

    def test_going_back_for_good(self):
        # Back by more than a second: not taken as an insertion.
        data = sig(0, 100000) + sig(40000, 104000)
        out = self.assert_fails(wav_bytes(data), 'expected counter 100000, got 40000: the counter '
                                'goes back by 60000 frames', args=('--seconds', '3'))
        self.assertIn('1 problem(s)', out)

    def test_periods_out_of_order(self):
        p = PERIOD
        data = sig(0, 5 * p) + sig(6 * p, p) + sig(5 * p, p) + sig(7 * p, N - 7 * p)
        out = self.assert_fails(wav_bytes(data), f'file frame {5 * p} ', f'{p} frames lost',
                                f'file frame {6 * p} ', f'{p} frames out of place')
        self.assertIn('2 problem(s)', out)   # forward, then the late period

    def test_swapped_channels(self):
        data = bytearray(sig(0, N))
        for i in range(0, len(data), 4):
            data[i:i + 4] = data[i + 2:i + 4] + data[i:i + 2]
        out = self.assert_fails(wav_bytes(silence(50) + bytes(data)),
                                'left and right channels swapped', f'{N} frames')
        self.assertIn('1 problem(s)', out)   # one run, not 48000 lines

    def test_truncated_by_silence(self):
        self.assert_fails(wav_bytes(sig(0, N - 5000) + silence(3000)),
                          'silence to the end of the file after counter 42999',
                          'last 5000 of 48000 frames are missing')

    def test_truncated_by_end_of_file(self):
        self.assert_fails(wav_bytes(sig(0, N - 1), finished=False), 'the file ends after counter 47998',
                          'last 1 of 48000')

    def test_data_after_the_end(self):
        self.assert_fails(wav_bytes(sig(0, N) + silence(10) + sig(N, 5)),
                          f'file frame {N + 10} ', f'holds counter {N}')

    def test_a_corrupted_sample(self):
        data = bytearray(sig(0, N))
        data[4 * 30000] ^= 0x10
        self.assert_fails(wav_bytes(silence(7) + bytes(data)), 'file frame 30007 ',
                          'not a counter frame', 'expected counter 30000')

    def test_a_stray_frame_is_not_a_jump(self):
        data = sig(0, 30000) + sig(12345, 1) + sig(30001, N - 30001)
        out = self.assert_fails(wav_bytes(data), 'file frame 30000 ',
                                'a lone frame of counter 12345', 'expected counter 30000')
        self.assertIn('1 problem(s)', out)

    def test_silence_inside(self):
        data = sig(0, 3000) + silence(480) + sig(3000, N - 3000)
        self.assert_fails(wav_bytes(data), 'file frame 3000 ', '480 frames (10.0 ms) of silence',
                          'nothing lost')
        status, out = self.run_checker(wav_bytes(data), '--allow-gaps')
        self.assertEqual(status, 0, out)
        self.assertIn('1 silent gaps', out)

    def test_silence_hiding_a_loss_fails_even_with_gaps_allowed(self):
        data = sig(0, 3000) + silence(PERIOD) + sig(3000 + PERIOD, N - 3000 - PERIOD)
        self.assert_fails(wav_bytes(data), f'expected counter 3000, got {3000 + PERIOD}',
                          args=('--allow-gaps',))

    def test_missing_start(self):
        self.assert_fails(wav_bytes(silence(10) + sig(300, N - 300)), 'file frame 10 ',
                          'expected counter 0, got 300', '300 frames lost')

    def test_only_silence(self):
        self.assert_fails(wav_bytes(silence(4800)), 'only silence')


class Reboot(CheckerCase):
    """A guest rebooted while playing: a cut sequence, then a new one from START."""

    def data(self):
        start = 1 << 23
        return start, wav_bytes(sig(0, 20000) + silence(9000) + sig(start, N) + silence(10))

    def test_ignore_before_checks_the_second_sequence(self):
        start, blob = self.data()
        status, out = self.run_checker(blob, '--start', str(start), '--ignore-before')
        self.assertEqual(status, 0, out)
        self.assertIn('ignored file frames 0..28999 before counter 8388608 (20000 of them not silent)', out)

    def test_without_ignore_before_the_first_sequence_fails(self):
        start, blob = self.data()
        self.assert_fails(blob, 'expected counter 8388608, got 0', args=('--start', str(start)))

    def test_second_sequence_missing(self):
        self.assert_fails(wav_bytes(sig(0, 20000)), 'no frame holds counter 30000',
                          args=('--start', '30000', '--ignore-before'))


class Segments(CheckerCase):
    """A recording of several sequences (the virtio_sound systest): earlier
    playback, a sequence cut by a reboot, then the rebooted guest's; each
    checked alone with --until, the cut one with --may-end-early."""
    CUT = 4_000_000
    AFTER = 1 << 23

    def data(self, cut_part=None):
        cut_part = sig(self.CUT, 30000) if cut_part is None else cut_part
        return wav_bytes(sig(0, N) + silence(700) + cut_part + silence(900) + sig(self.AFTER, N) +
                         silence(10))

    def test_the_first_sequence_until_the_cut_one(self):
        status, out = self.run_checker(self.data(), '--until', str(self.CUT))
        self.assertEqual(status, 0, out)
        self.assertIn(f'checking file frames 0..{N + 699}, before counter {self.CUT}', out)
        self.assertIn('after it 700 frames of silence', out)

    def test_without_until_the_next_sequence_fails(self):
        self.assert_fails(self.data(), f'holds counter {self.CUT}')

    def test_the_cut_sequence(self):
        args = ('--start', str(self.CUT), '--ignore-before', '--until', str(self.AFTER), '--may-end-early',
                '--seconds', '10')
        status, out = self.run_checker(self.data(), *args)
        self.assertEqual(status, 0, out)
        self.assertIn(f'the sequence stops after counter {self.CUT + 29999} (30000 of 480000 frames', out)
        self.assertIn(f'OK: counter24 {self.CUT}..{self.CUT + 29999} (30000 frames', out)

    def test_a_cut_sequence_must_be_whole_up_to_its_end(self):
        args = ('--start', str(self.CUT), '--ignore-before', '--until', str(self.AFTER), '--may-end-early',
                '--seconds', '10')
        lost = sig(self.CUT, 10000) + sig(self.CUT + 10000 + PERIOD, 20000)
        self.assert_fails(self.data(lost), f'expected counter {self.CUT + 10000}', f'{PERIOD} frames lost',
                          args=args)
        # A gap inside is not the end: the sequence goes on after it.
        gap = sig(self.CUT, 10000) + silence(PERIOD) + sig(self.CUT + 10000, 20000)
        self.assert_fails(self.data(gap), 'of silence inside the sequence', args=args)

    def test_may_end_early_does_not_accept_an_empty_sequence(self):
        self.assert_fails(wav_bytes(silence(10) + sig(5, 100)), 'expected counter 0, got 5',
                          args=('--may-end-early',))

    def test_the_sequence_after_the_reboot(self):
        status, out = self.run_checker(self.data(), '--start', str(self.AFTER), '--ignore-before')
        self.assertEqual(status, 0, out)

    def test_until_a_counter_that_is_not_there(self):
        self.assert_fails(self.data(), 'no frame holds counter 3000000 (--until)', args=('--until', '3000000'))


def sig16(start, count):
    return cw.signal_bytes(start, count, cw.Counter16)


class Counter16(CheckerCase):
    """The `sound` example's signal, left = n, right = ~n: its driver PD plays
    48000 frames; the systest runs `check-wav.py FILE` (auto, 1 s, at most
    0.5 s of silence either side). The cases its own self-test had."""

    def check16(self, data, *args):
        return self.run_checker(wav_bytes(data), *args, defaults=())

    def good(self):
        return silence(100) + sig16(0, N) + silence(3000)

    def test_right_recording_with_the_examples_defaults(self):
        status, out = self.check16(self.good())
        self.assertEqual(status, 0, out)
        self.assertIn('OK: counter16 0..47999', out)

    def assert_fails16(self, data, *needles):
        status, out = self.check16(data)
        self.assertEqual(status, 1, out)
        for needle in needles:
            self.assertIn(needle, out)

    def test_period_lost(self):
        p2 = 2 * PERIOD
        self.assert_fails16(silence(100) + sig16(0, p2) + sig16(p2 + PERIOD, N - p2 - PERIOD),
                            f'file frame {100 + p2} ', f'{PERIOD} frames lost')

    def test_period_repeated(self):
        p3 = 3 * PERIOD
        self.assert_fails16(sig16(0, p3) + sig16(p3 - PERIOD, N - p3 + PERIOD),
                            f'file frame {p3} ', f'{PERIOD} frames out of place')

    def test_two_periods_swapped(self):
        p = PERIOD
        self.assert_fails16(sig16(0, 2 * p) + sig16(3 * p, p) + sig16(2 * p, p) + sig16(4 * p, N - 4 * p),
                            f'file frame {2 * p} ', f'{p} frames lost', 'out of place')

    def test_sample_altered(self):
        data = bytearray(sig16(0, N))
        data[4 * 2055] ^= 1
        self.assert_fails16(bytes(data), 'file frame 2055 ', 'not a counter frame')

    def test_noise_after_the_end(self):
        self.assert_fails16(sig16(0, N) + silence(5) + struct.pack('<HH', 1, 2), 'after the end')

    def test_noise_before_the_start(self):
        status, out = self.check16(struct.pack('<HH', 3, 3) + silence(99) + sig16(0, N))
        self.assertEqual(status, 1, out)
        self.assertIn("neither signal's", out)   # auto cannot tell; with --signal:
        status, out = self.run_checker(wav_bytes(struct.pack('<HH', 3, 3) + silence(99) + sig16(0, N)),
                                       '--signal', 'counter16', defaults=())
        self.assertEqual(status, 1, out)
        self.assertIn('file frame 0 (0.000 s): not a counter frame', out)

    def test_end_cut_off(self):
        self.assert_fails16(silence(100) + sig16(0, N - 1), 'the last 1 of 48000 frames are missing')

    def test_too_much_silence(self):
        self.assert_fails16(silence(30000) + sig16(0, N), '0.625 s of silence before the sequence')

    def test_wraps_past_16_bits(self):
        status, out = self.check16(sig16(0, 100000), '--frames', '100000')
        self.assertEqual(status, 0, out)
        data = sig16(0, 70000) + sig16(70000 + PERIOD, 30000 - PERIOD)
        status, out = self.check16(data, '--frames', '100000')
        self.assertIn(f'expected counter 70000, got {70000 + PERIOD}', out)

    def test_auto_picks_counter24_too(self):
        status, out = self.run_checker(wav_bytes(sig(0, N)), '--seconds', '1', defaults=())
        self.assertEqual(status, 0, out)
        self.assertIn('OK: counter24 0..47999', out)


class Unusable(CheckerCase):
    def assert_unusable(self, blob, needle):
        status, out = self.run_checker(blob)
        self.assertEqual(status, 2, out)
        self.assertIn(needle, out)

    def test_resampled(self):
        self.assert_unusable(wav_bytes(sig(0, 100), rate=44100), 'out.frequency=48000')

    def test_mono(self):
        self.assert_unusable(wav_bytes(sig(0, 100), channels=1), '1 channels of 16 bits')

    def test_not_wav(self):
        self.assert_unusable(b'OggS' + b'\0' * 60, 'not a RIFF/WAVE file')

    def test_no_data_chunk(self):
        self.assert_unusable(wav_bytes(b'')[:36], 'no data chunk')


class GuestGenerator(CheckerCase):
    """guest/sndplay's signal (C) against the checker's (Python)."""

    @classmethod
    def setUpClass(cls):
        cls.build = tempfile.mkdtemp(prefix='sndplay-host.')
        src = os.path.join(HERE, '..', 'guest', 'sndplay')
        subprocess.run(['make', '-s', '-C', src, f'O={cls.build}', 'host'], check=True)
        cls.exe = os.path.join(cls.build, 'sndplay-host')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.build)

    def generated(self, *args):
        return subprocess.run([self.exe, *args], check=True, stdout=subprocess.PIPE).stdout

    def test_one_second(self):
        # 48000 frames, then silence to a whole period of 1024 frames.
        blob = self.generated('wav', str(SECONDS))
        self.assertEqual(blob, wav_bytes(sig(0, N) + silence(128)))
        status, out = self.run_checker(blob)
        self.assertEqual(status, 0, out)

    def test_cycles_continue_the_counter(self):
        # -c 3: three cycles of 1 s continue the counter, as `play` does
        # (each padded with silence to a whole period).
        blob = self.generated('-f', '1000000', '-c', '3', 'wav', '1')
        status, out = self.run_checker(blob, '--start', '1000000', '--seconds', '3', '--allow-gaps')
        self.assertEqual(status, 0, out)
        self.assertIn('2 silent gaps inside the sequence (allowed), nothing lost: 128 frames', out)

    def test_tail_silence_after_each_cycle(self):
        # -t 100: 4800 frames of silence after each cycle, and 448 to a whole
        # period of 1024 frames; the counter continues.
        blob = self.generated('-c', '2', '-t', '100', 'wav', '1')
        tail = silence(4800 + 448)
        self.assertEqual(blob, wav_bytes(sig(0, N) + tail + sig(N, N) + tail))
        status, out = self.run_checker(blob, '--seconds', '2')
        self.assertEqual(status, 1, out)
        status, out = self.run_checker(blob, '--seconds', '2', '--allow-gaps')
        self.assertEqual(status, 0, out)

    def test_whole_periods_need_no_padding(self):
        # -p 480: 48000 and 4800 frames are whole periods.
        blob = self.generated('-p', '480', '-t', '100', 'wav', '1')
        self.assertEqual(blob, wav_bytes(sig(0, N) + silence(4800)))

    def test_refuses_to_pass_the_counter_limit(self):
        r = subprocess.run([self.exe, '-f', str(cw.COUNTER_LIMIT - 100), 'wav', '1'],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b'SND ARGS FAIL', r.stderr)


if __name__ == '__main__':
    unittest.main()
