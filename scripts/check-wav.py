#!/usr/bin/env python3
"""Checks a recording of the `sound` example's test counter (stdlib only).

    scripts/check-wav.py FILE [--frames N] [--rate HZ] [--max-silence SECONDS]
    scripts/check-wav.py --self-test

The counter is N frames of 16-bit stereo where frame n is left = n, right =
~n (both as 16-bit two's complement, wrapping). Silence (0, 0) never matches
it: frame 0 is (0, -1). The file must be PCM, 2 channels, 16 bits at RATE;
it must hold the counter exactly once, whole and in order (nothing lost,
repeated, reordered or altered), with only silence before and after it, and
at most --max-silence seconds of that on either side: the recording's
length is the counter's length plus a little, so the emulated card played
it at the rate it was given (QEMU's wav backend writes what the codec
delivers, paced by the virtual clock).

Exit status 0 if all holds, 1 with the first difference otherwise.
--self-test checks the checker on made-up recordings: the right one passes;
one with a period lost, repeated, two periods swapped, a sample altered,
noise after the end, the end cut, or too much silence fails.
"""
import argparse
import struct
import sys


def read_wav(path):
    """(channels, rate, bits, data bytes) of a RIFF/WAVE PCM file. A data
    chunk whose size field is 0 or runs past the end (a writer that did not
    finish the header) is taken to the end of the file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 12 or raw[0:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    fmt, pos = None, 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", raw, body)
            if tag != 1:
                raise ValueError(f"format tag {tag}, not PCM (1)")
            fmt = (channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("data chunk before the fmt chunk")
            end = len(raw) if size == 0 or body + size > len(raw) else body + size
            return (*fmt, raw[body:end])
        pos = body + size + (size & 1)
    raise ValueError("no data chunk")


def counter_frame(n):
    return (n & 0xffff, ~n & 0xffff)


def check(frames, want, rate, max_silence):
    """Returns a list of problems (empty: the recording is right) and a summary."""
    start = next((i for i, f in enumerate(frames) if f == counter_frame(0)), None)
    if start is None:
        return [f"the counter's first frame (0, 0xffff) is not in the {len(frames)} frames"], ""
    problems = []
    noisy = [i for i in range(start) if frames[i] != (0, 0)]
    if noisy:
        problems.append(f"{len(noisy)} non-silent frames before the counter (first at frame {noisy[0]}: "
                        f"{frames[noisy[0]]})")
    for n in range(want):
        at = start + n
        if at >= len(frames):
            problems.append(f"the recording ends after counter frame {n - 1} of {want}")
            break
        if frames[at] != counter_frame(n):
            got = frames[at]
            jump = (got[0] - n + 0x8000) % 0x10000 - 0x8000 if got[1] == ~got[0] & 0xffff else None
            hint = f" (a counter frame {jump:+} frames away: audio skipped or repeated)" if jump else ""
            problems.append(f"frame {at}: counter frame {n} expected {counter_frame(n)}, got {got}{hint}")
            break
    after = frames[start + want:]
    noisy = [i for i, f in enumerate(after) if f != (0, 0)]
    if noisy and not problems:
        problems.append(f"{len(noisy)} non-silent frames after the counter (first {after[noisy[0]]} "
                        f"at {noisy[0]} frames after its end)")
    limit = int(max_silence * rate)
    if start > limit:
        problems.append(f"{start / rate:.3f} s of silence before the counter (at most {max_silence} s)")
    if len(after) > limit:
        problems.append(f"{len(after) / rate:.3f} s of silence after the counter (at most {max_silence} s)")
    summary = (f"{len(frames)} frames ({len(frames) / rate:.3f} s): {start} silent, the {want}-frame counter "
               f"whole and in order, {len(after)} silent")
    return problems, summary


def self_test():
    """The checker against made-up recordings (1024-frame periods)."""
    want, period = 8192, 1024
    good = [(0, 0)] * 100 + [counter_frame(n) for n in range(want)] + [(0, 0)] * 3000
    start = 100

    def cut(frames, at, n):
        return frames[:at] + frames[at + n:]

    p2 = start + 2 * period
    cases = {
        "right": (good, True),
        "a period lost": (cut(good, p2, period), False),
        "a period repeated": (good[:p2 + period] + good[p2:], False),
        "two periods swapped": (good[:p2] + good[p2 + period:p2 + 2 * period] + good[p2:p2 + period]
                                + good[p2 + 2 * period:], False),
        "a sample altered": (good[:p2 + 7] + [(good[p2 + 7][0] ^ 1, good[p2 + 7][1])] + good[p2 + 8:], False),
        "noise after the end": (good[:-5] + [(1, 2)] + good[-4:], False),
        "noise before the start": ([(3, 3)] + good[1:], False),
        "the end cut off": (good[:start + want - 1], False),
        "too much silence": ([(0, 0)] * 30000 + good, False),
    }
    failed = 0
    for name, (frames, ok) in cases.items():
        problems, _ = check(frames, want, 48000, 0.5)
        verdict = not problems
        print(f"check-wav self-test: {name}: {'OK' if verdict else 'FAIL: ' + problems[0]}")
        if verdict != ok:
            print(f"check-wav self-test: wrong verdict for '{name}'")
            failed += 1
    return 1 if failed else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wav")
    ap.add_argument("--frames", type=int, default=48000, help="counter frames (default 48000: 1 s)")
    ap.add_argument("--rate", type=int, default=48000, help="expected sample rate (default 48000)")
    ap.add_argument("--max-silence", type=float, default=0.5,
                    help="most seconds of silence allowed before and after the counter (default 0.5)")
    args = ap.parse_args()
    try:
        channels, rate, bits, data = read_wav(args.wav)
    except (OSError, ValueError, struct.error) as e:
        print(f"check-wav: {args.wav}: {e}")
        return 1
    if (channels, rate, bits) != (2, args.rate, 16):
        print(f"check-wav: {args.wav}: {channels} channels, {rate} Hz, {bits} bits; "
              f"want 2 channels, {args.rate} Hz, 16 bits")
        return 1
    usable = len(data) - len(data) % 4
    frames = list(struct.iter_unpack("<HH", data[:usable]))
    problems, summary = check(frames, args.frames, rate, args.max_silence)
    if problems:
        for p in problems:
            print(f"check-wav: FAIL: {p}")
        return 1
    print(f"check-wav: OK: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
