#!/usr/bin/env python3
"""Checks a WAV recording of the sound tests' counter signal.

    scripts/check-wav.py FILE [--seconds 10] [--rate 48000] [--start 0]
                              [--allow-gaps] [--ignore-before]

FILE is what QEMU's `-audiodev wav,...` wrote while a guest played the signal
with guest/sndplay (docs/sound-guest.md). The signal: 2 channels, signed
16-bit little-endian; frame n of a 24-bit counter is

    left  = n & 0xffff
    right = (n >> 16) & 0xff | check(n) << 8
    check(n) = ((n * 0x9e3779b1 + 0x7f4a7c15) mod 2^32) >> 24

The check passes when the file holds counter values START .. START+N-1
(N = seconds * rate), each exactly once and in order, with only silence
(frames of two zero samples) before and after. Anything else is reported
precisely: the file frame where it happens (and its time), what was expected
and what was found, and what it means (frames lost, repeated or out of
order, channels swapped, a sample corrupted, the sequence cut short).

--allow-gaps accepts silence inside the sequence as long as the counter then
continues where it stopped (a stream stopped and started again: nothing may
be lost). --ignore-before skips everything before the first frame holding
counter START (e.g. what a guest played before it was rebooted).

The RIFF sizes may be 0 (QEMU writes them only when it exits cleanly; a
killed QEMU leaves them 0): the data then runs to the end of the file.

Exit status: 0 the check passed, 1 it failed, 2 the file is not a usable
WAV file (not 16-bit stereo PCM, another rate, unreadable).
Standard library only.
"""
import argparse
import struct
import sys
from array import array

COUNTER_LIMIT = 1 << 24
SILENCE = (0, 0)


# --- The signal ----------------------------------------------------------

def check_byte(n):
    """The check byte of counter value n."""
    return ((n * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF) >> 24


def encode(n):
    """Frame of counter value n, as two unsigned 16-bit samples (left, right)."""
    return n & 0xFFFF, ((n >> 16) & 0xFF) | check_byte(n) << 8


def decode(left, right):
    """The counter value of a frame, or None if it is not a counter frame."""
    n = left | (right & 0xFF) << 16
    return n if right >> 8 == check_byte(n) else None


def signal_bytes(start, count):
    """count frames of the signal from counter value start, as WAV data."""
    a = array('H')
    for n in range(start, start + count):
        a.extend(encode(n))
    if sys.byteorder == 'big':
        a.byteswap()
    return a.tobytes()


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
        for kind, first, last, text in self.problems[:self.max_problems]:
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


def walk(s, i, start, end, allow_gaps, rep):
    """Follows the sequence from file frame i, where counter start is expected,
    until counter end; records problems. Returns (next file frame, next counter,
    silent gaps [(file frame, length, counter after)])."""
    nframes, want, gaps = len(s) // 2, start, []
    while i < nframes and want < end:
        left, right = s[2 * i], s[2 * i + 1]
        if (left, right) == encode(want):
            want += 1
            i += 1
            continue
        if (left, right) == SILENCE:
            j = i
            while j < nframes and s[2 * j] == 0 and s[2 * j + 1] == 0:
                j += 1
            if j == nframes:
                break   # silence to the end: the sequence is cut short
            resumes = decode(s[2 * j], s[2 * j + 1]) == want
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
        n = decode(left, right)
        # A jump counts only if the next frame follows it: else this one frame
        # is damaged (a stray frame can pass the 8-bit check by chance).
        confirmed = n is not None and (i + 1 == nframes or
                                       (s[2 * i + 2], s[2 * i + 3]) == encode(n + 1))
        if (right, left) == encode(want):
            rep.problem('swapped', i, f'left and right channels swapped (counter {want})')
            want += 1
        elif confirmed:
            if n > want:
                rep.problem('lost', i, f'expected counter {want}, got {n}: {n - want} frames '
                            f'lost (counter {want}..{n - 1} missing)')
            else:
                rep.problem('back', i, f'expected counter {want}, got {n}: the counter goes '
                            f'back by {want - n} frames (repeated or out of order)')
            want = n + 1
        else:
            el, er = encode(want)
            what = 'not a counter frame' if n is None else f'a lone frame of counter {n}'
            rep.problem('corrupt', i, f'{what}: got (L={left:#06x}, R={right:#06x}), '
                        f'expected counter {want} (L={el:#06x}, R={er:#06x})')
            want += 1
        i += 1
    return i, want, gaps


def check(data, rate, frames, start=0, allow_gaps=False, ignore_before=False, max_problems=20):
    """Checks WAV data; returns (ok, report lines)."""
    rep = Report(rate, max_problems)
    nframes = len(data) // 4
    end = start + frames
    first = first_nonsilent(data)
    if first is None:
        return False, [f'FAIL: the file holds only silence ({nframes} frames, '
                       f'{nframes / rate:.3f} s)']
    begin = first
    if ignore_before:
        begin = find_frame(data, signal_bytes(start, 1))
        if begin is None:
            return False, [f'FAIL: no frame holds counter {start} (the start of the sequence); '
                           f'first non-silent frame: {rep.at(first)}']
    s = frames_of(data)
    if begin > first:
        sounding = sum(1 for k in range(first, begin) if s[2 * k] or s[2 * k + 1])
        rep.notes.append(f'ignored file frames {first}..{begin - 1} before counter {start} '
                         f'({sounding} of them not silent)')
    # Fast path: all of it in place, silence before and after.
    if data[begin * 4:(begin + frames) * 4] == signal_bytes(start, frames):
        i, want, gaps = begin + frames, end, []
    else:
        i, want, gaps = walk(s, begin, start, end, allow_gaps, rep)
    if want < end:
        if i >= nframes:
            rep.problem('cut', i, f'the file ends after counter {want - 1}: the last '
                        f'{end - want} of {frames} frames are missing')
        else:
            rep.problem('cut', i, f'silence to the end of the file after counter {want - 1}: '
                        f'the last {end - want} of {frames} frames are missing')
    else:
        extra = first_nonsilent(data, i)
        if extra is not None:
            n = decode(s[2 * extra], s[2 * extra + 1])
            what = f'counter {n}' if n is not None else 'a frame that is not a counter frame'
            rep.problem('extra', extra, f'after the end of the sequence (counter {end - 1}, file '
                        f'frame {i - 1}) the file holds {what}')
    head = (f'counter {start}..{end - 1} ({frames} frames, {frames / rate:.3f} s at {rate} Hz) '
            f'starting at {rep.at(begin)}')
    lines = rep.notes[:]
    if gaps and allow_gaps:
        lines.append(f'{len(gaps)} silent gaps inside the sequence (allowed), nothing lost: ' +
                     ', '.join(f'{n} frames before counter {c}' for _, n, c in gaps[:10]))
    if rep.problems:
        return False, lines + [f'FAIL: {head}: {len(rep.problems)} problem(s)'] + rep.lines()
    before = 'silence' if begin == first else 'silence and ignored frames'
    return True, lines + [f'OK: {head}: complete and in order; before it {begin} frames '
                          f'({before}), after it {nframes - i} frames of silence']


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('file')
    ap.add_argument('--seconds', type=float, default=10.0, help='length of the sequence')
    ap.add_argument('--rate', type=int, default=48000, help='frames per second')
    ap.add_argument('--start', type=int, default=0, help='counter value of its first frame')
    ap.add_argument('--allow-gaps', action='store_true',
                    help='accept silence inside the sequence when nothing is lost')
    ap.add_argument('--ignore-before', action='store_true',
                    help='ignore what comes before the first frame holding counter START')
    ap.add_argument('--max-problems', type=int, default=20, help='problems to list')
    args = ap.parse_args(argv)
    frames = round(args.seconds * args.rate)
    if frames <= 0 or args.start < 0 or args.start + frames > COUNTER_LIMIT:
        print('check-wav: --start and --seconds must stay within the 24-bit counter',
              file=sys.stderr)
        return 2
    try:
        with open(args.file, 'rb') as f:
            blob = f.read()
        data, notes = parse_wav(blob, args.rate)
    except (OSError, WavError) as e:
        print(f'check-wav: {args.file}: {e}')
        return 2
    ok, lines = check(data, args.rate, frames, args.start, args.allow_gaps, args.ignore_before,
                      args.max_problems)
    for line in notes + lines:
        print(f'check-wav: {line}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
