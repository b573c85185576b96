//! The output stream's cyclic buffer: the Buffer Descriptor List (Intel
//! HDA 1.0a §3.6.2) and the bookkeeping of which periods the DMA engine
//! has finished, from its link position (SDnLPIB, §3.3.37).
//!
//! The buffer is `periods` equal periods, one BDL entry each, every entry
//! with Interrupt On Completion. Period `k` of the stream (counted from the
//! start) lives in slot `k % periods`. At start all slots are filled; each
//! time the position shows the engine has moved on, the slots it left are
//! refilled with the next periods. Progress is read from the position, not
//! counted in interrupts: QEMU raises one buffer-completion interrupt for
//! several entries when it is late, and a driver may be late too.

use sddf_bindings::SharedRegion;

/// Bytes of one BDL entry: address (64), length (32), flags (32).
pub const BDL_ENTRY: usize = 16;
/// BDL entry flag: interrupt on completion.
const BDL_IOC: u32 = 1;

/// Writes the BDL at `at` in `dma`: `periods` entries of `period_bytes`,
/// the buffer starting at I/O address `buffer_io`, each with IOC.
pub fn write_bdl(
    dma: &SharedRegion,
    at: usize,
    buffer_io: u64,
    periods: u16,
    period_bytes: u32,
) -> Result<(), sddf_bindings::Error> {
    for i in 0..usize::from(periods) {
        let entry = at + i * BDL_ENTRY;
        let address = buffer_io + (i as u64) * u64::from(period_bytes);
        dma.store::<u64>(entry, address.to_le())?;
        dma.store::<u32>(entry + 8, period_bytes.to_le())?;
        dma.store::<u32>(entry + 12, BDL_IOC.to_le())?;
    }
    Ok(())
}

/// A link position that cannot be: at or past the end of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPosition(pub u32);

/// Which periods are queued, played and still to be filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodRing {
    periods: u16,
    period_bytes: u32,
    /// The slot the engine was in at the last look.
    slot: u16,
    /// Periods the engine has finished.
    consumed: u64,
    /// Periods written into the buffer.
    filled: u64,
    /// The first period filled after the source ended.
    end: Option<u64>,
    /// Periods always kept filled ahead of the one the engine is in.
    lead: u16,
    /// Periods of silence to play after the end before stopping.
    drain: u16,
}

impl PeriodRing {
    /// An empty ring of `periods` slots of `period_bytes` that keeps
    /// `lead` periods filled ahead of the engine; it is finished once
    /// `drain` periods after the source's end have played.
    pub fn new(periods: u16, period_bytes: u32, lead: u16, drain: u16) -> PeriodRing {
        PeriodRing {
            periods,
            period_bytes,
            slot: 0,
            consumed: 0,
            filled: 0,
            end: None,
            drain,
            lead,
        }
    }

    /// The slot to fill next, while one is free.
    pub fn next_free(&self) -> Option<u16> {
        (self.filled < self.consumed + u64::from(self.periods))
            .then(|| (self.filled % u64::from(self.periods)) as u16)
    }

    /// Whether the next free slot is within the lead: one of the `lead`
    /// periods after the one the engine is in (before it starts, one of the
    /// first `lead + 1`). It must be filled now, whatever the source has.
    pub fn needed_next(&self) -> bool {
        self.filled <= self.consumed + u64::from(self.lead)
    }

    /// Marks the next free slot filled; `ended` if the source had ended
    /// (the first such period is where the stream's end is).
    pub fn mark_filled(&mut self, ended: bool) {
        if ended && self.end.is_none() {
            self.end = Some(self.filled);
        }
        self.filled += 1;
    }

    /// Whether the source has ended.
    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// Takes a new link position; returns how many periods the engine
    /// finished since the last one. A position past the buffer is refused
    /// and changes nothing.
    pub fn advance(&mut self, lpib: u32) -> Result<u16, BadPosition> {
        let total = u64::from(self.periods) * u64::from(self.period_bytes);
        if u64::from(lpib) >= total {
            return Err(BadPosition(lpib));
        }
        let slot = (lpib / self.period_bytes) as u16;
        let done = (slot + self.periods - self.slot) % self.periods;
        self.slot = slot;
        self.consumed += u64::from(done);
        Ok(done)
    }

    /// Periods the engine has finished.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Periods written into the buffer.
    pub fn filled(&self) -> u64 {
        self.filled
    }

    /// Finished periods that came from the source (those up to and
    /// including the period where it ended).
    pub fn consumed_from_source(&self) -> u64 {
        self.end.map_or(self.consumed, |e| self.consumed.min(e + 1))
    }

    /// Whether everything the source gave, and `drain` periods after it,
    /// has played.
    pub fn finished(&self) -> bool {
        self.end.is_some_and(|e| self.consumed >= e + u64::from(self.drain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled_ring(periods: u16) -> PeriodRing {
        let mut r = PeriodRing::new(periods, 256, 1, 2);
        while r.next_free().is_some() {
            r.mark_filled(false);
        }
        r
    }

    #[test]
    fn bdl_entries_cover_the_buffer_with_ioc() {
        let dma = SharedRegion::leak_zeroed(0x100);
        write_bdl(&dma, 0x20, 0x4000_2000, 3, 0x1000).unwrap();
        for i in 0..3 {
            let e = 0x20 + i * BDL_ENTRY;
            assert_eq!(dma.load::<u64>(e).unwrap(), 0x4000_2000 + 0x1000 * i as u64);
            assert_eq!(dma.load::<u32>(e + 8).unwrap(), 0x1000);
            assert_eq!(dma.load::<u32>(e + 12).unwrap(), 1);
        }
        assert_eq!(dma.load::<u64>(0x20 + 3 * BDL_ENTRY).unwrap(), 0, "no entry past LVI");
        assert!(write_bdl(&dma, 0xf0, 0, 2, 0x100).is_err(), "past the region");
    }

    #[test]
    fn slots_are_refilled_in_order_as_the_position_moves() {
        let mut r = filled_ring(4);
        assert_eq!((r.filled(), r.next_free()), (4, None));
        assert_eq!(r.advance(100), Ok(0));
        assert_eq!(r.advance(256), Ok(1));
        assert_eq!(r.next_free(), Some(0));
        r.mark_filled(false);
        assert_eq!(r.next_free(), None, "slot 1 is still playing");
        // Late: two entries at once, across the wrap.
        assert_eq!(r.advance(3 * 256 + 5), Ok(2));
        assert_eq!(r.advance(10), Ok(1));
        let mut order = std::vec::Vec::new();
        while let Some(s) = r.next_free() {
            order.push(s);
            r.mark_filled(false);
        }
        assert_eq!(order, [1, 2, 3]);
        assert_eq!((r.consumed(), r.filled()), (4, 8));
    }

    #[test]
    fn the_lead_is_the_periods_after_the_one_the_engine_is_in() {
        let mut r = PeriodRing::new(6, 256, 2, 1);
        // Before the start: periods 0 (where the engine starts), 1 and 2.
        for _ in 0..3 {
            assert!(r.needed_next());
            r.mark_filled(false);
        }
        assert!(!r.needed_next(), "period 3 may wait for a whole period of audio");
        assert_eq!(r.advance(256), Ok(1)); // in period 1: 2 and 3 are the lead
        assert!(r.needed_next());
        r.mark_filled(false);
        assert!(!r.needed_next());
        assert_eq!(r.advance(3 * 256 + 10), Ok(2)); // late: in period 3, 4 and 5 are due
        assert!(r.needed_next());
        r.mark_filled(false);
        assert!(r.needed_next());
        r.mark_filled(false);
        assert!(!r.needed_next());
    }

    #[test]
    fn positions_past_the_buffer_are_refused() {
        let mut r = filled_ring(4);
        assert_eq!(r.advance(1024), Err(BadPosition(1024)));
        assert_eq!(r.advance(u32::MAX), Err(BadPosition(u32::MAX)));
        assert_eq!(r.consumed(), 0);
    }

    #[test]
    fn finishes_after_the_drain_periods_past_the_end() {
        let mut r = PeriodRing::new(2, 256, 1, 3);
        r.mark_filled(false); // period 0: audio
        r.mark_filled(true); // period 1: the source ended
        assert!(r.ended() && !r.finished());
        r.advance(256).unwrap(); // 0 played
        r.mark_filled(true);
        r.advance(0).unwrap(); // 1 played
        assert_eq!(r.consumed_from_source(), 2);
        assert!(!r.finished());
        r.mark_filled(true);
        r.advance(256).unwrap(); // 2 played: end (1) + drain (3) = 4 not yet
        assert!(!r.finished());
        r.advance(0).unwrap();
        assert!(r.finished());
        assert_eq!(r.consumed_from_source(), 2, "silence after the end is not the source's");
    }
}
