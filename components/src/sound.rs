//! Sound: drivers that play PCM audio, and the seam that feeds them.
//!
//! A driver plays a cyclic buffer of equal periods; whenever the hardware
//! has finished some, it asks its [`PeriodSource`] to refill them. The
//! source is whatever the protection domain connects: a built-in test
//! signal ([`CounterSource`]), or the sDDF sound driver queues
//! ([`sddf`]), fed by the sound virtualiser ([`virt`]).

pub mod hda;
pub mod sddf;
pub mod virt;

/// What a [`PeriodSource`] put into a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Audio (a short last stretch is padded with silence by the source).
    Audio,
    /// Nothing is ready (an underrun): the driver plays a period of silence
    /// instead and the stream goes on.
    Silence,
    /// The stream is over: the driver plays silence from here, and stops
    /// once what was queued before has played.
    End,
}

/// Where a driver's audio comes from, one period at a time.
pub trait PeriodSource {
    /// Fills all of `period` with the next audio, in the stream's format.
    fn fill(&mut self, period: &mut [u8]) -> Fill;

    /// Whether `fill` can fill `bytes` with audio now, or the stream is
    /// ending: until then a driver with time to spare leaves a free period
    /// empty rather than pad it with silence mid-stream.
    fn ready(&self, bytes: usize) -> bool {
        let _ = bytes;
        true
    }

    /// The hardware has finished playing `count` more periods, in the order
    /// they were filled (a source can complete its clients' buffers here).
    fn played(&mut self, count: u32) {
        let _ = count;
    }
}

/// A test signal that makes lost, repeated or reordered audio visible:
/// 16-bit stereo frames where frame `n` is left = `n as i16`, right =
/// `!n as i16`, for `frames` frames; then [`Fill::End`].
///
/// Silence (0, 0) never matches the pattern (frame 0 is (0, -1)), so
/// `scripts/check-wav.py` can find the counter in a recording.
#[derive(Clone, Copy, Debug)]
pub struct CounterSource {
    next: u32,
    frames: u32,
}

/// Bytes of one 16-bit stereo frame.
pub const FRAME_BYTES_S16_STEREO: usize = 4;

impl CounterSource {
    /// A counter of `frames` frames.
    pub fn new(frames: u32) -> CounterSource {
        CounterSource { next: 0, frames }
    }

    /// Frames not yet handed out.
    pub fn remaining(&self) -> u32 {
        self.frames - self.next
    }

    /// The frame with number `n`, as its 4 bytes.
    pub fn frame(n: u32) -> [u8; 4] {
        let [l0, l1] = (n as u16).to_le_bytes();
        let [r0, r1] = (!(n as u16)).to_le_bytes();
        [l0, l1, r0, r1]
    }
}

impl PeriodSource for CounterSource {
    fn fill(&mut self, period: &mut [u8]) -> Fill {
        period.fill(0);
        if self.next == self.frames {
            return Fill::End;
        }
        for frame in period.chunks_exact_mut(FRAME_BYTES_S16_STEREO) {
            if self.next == self.frames {
                break;
            }
            frame.copy_from_slice(&CounterSource::frame(self.next));
            self.next += 1;
        }
        Fill::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_frames_then_silence_padding_then_end() {
        let mut src = CounterSource::new(3);
        let mut period = [0xaau8; 8];
        assert_eq!(src.fill(&mut period), Fill::Audio);
        assert_eq!(period, [0, 0, 0xff, 0xff, 1, 0, 0xfe, 0xff]);
        assert_eq!(src.fill(&mut period), Fill::Audio);
        assert_eq!(period, [2, 0, 0xfd, 0xff, 0, 0, 0, 0], "padded with silence");
        assert_eq!(src.remaining(), 0);
        assert_eq!(src.fill(&mut period), Fill::End);
        assert_eq!(period, [0; 8]);
    }

    #[test]
    fn counter_wraps_at_16_bits() {
        assert_eq!(CounterSource::frame(0x1_0001), [1, 0, 0xfe, 0xff]);
        assert_eq!(CounterSource::frame(0x8000), [0, 0x80, 0xff, 0x7f]);
    }
}
