//! The command rings (Intel HDA 1.0a §4.4.1, §4.4.2): verbs go out through
//! the Command Outbound Ring Buffer (CORB), responses come back in the
//! Response Inbound Ring Buffer (RIRB), both in DMA memory.
//!
//! One verb is in flight at a time: write it at CORBWP + 1, move CORBWP,
//! then poll RIRBWP until the controller has written a response. Every wait
//! is a bounded number of register reads (`budget`), never a time.
//!
//! RINTCNT is 1 and RIRBCTL.RINTCTL is on, with the controller interrupt
//! (INTCTL.CIE) off, so nothing interrupts; RIRBSTS.RINTFL is cleared after
//! each response. QEMU's `intel-hda` needs that: it stops fetching verbs
//! once RINTCNT responses have arrived until RINTFL is cleared, and it
//! never sets RINTFL unless RINTCTL is on.

use super::codec::{Cad, CommandError, Commands, Verb};
use super::regs::*;
use core::sync::atomic::{fence, Ordering};
use sddf_bindings::SharedRegion;

/// Bytes of one RIRB entry: the response, then the extended response.
const RIRB_ENTRY: usize = 8;
/// Extended response: the codec address (bits 3:0) and unsolicited (bit 4).
const EX_UNSOLICITED: u32 = 1 << 4;

/// Why the rings could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// A DMA engine did not stop or start (the register named) within the
    /// poll budget.
    Stuck(&'static str),
    /// The controller offers no ring size (CORBSIZE/RIRBSIZE capability 0).
    NoSize,
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::Stuck(reg) => write!(f, "{reg} did not take its new value"),
            RingError::NoSize => f.write_str("no supported CORB/RIRB size"),
        }
    }
}

/// Counts of odd things the rings saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Unsolicited responses (ignored: this driver enables none).
    pub unsolicited: u64,
    /// Responses from a codec that was not asked (ignored).
    pub wrong_codec: u64,
    /// Responses found before a verb was sent (late answers to a verb that
    /// timed out; dropped).
    pub stale: u64,
    /// Response overruns (RIRBSTS.RIRBOIS).
    pub overruns: u64,
    /// CORBRP.CORBRPRST never read back as 1 (QEMU clears it at once; the
    /// spec expects it to be seen).
    pub rp_reset_unseen: u64,
}

/// The CORB and RIRB, set up at fixed offsets of the DMA region.
#[derive(Debug)]
pub struct CommandRing {
    corb_at: usize,
    rirb_at: usize,
    entries: u16,
    corb_wp: u16,
    rirb_rp: u16,
    budget: u32,
    /// What went wrong but was survived.
    pub stats: RingStats,
}

/// Polls `read` until `done` holds, at most `budget` reads.
pub(crate) fn poll<T: Copy>(
    budget: u32,
    mut read: impl FnMut() -> T,
    mut done: impl FnMut(T) -> bool,
) -> bool {
    (0..budget.max(1)).any(|_| done(read()))
}

/// The largest size both rings offer: (size field, entries).
fn ring_size(caps: u8) -> Option<(u8, u16)> {
    let caps = caps >> 4;
    [(4, 2u8, 256u16), (2, 1, 16), (1, 0, 2)]
        .into_iter()
        .find(|c| caps & c.0 != 0)
        .map(|c| (c.1, c.2))
}

impl CommandRing {
    /// Stops both ring DMA engines, places the rings at `corb_at` and
    /// `rirb_at` of `dma` (I/O address `io_addr`; both offsets 128-byte
    /// aligned, 1 KiB and 2 KiB of room), resets the pointers and starts
    /// them again.
    pub fn init(
        regs: &mut impl HdaRegisters,
        io_addr: u64,
        corb_at: usize,
        rirb_at: usize,
        budget: u32,
    ) -> Result<CommandRing, RingError> {
        regs.write8(CORBCTL, 0);
        if !poll(budget, || regs.read8(CORBCTL), |v| v & CORBCTL_RUN == 0) {
            return Err(RingError::Stuck("CORBCTL.CORBRUN"));
        }
        regs.write8(RIRBCTL, 0);
        if !poll(budget, || regs.read8(RIRBCTL), |v| v & RIRBCTL_DMAEN == 0) {
            return Err(RingError::Stuck("RIRBCTL.RIRBDMAEN"));
        }
        let corb_caps = regs.read8(CORBSIZE);
        let rirb_caps = regs.read8(RIRBSIZE);
        let (field, entries) = ring_size(corb_caps & rirb_caps).ok_or(RingError::NoSize)?;
        regs.write8(CORBSIZE, (corb_caps & !3) | field);
        regs.write8(RIRBSIZE, (rirb_caps & !3) | field);

        let corb = io_addr + corb_at as u64;
        regs.write32(CORBLBASE, corb as u32);
        regs.write32(CORBUBASE, (corb >> 32) as u32);
        regs.write16(CORBWP, 0);
        let mut stats = RingStats::default();
        regs.write16(CORBRP, CORBRP_RST);
        if !poll(budget, || regs.read16(CORBRP), |v| v & CORBRP_RST != 0) {
            stats.rp_reset_unseen += 1;
        }
        regs.write16(CORBRP, 0);
        if !poll(budget, || regs.read16(CORBRP), |v| v & CORBRP_RST == 0) {
            return Err(RingError::Stuck("CORBRP.CORBRPRST"));
        }

        let rirb = io_addr + rirb_at as u64;
        regs.write32(RIRBLBASE, rirb as u32);
        regs.write32(RIRBUBASE, (rirb >> 32) as u32);
        regs.write16(RIRBWP, RIRBWP_RST);
        regs.write16(RINTCNT, 1);
        regs.write8(RIRBSTS, RIRBSTS_RINTFL | RIRBSTS_RIRBOIS);
        regs.write8(RIRBCTL, RIRBCTL_DMAEN | RIRBCTL_RINTCTL);
        regs.write8(CORBCTL, CORBCTL_RUN);
        if !poll(budget, || regs.read8(CORBCTL), |v| v & CORBCTL_RUN != 0) {
            return Err(RingError::Stuck("CORBCTL.CORBRUN"));
        }
        let rirb_rp = regs.read16(RIRBWP) & 0xff;
        Ok(CommandRing { corb_at, rirb_at, entries, corb_wp: 0, rirb_rp, budget, stats })
    }

    /// Entries per ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// The controller's RIRB write pointer, checked.
    fn rirb_wp(&self, regs: &mut impl HdaRegisters) -> Result<u16, CommandError> {
        let wp = regs.read16(RIRBWP) & 0xff;
        if wp >= self.entries {
            return Err(CommandError::BadWritePointer(wp));
        }
        Ok(wp)
    }

    /// Sends `verb` and waits (at most `budget` polls) for its codec's
    /// solicited response. Responses left over from an earlier verb are
    /// dropped first; unsolicited ones and ones from another codec are
    /// skipped.
    pub fn command(
        &mut self,
        regs: &mut impl HdaRegisters,
        dma: &SharedRegion,
        verb: Verb,
    ) -> Result<u32, CommandError> {
        let wp = self.rirb_wp(regs)?;
        if wp != self.rirb_rp {
            self.stats.stale += u64::from((wp + self.entries - self.rirb_rp) % self.entries);
            self.rirb_rp = wp;
            regs.write8(RIRBSTS, RIRBSTS_RINTFL | RIRBSTS_RIRBOIS);
        }
        let next = (self.corb_wp + 1) % self.entries;
        let _ = dma.store::<u32>(self.corb_at + 4 * usize::from(next), verb.word().to_le());
        // The CORB entry must be in memory before the controller sees the
        // new write pointer.
        fence(Ordering::SeqCst);
        regs.write16(CORBWP, next);
        self.corb_wp = next;
        for _ in 0..self.budget.max(1) {
            if let Some(response) = self.collect(regs, dma, verb.cad())? {
                return Ok(response);
            }
        }
        Err(CommandError::Timeout)
    }

    /// Reads the responses the controller has written since the last look;
    /// the first solicited one from `cad`, if any.
    fn collect(
        &mut self,
        regs: &mut impl HdaRegisters,
        dma: &SharedRegion,
        cad: Cad,
    ) -> Result<Option<u32>, CommandError> {
        let wp = self.rirb_wp(regs)?;
        if wp == self.rirb_rp {
            return Ok(None);
        }
        // Written by the controller before it moved RIRBWP.
        fence(Ordering::SeqCst);
        let mut answer = None;
        while self.rirb_rp != wp {
            self.rirb_rp = (self.rirb_rp + 1) % self.entries;
            let at = self.rirb_at + RIRB_ENTRY * usize::from(self.rirb_rp);
            let response = u32::from_le(dma.load::<u32>(at).unwrap_or(0));
            let ex = u32::from_le(dma.load::<u32>(at + 4).unwrap_or(0));
            if ex & EX_UNSOLICITED != 0 {
                self.stats.unsolicited += 1;
            } else if ex & 0xf != u32::from(cad.get()) {
                self.stats.wrong_codec += 1;
            } else if answer.is_none() {
                answer = Some(response);
            } else {
                self.stats.stale += 1;
            }
        }
        let sts = regs.read8(RIRBSTS);
        if sts & RIRBSTS_RIRBOIS != 0 {
            self.stats.overruns += 1;
        }
        regs.write8(RIRBSTS, RIRBSTS_RINTFL | RIRBSTS_RIRBOIS);
        Ok(answer)
    }
}

/// The rings with the registers and DMA memory they use: what the codec
/// walk sends its commands through.
pub struct Port<'a, R> {
    /// The rings.
    pub ring: &'a mut CommandRing,
    /// The controller's registers.
    pub regs: &'a mut R,
    /// The DMA region holding the rings.
    pub dma: &'a SharedRegion,
}

impl<R: HdaRegisters> Commands for Port<'_, R> {
    fn command(&mut self, verb: Verb) -> Result<u32, CommandError> {
        self.ring.command(self.regs, self.dma, verb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_takes_the_largest_offered() {
        assert_eq!(ring_size(0x42), Some((2, 256)));
        assert_eq!(ring_size(0x30), Some((1, 16)));
        assert_eq!(ring_size(0x10), Some((0, 2)));
        assert_eq!(ring_size(0x02), None);
    }

    #[test]
    fn poll_counts_reads_not_time() {
        let mut reads = 0;
        assert!(!poll(
            5,
            || {
                reads += 1;
                reads
            },
            |v| v > 10
        ));
        assert_eq!(reads, 5);
        let mut reads = 0;
        assert!(poll(
            5,
            || {
                reads += 1;
                reads
            },
            |v| v == 3
        ));
        assert_eq!(reads, 3);
    }
}
