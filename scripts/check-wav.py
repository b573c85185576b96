#!/usr/bin/env python3
"""Checks a WAV recording of one of the sound tests' counter signals.

    scripts/check-wav.py FILE [--signal auto|counter24|counter16]
                              [--seconds S | --frames N] [--rate 48000]
                              [--start N] [--allow-gaps] [--ignore-before]
                              [--max-silence S] [--until COUNTER] [--may-end-early]
    scripts/check-wav.py --self-test     (runs scripts/test_check_wav.py)

FILE is what QEMU's `-audiodev wav,...` wrote. Two signals, both 2 channels
of 16-bit samples, frame n of a counter:

  counter24  what the guest player guest/sndplay plays (docs/sound-guest.md):
             a 24-bit counter with a check byte,
                 left  = n & 0xffff
                 right = (n >> 16) & 0xff | check(n) << 8
                 check(n) = ((n * 0x9e3779b1 + 0x7f4a7c15) mod 2^32) >> 24
             Default length 10 s.
  counter16  what the `sound` example's HDA driver PD plays (docs/hda.md):
             left = n, right = ~n (16 bits, wrapping). Default length
             48000 frames (1 s), and --max-silence 0.5.

auto (the default) picks the signal from the first frame that is not silence.

The check passes when the file holds the counter from START (default 0) for
the expected number of frames, each frame exactly once and in order, with
only silence (frames of two zero samples) before and after. Anything else is
reported precisely: the file frame where it happens (and its time), what was
expected and what was found, and what it means (frames lost, frames out of
place: played again or late, channels swapped, a sample altered, the
sequence cut short).

--allow-gaps accepts silence inside the sequence as long as the counter then
continues where it stopped (a stream stopped and started again: nothing may
be lost). --ignore-before skips everything before the first frame holding
counter START (e.g. what a guest played before it was rebooted).
--until COUNTER checks only the frames before the first one holding counter
COUNTER (where a later sequence begins: a rebooted guest's), and
--may-end-early lets the sequence stop short (cut by a reset), whole and in
order up to where it stops, then only silence; together they check one
segment of a recording that holds several.
--max-silence S fails a recording with more than S seconds of silence before
or after the sequence (so the card cannot have played it too slowly).

The RIFF sizes may be 0 (QEMU writes them only when it exits cleanly; a
killed QEMU leaves them 0): the data then runs to the end of the file.

Exit status: 0 the check passed, 1 it failed, 2 the file is not a usable
WAV file (not 16-bit stereo PCM, another rate, unreadable).
Standard library only.
"""
import argparse
import os
import struct
import sys
from array import array

SILENCE = (0, 0)


# --- The signals -----------------------------------------------------------

class Counter24:
    """guest/sndplay's signal: a 24-bit counter and a check byte."""
    name = 'counter24'
    limit = 1 << 24         # counter values (it does not wrap)
    default_frames = 480000  # 10 s at 48 kHz
    default_max_silence = None

    @staticmethod
    def check_byte(n):
        return ((n * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF) >> 24

    @classmethod
    def encode(cls, n):
        """Frame of counter value n, as two unsigned 16-bit samples (left, right)."""
        return n & 0xFFFF, ((n >> 16) & 0xFF) | cls.check_byte(n) << 8

    @classmethod
    def decode(cls, left, right):
        """The counter value of a frame, or None if it is not a counter frame."""
        n = left | (right & 0xFF) << 16
        return n if right >> 8 == cls.check_byte(n) else None

    @staticmethod
    def delta(got, want):
        return got - want


class Counter16:
    """The `sound` example's signal: left = n, right = ~n, 16 bits, wrapping."""
    name = 'counter16'
    limit = None
    default_frames = 48000   # 1 s at 48 kHz
    default_max_silence = 0.5

    @staticmethod
    def encode(n):
        return n & 0xFFFF, ~n & 0xFFFF

    @staticmethod
    def decode(left, right):
        return left if right == ~left & 0xFFFF else None

    @staticmethod
    def delta(got, want):
        """The nearest counter value to want whose low 16 bits are got, less want."""
        return (got - want + 0x8000) % 0x10000 - 0x8000


SIGNALS = {s.name: s for s in (Counter24, Counter16)}


def signal_bytes(start, count, signal=Counter24):
    """count frames of the signal from counter value start, as WAV data."""
    a = array('H')
    for n in range(start, start + count):
        a.extend(signal.encode(n))
    if sys.byteorder == 'big':
        a.byteswap()
    return a.tobytes()


# counter24's helpers by their plain names, for the tests and other scripts.
encode, decode, check_byte = Counter24.encode, Counter24.decode, Counter24.check_byte
COUNTER_LIMIT = Counter24.limit


# --- The WAV file --------------------------------------------------------

class WavError(Exception):
    """The file cannot be checked (format, rate, structure)."""


def parse_wav(blob, rate):
    """Returns (data bytes, notes) of a 16-bit stereo PCM WAV file at rate."""
    notes = []
    if len(blob) < 12 or blob[0:4] != b'RIFF' or blob[8:12] != b'WAVE':
        raise WavError('not a RIFF/WAVE file')
    riff_size = struct.unpack_from('<I', blob, 4)[0]
    if riff_size == 0:
        notes.append('RIFF size is 0 (QEMU did not finish the file: killed?)')
    off, fmt = 12, None
    while off + 8 <= len(blob):
        cid, size = blob[off:off + 4], struct.unpack_from('<I', blob, off + 4)[0]
        body = off + 8
        if cid == b'fmt ':
            if size < 16 or body + size > len(blob):
                raise WavError(f'fmt chunk of {size} bytes is too short or cut off')
            fmt = struct.unpack_from('<HHIIHH', blob, body)
            if fmt[0] == 0xFFFE:   # WAVE_FORMAT_EXTENSIBLE: the sub-format's first 2 bytes
                if size < 40:
                    raise WavError('WAVE_FORMAT_EXTENSIBLE fmt chunk is too short')
                fmt = (struct.unpack_from('<H', blob, body + 24)[0],) + fmt[1:]
        elif cid == b'data':
            if fmt is None:
                raise WavError('data chunk before any fmt chunk')
            check_format(fmt, rate)
            rest = len(blob) - body
            if size == 0 or size > rest:
                notes.append(f'data size in the header is {size} (QEMU did not finish the '
                             f'file: killed?): using the {rest} bytes to the end of the file')
                size = rest
            if size % 4:
                notes.append(f'data ends with {size % 4} bytes of a partial frame (ignored)')
            return blob[body:body + size - size % 4], notes
        off = body + size + (size & 1)
    raise WavError('no data chunk')


def check_format(fmt, rate):
    tag, channels, file_rate, _, _, bits = fmt
    if tag != 1:
        raise WavError(f'format tag {tag:#x}, not PCM (1)')
    if channels != 2 or bits != 16:
        raise WavError(f'{channels} channels of {bits} bits, not 2 of 16 (the audiodev needs '
                       'out.channels=2,out.format=s16, the defaults)')
    if file_rate != rate:
        raise WavError(f'the file is {file_rate} Hz, not {rate} Hz (--rate): if the guest played '
                       f'{rate} Hz, QEMU resampled it (give the audiodev '
                       f'out.frequency={rate}; its default is 44100)')


# --- The check -------------------------------------------------------------

class Report:
    """What the check found: problems (each at a file frame) and notes."""

    def __init__(self, rate, max_problems):
        self.rate, self.max_problems = rate, max_problems
        self.problems = []   # [kind, first file frame, last file frame, text]
        self.notes = []

    def at(self, frame):
        return f'file frame {frame} ({frame / self.rate:.3f} s)'

    def problem(self, kind, frame, text):
        """Records a problem; runs of one per-frame kind at adjacent frames merge."""
        last = self.problems[-1] if self.problems else None
        if last and last[0] == kind and kind in ('swapped', 'corrupt') and last[2] == frame - 1:
            last[2] = frame
            return
        self.problems.append([kind, frame, frame, text])

    def lines(self):
        out = []
        for _, first, last, text in self.problems[:self.max_problems]:
            if last > first:
                out.append(f'{self.at(first)} to {last}: {last - first + 1} frames: {text}')
            else:
                out.append(f'{self.at(first)}: {text}')
        if len(self.problems) > self.max_problems:
            out.append(f'... and {len(self.problems) - self.max_problems} more problems')
        return out


def frames_of(data):
    samples = array('H')
    samples.frombytes(data)
    if sys.byteorder == 'big':
        samples.byteswap()
    return samples


def first_nonsilent(data, begin=0):
    """Index of the first frame at or after begin that is not silence, or None."""
    rest = data[begin * 4:]
    stripped = rest.lstrip(b'\0')
    if not stripped:
        return None
    return begin + (len(rest) - len(stripped)) // 4


def find_frame(data, frame_bytes):
    """Index of the first frame equal to frame_bytes, or None."""
    pos = data.find(frame_bytes)
    while pos >= 0 and pos % 4:
        pos = data.find(frame_bytes, pos + 1)
    return None if pos < 0 else pos // 4


def data_of(s, a, b):
    """Frames a..b-1 of the samples s, as WAV data."""
    part = s[2 * a:2 * b]
    if sys.byteorder == 'big':
        part = array('H', part)
        part.byteswap()
    return part.tobytes()


def sig_bytes(sig, start, count):
    return signal_bytes(start, count, sig)


def walk(sig, s, i, start, end, allow_gaps, rep):
    """Follows the sequence from file frame i, where counter start is expected,
    until counter end; records problems. Returns (next file frame, next counter,
    silent gaps [(file frame, length, counter after)])."""
    nframes, want, gaps = len(s) // 2, start, []
    while i < nframes and want < end:
        left, right = s[2 * i], s[2 * i + 1]
        if (left, right) == sig.encode(want):
            want += 1
            i += 1
            continue
        if (left, right) == SILENCE:
            j = i
            while j < nframes and s[2 * j] == 0 and s[2 * j + 1] == 0:
                j += 1
            if j == nframes:
                break   # silence to the end: the sequence is cut short
            resumes = (s[2 * j], s[2 * j + 1]) == sig.encode(want)
            if resumes:
                gaps.append((i, j - i, want))
            if not allow_gaps:
                rep.problem('gap', i, f'{j - i} frames ({(j - i) / rep.rate * 1000:.1f} ms) of '
                            f'silence inside the sequence, after counter {want - 1}' +
                            ('; it then continues with nothing lost (--allow-gaps accepts this)'
                             if resumes else ''))
            # Else what follows the silence, if it is not counter `want`, is reported next.
            i = j
            continue
        n = sig.decode(left, right)
        # A jump counts only if the next frame follows it: else this one frame
        # is damaged (a stray frame can pass a signal's check by chance).
        got = None if n is None else want + sig.delta(n, want)
        confirmed = got is not None and got >= 0 and (
            i + 1 == nframes or (s[2 * i + 2], s[2 * i + 3]) == sig.encode(got + 1))
        if (right, left) == sig.encode(want):
            rep.problem('swapped', i, f'left and right channels swapped (counter {want})')
            want += 1
        elif confirmed and got > want:
            rep.problem('lost', i, f'expected counter {want}, got {got}: {got - want} frames '
                        f'lost (counter {want}..{got - 1} missing)')
            want = got + 1
        elif confirmed:
            # Older frames: if they are a run after which counter `want` comes
            # (within a second), they were inserted (played again, or late).
            j = find_frame(data_of(s, i, min(nframes, i + rep.rate + 1)), sig_bytes(sig, want, 1))
            if j is not None and data_of(s, i, i + j) == sig_bytes(sig, got, j):
                rep.problem('again', i, f'{j} frames out of place (counter {got}..{got + j - 1}, '
                            f'played again or late), then counter {want} as expected')
                i += j
                continue
            rep.problem('back', i, f'expected counter {want}, got {got}: the counter goes '
                        f'back by {want - got} frames (repeated or out of order)')
            want = got + 1
        else:
            el, er = sig.encode(want)
            what = 'not a counter frame' if got is None else f'a lone frame of counter {got}'
            rep.problem('corrupt', i, f'{what}: got (L={left:#06x}, R={right:#06x}), '
                        f'expected counter {want} (L={el:#06x}, R={er:#06x})')
            want += 1
        i += 1
    return i, want, gaps


def detect(data, s):
    """The signal whose frame the first non-silent frame is, or None."""
    first = first_nonsilent(data)
    if first is None:
        return None
    frame = s[2 * first], s[2 * first + 1]
    for sig in (Counter16, Counter24):   # counter16's check is exact; counter24's 1 in 256
        if sig.decode(*frame) is not None:
            return sig
    return None


def check(data, rate, frames, start=0, allow_gaps=False, ignore_before=False, max_problems=20,
          signal=Counter24, max_silence=None, until=None, may_end_early=False):
    """Checks WAV data; returns (ok, report lines). With `until`, only the
    frames before the first one holding counter `until` are checked (a later
    sequence begins there); with `may_end_early`, the sequence may stop short
    (cut by a reset), whole and in order up to where it stops."""
    rep = Report(rate, max_problems)
    if until is not None:
        cut = find_frame(data, signal_bytes(until, 1, signal))
        if cut is None:
            return False, [f'FAIL: no frame holds counter {until} (--until)']
        rep.notes.append(f'checking file frames 0..{cut - 1}, before counter {until} '
                         f'({rep.at(cut)})')
        data = data[:cut * 4]
    nframes = len(data) // 4
    end = start + frames
    first = first_nonsilent(data)
    if first is None:
        return False, [f'FAIL: the file holds only silence ({nframes} frames, '
                       f'{nframes / rate:.3f} s)']
    s = frames_of(data)
    begin = first
    if ignore_before:
        begin = find_frame(data, signal_bytes(start, 1, signal))
        if begin is None:
            return False, [f'FAIL: no frame holds counter {start} (the start of the sequence); '
                           f'first non-silent frame: {rep.at(first)}']
        if begin > first:
            sounding = sum(1 for k in range(first, begin) if s[2 * k] or s[2 * k + 1])
            rep.notes.append(f'ignored file frames {first}..{begin - 1} before counter {start} '
                             f'({sounding} of them not silent)')
    # Fast path: all of it in place, silence before and after.
    if data[begin * 4:(begin + frames) * 4] == signal_bytes(start, frames, signal):
        i, want, gaps = begin + frames, end, []
    else:
        i, want, gaps = walk(signal, s, begin, start, end, allow_gaps, rep)
    if want < end and may_end_early and want > start and first_nonsilent(data, i) is None:
        rep.notes.append(f'the sequence stops after counter {want - 1} ({want - start} of {frames} '
                         f'frames; --may-end-early)')
        end, frames = want, want - start
    elif want < end:
        if i >= nframes:
            rep.problem('cut', i, f'the file ends after counter {want - 1}: the last '
                        f'{end - want} of {frames} frames are missing')
        else:
            rep.problem('cut', i, f'silence to the end of the file after counter {want - 1}: '
                        f'the last {end - want} of {frames} frames are missing')
    else:
        extra = first_nonsilent(data, i)
        if extra is not None:
            n = signal.decode(s[2 * extra], s[2 * extra + 1])
            what = f'counter {n}' if n is not None else 'a frame that is not a counter frame'
            rep.problem('extra', extra, f'after the end of the sequence (counter {end - 1}, file '
                        f'frame {i - 1}) the file holds {what}')
    if max_silence is not None:
        limit = round(max_silence * rate)
        for where, count in (('before', first), ('after', nframes - i)):
            if count > limit and (where == 'before' or want >= end):
                rep.problem('slow', 0 if where == 'before' else i,
                            f'{count / rate:.3f} s of silence {where} the sequence (at most '
                            f'{max_silence} s: --max-silence)')
    head = (f'{signal.name} {start}..{end - 1} ({frames} frames, {frames / rate:.3f} s at '
            f'{rate} Hz) starting at {rep.at(begin)}')
    lines = rep.notes[:]
    if gaps and allow_gaps:
        lines.append(f'{len(gaps)} silent gaps inside the sequence (allowed), nothing lost: ' +
                     ', '.join(f'{n} frames before counter {c}' for _, n, c in gaps[:10]))
    if rep.problems:
        return False, lines + [f'FAIL: {head}: {len(rep.problems)} problem(s)'] + rep.lines()
    before = 'silence' if begin == first else 'silence and ignored frames'
    return True, lines + [f'OK: {head}: complete and in order; before it {begin} frames '
                          f'({before}), after it {nframes - i} frames of silence']


def self_test():
    """Runs the checker's tests (scripts/test_check_wav.py)."""
    import unittest
    here = os.path.dirname(os.path.abspath(__file__))
    suite = unittest.defaultTestLoader.discover(here, pattern='test_check_wav.py')
    result = unittest.TextTestRunner(verbosity=1).run(suite)
    return 0 if result.wasSuccessful() else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ['--self-test']:
        return self_test()
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('file')
    ap.add_argument('--signal', choices=['auto', *SIGNALS], default='auto',
                    help='the counter signal (default: from the first non-silent frame)')
    length = ap.add_mutually_exclusive_group()
    length.add_argument('--seconds', type=float, help='length of the sequence in seconds')
    length.add_argument('--frames', type=int, help='length of the sequence in frames')
    ap.add_argument('--rate', type=int, default=48000, help='frames per second (default 48000)')
    ap.add_argument('--start', type=int, default=0, help='counter value of its first frame')
    ap.add_argument('--allow-gaps', action='store_true',
                    help='accept silence inside the sequence when nothing is lost')
    ap.add_argument('--ignore-before', action='store_true',
                    help='ignore what comes before the first frame holding counter START')
    ap.add_argument('--until', type=int, metavar='COUNTER',
                    help='check only the frames before the first one holding counter COUNTER '
                         '(where a later sequence begins)')
    ap.add_argument('--may-end-early', action='store_true',
                    help='the sequence may stop short (cut by a reset): whole and in order up to '
                         'where it stops, then only silence')
    ap.add_argument('--max-silence', type=float,
                    help='most seconds of silence before and after (counter16 default 0.5)')
    ap.add_argument('--max-problems', type=int, default=20, help='problems to list')
    args = ap.parse_args(argv)
    try:
        with open(args.file, 'rb') as f:
            blob = f.read()
        data, notes = parse_wav(blob, args.rate)
    except (OSError, WavError) as e:
        print(f'check-wav: {args.file}: {e}')
        return 2
    signal = SIGNALS.get(args.signal)
    if signal is None:
        signal = detect(data, frames_of(data))
        if signal is None and first_nonsilent(data) is not None:
            print(f'check-wav: {args.file}: the first non-silent frame is neither signal\'s '
                  '(give --signal)')
            return 1
        signal = signal or Counter24   # all silence: reported by check()
    frames = (args.frames if args.frames is not None else
              round(args.seconds * args.rate) if args.seconds is not None else
              signal.default_frames)
    if frames <= 0 or args.start < 0 or (signal.limit and args.start + frames > signal.limit):
        print(f'check-wav: --start and the length must stay within the {signal.name} counter',
              file=sys.stderr)
        return 2
    max_silence = args.max_silence if args.max_silence is not None else signal.default_max_silence
    ok, lines = check(data, args.rate, frames, args.start, args.allow_gaps, args.ignore_before,
                      args.max_problems, signal, max_silence, args.until, args.may_end_early)
    for line in notes + lines:
        print(f'check-wav: {line}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
