//! Driver for an Intel High Definition Audio controller (Intel HDA
//! specification 1.0a) and one of its codecs: plays a PCM stream from a
//! [`PeriodSource`] through the first output stream descriptor.
//!
//! Bring-up ([`Hda::new`]): controller reset (GCTL.CRST, §4.2.2), codec
//! discovery (STATESTS, §4.3), the CORB/RIRB command rings ([`corb`]),
//! then a walk of each codec found for an output pin and the DAC behind it
//! ([`codec`]), which is powered, unmuted and given the format and stream
//! tag. [`Hda::start`] resets and programs the stream descriptor (BDL,
//! CBL, LVI, format, tag), fills every period from the source and sets RUN.
//! Each buffer-completion interrupt ([`Hda::handle_irq`]) clears the status,
//! reads the link position and refills the periods the DMA engine has left
//! ([`stream`]); after the source ends, `drain_periods` of silence play,
//! then the stream stops by itself.
//!
//! The driver polls (bounded by `poll_budget` register reads) during
//! bring-up and is interrupt driven while playing. It needs the controller's
//! BAR mapped uncached, one DMA region ([`dma_bytes`]), and the
//! controller's interrupt.

pub mod codec;
pub mod corb;
#[cfg(test)]
pub(crate) mod fake;
pub mod regs;
pub mod stream;

use super::{Fill, PeriodSource};
use codec::{configure_output, find_output_path, Cad, CodecError, CommandError, OutputPath};
use corb::{poll, CommandRing, Port, RingError, RingStats};
use core::sync::atomic::{fence, Ordering};
use regs::*;
use sddf_bindings::SharedRegion;
use stream::{write_bdl, BadPosition, PeriodRing};

/// A PCM stream format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcmFormat {
    /// Frames per second.
    pub rate: u32,
    /// Bits per sample: 8, 16, 20, 24 or 32.
    pub bits: u8,
    /// Channels, 1..16.
    pub channels: u8,
}

/// A rate the format word can express (§3.7.1): rate, 44.1 kHz base,
/// multiplier code, divisor code, bit in the PCM rates parameter (§7.3.4.7).
type Rate = (u32, bool, u16, u16, u32);
/// A sample size: bits, format code, bit in the PCM sizes parameter.
type Size = (u8, u16, u32);

const RATES: [Rate; 11] = [
    (8000, false, 0, 5, 0),
    (11025, true, 0, 3, 1),
    (16000, false, 0, 2, 2),
    (22050, true, 0, 1, 3),
    (32000, false, 1, 2, 4),
    (44100, true, 0, 0, 5),
    (48000, false, 0, 0, 6),
    (88200, true, 1, 0, 7),
    (96000, false, 1, 0, 8),
    (176400, true, 3, 0, 9),
    (192000, false, 3, 0, 10),
];
const SIZES: [Size; 5] = [(8, 0, 16), (16, 1, 17), (20, 2, 18), (24, 3, 19), (32, 4, 20)];

impl PcmFormat {
    /// 48 kHz, 16-bit, stereo.
    pub const S16_STEREO_48K: PcmFormat = PcmFormat { rate: 48000, bits: 16, channels: 2 };

    fn codes(self) -> Option<(Rate, Size)> {
        let rate = RATES.into_iter().find(|r| r.0 == self.rate)?;
        let size = SIZES.into_iter().find(|s| s.0 == self.bits)?;
        (1..=16).contains(&self.channels).then_some((rate, size))
    }

    /// The stream format word for SDnFMT and Set Converter Format (§3.7.1):
    /// base (bit 14), multiplier (13:11), divisor (10:8), bits (6:4),
    /// channels - 1 (3:0). `None` for a format it cannot express.
    pub fn word(self) -> Option<u16> {
        let ((_, base44, mult, div, _), (_, bits, _)) = self.codes()?;
        Some(
            u16::from(base44) << 14
                | mult << 11
                | div << 8
                | bits << 4
                | u16::from(self.channels - 1),
        )
    }

    /// Whether a widget's Supported PCM Size, Rates parameter includes it.
    pub fn supported_by(self, pcm: u32) -> bool {
        self.codes().is_some_and(|((.., rate_bit), (_, _, size_bit))| {
            pcm & (1 << rate_bit) != 0 && pcm & (1 << size_bit) != 0
        })
    }

    /// Bytes per frame in memory: samples of 8 or 16 bits take their size,
    /// larger ones 32 bits (§4.5.1).
    pub fn frame_bytes(self) -> u32 {
        let container = match self.bits {
            8 => 1,
            16 => 2,
            _ => 4,
        };
        container * u32::from(self.channels)
    }
}

/// DMA memory: a region the controller can reach, and its I/O address.
pub struct Dma {
    /// The region, mapped in this PD.
    pub region: SharedRegion,
    /// Its address as the controller sees it.
    pub io_addr: u64,
}

/// Largest period the driver copies at once.
pub const MAX_PERIOD_BYTES: usize = 16 * 1024;
/// Most BDL entries a stream may have (§3.6.2).
pub const MAX_PERIODS: u16 = 256;

// Where things sit in the DMA region (all 128-byte aligned, §3.3.18,
// §3.3.25, §3.3.39): the CORB (256 entries of 4 bytes), the RIRB (256 of
// 8), the BDL, then the cyclic buffer.
const CORB_AT: usize = 0x0000;
const RIRB_AT: usize = 0x0400;
const BDL_AT: usize = 0x1000;
const BUFFER_AT: usize = 0x2000;

/// How to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The stream's format.
    pub format: PcmFormat,
    /// Periods in the cyclic buffer, 2..=256.
    pub periods: u16,
    /// Bytes per period: whole frames, a multiple of 128, at most
    /// [`MAX_PERIOD_BYTES`].
    pub period_bytes: u32,
    /// Periods kept filled ahead of the one the engine is in, 1..periods:
    /// a freed period beyond them waits until the source has a whole period
    /// of audio ([`PeriodSource::ready`]); one within them is filled at
    /// once, padded with silence. Small periods with a lead of about 1024
    /// frames leave a client the most time to send its next buffer.
    pub lead_periods: u16,
    /// Periods of silence played after the source ends, before the stream
    /// stops (what the codec and the host's audio buffers hold still has to
    /// come out: QEMU's codec buffers 8 KiB).
    pub drain_periods: u16,
    /// Register reads any wait may take before it gives up.
    pub poll_budget: u32,
    /// Stream tag shared by the stream descriptor and the DAC, 1..=15.
    pub stream_tag: u8,
}

impl Config {
    fn check(&self) -> Result<u16, InitError> {
        let format = self.format.word().ok_or(InitError::Config("unsupported format"))?;
        if !(2..=MAX_PERIODS).contains(&self.periods) {
            return Err(InitError::Config("periods must be 2..=256"));
        }
        let p = self.period_bytes;
        if p == 0
            || p % 128 != 0
            || p % self.format.frame_bytes() != 0
            || p as usize > MAX_PERIOD_BYTES
        {
            return Err(InitError::Config(
                "period_bytes: whole frames, 128-byte multiple, <= 16 KiB",
            ));
        }
        if !(1..self.periods).contains(&self.lead_periods) {
            return Err(InitError::Config("lead_periods must be 1..periods"));
        }
        if !(1..=15).contains(&self.stream_tag) {
            return Err(InitError::Config("stream_tag must be 1..=15"));
        }
        Ok(format)
    }
}

/// Bytes of DMA memory the driver needs for `config`.
pub fn dma_bytes(config: &Config) -> usize {
    BUFFER_AT + usize::from(config.periods) * config.period_bytes as usize
}

/// Why the controller could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The configuration is invalid (the reason).
    Config(&'static str),
    /// The DMA region is smaller than [`dma_bytes`], not 128-byte aligned,
    /// or above 4 GiB on a controller without 64-bit addressing.
    Dma,
    /// GCAP reports no output stream (or more streams than INTCTL has bits).
    NoOutputStream(u16),
    /// GCTL.CRST did not enter or leave reset.
    ResetStuck(&'static str),
    /// No codec raised its STATESTS bit after reset.
    NoCodec,
    /// The command rings could not be set up.
    Ring(RingError),
    /// No codec offers an output path; the last codec's reason.
    NoOutputPath(CodecError),
    /// Configuring the chosen path failed.
    Configure(CommandError),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::Config(why) => write!(f, "bad configuration: {why}"),
            InitError::Dma => f.write_str("DMA region too small, misaligned or unreachable"),
            InitError::NoOutputStream(gcap) => {
                write!(f, "no usable output stream (GCAP {gcap:#06x})")
            }
            InitError::ResetStuck(what) => write!(f, "controller reset stuck {what}"),
            InitError::NoCodec => f.write_str("no codec answered the reset (STATESTS 0)"),
            InitError::Ring(e) => write!(f, "command rings: {e}"),
            InitError::NoOutputPath(e) => write!(f, "no output path: {e}"),
            InitError::Configure(e) => write!(f, "configuring the output path: {e}"),
        }
    }
}

/// Why a stream stopped or could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// SDnCTL.RUN did not clear (or set) within the poll budget.
    RunStuck,
    /// SDnCTL.SRST did not clear within the poll budget.
    ResetStuck,
    /// The controller reported a descriptor error (SDnSTS.DESE): it could
    /// not fetch the BDL or a buffer.
    DescriptorError,
    /// The stream is not running.
    NotRunning,
}

impl core::fmt::Display for StreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StreamError::RunStuck => "stream RUN bit stuck",
            StreamError::ResetStuck => "stream reset stuck",
            StreamError::DescriptorError => "descriptor error (DMA fetch failed)",
            StreamError::NotRunning => "stream not running",
        })
    }
}

/// What an interrupt left the stream doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The stream is not running.
    Idle,
    /// Playing.
    Playing,
    /// Everything played; the stream has stopped.
    Finished,
    /// The stream stopped on an error.
    Failed(StreamError),
}

/// What the driver has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Periods the DMA engine has finished (this run).
    pub periods_played: u64,
    /// Periods the source had nothing for ([`Fill::Silence`]).
    pub underruns: u64,
    /// Buffer completion interrupts (SDnSTS.BCIS).
    pub completions: u64,
    /// FIFO errors (SDnSTS.FIFOE: an output underrun in the controller).
    pub fifo_errors: u64,
    /// Interrupts with nothing pending, or for streams this driver does not run.
    pub spurious_irqs: u64,
    /// Link positions past the buffer (ignored).
    pub bad_positions: u64,
    /// Stream resets whose SRST never read back 1 (QEMU).
    pub srst_unseen: u64,
    /// Wall clock ticks (WALCLK, 24 MHz) from the start of the stream to
    /// its end, once it has finished by itself.
    pub run_ticks: Option<u32>,
    /// The command rings' counts.
    pub ring: RingStats,
}

/// Whether to log the `n`th occurrence of something (1, 2, 4, 8, ...).
fn noteworthy(n: u64) -> bool {
    n.is_power_of_two()
}

/// The controller, its codec path and its output stream.
pub struct Hda<R: HdaRegisters> {
    regs: R,
    dma: Dma,
    config: Config,
    format: u16,
    ring: CommandRing,
    path: OutputPath,
    codecs: u16,
    stream: u8,
    streams: u8,
    periods: PeriodRing,
    reported: u64,
    running: bool,
    started_at: u32,
    stats: Stats,
}

impl<R: HdaRegisters> Hda<R> {
    /// Resets the controller, finds a codec with an output path and sets it
    /// up for `config`'s format. The stream is left stopped.
    pub fn new(mut regs: R, dma: Dma, config: Config) -> Result<Hda<R>, InitError> {
        let format = config.check()?;
        let gcap = regs.read16(GCAP);
        let (iss, oss, bss) = (gcap_iss(gcap), gcap_oss(gcap), gcap_bss(gcap));
        if oss == 0 || iss + oss + bss > 30 {
            return Err(InitError::NoOutputStream(gcap));
        }
        let end = dma.io_addr.checked_add(dma_bytes(&config) as u64).ok_or(InitError::Dma)?;
        if dma.region.len() < dma_bytes(&config)
            || dma.io_addr % 128 != 0
            || (gcap & GCAP_64OK == 0 && end > 1 << 32)
        {
            return Err(InitError::Dma);
        }
        let budget = config.poll_budget;
        let codecs = reset_controller(&mut regs, budget)?;
        let mut ring = CommandRing::init(&mut regs, dma.io_addr, CORB_AT, RIRB_AT, budget)
            .map_err(InitError::Ring)?;
        let mut port = Port { ring: &mut ring, regs: &mut regs, dma: &dma.region };
        let mut last = CodecError::NoOutputPath;
        let mut found = None;
        for cad in (0..15).filter(|c| codecs & 1 << c != 0).filter_map(Cad::new) {
            match find_output_path(&mut port, cad, config.format) {
                Ok(path) => {
                    found = Some(path);
                    break;
                }
                Err(e) => {
                    log::warn!(target: "hda", "codec {}: {e}", cad.get());
                    last = e;
                }
            }
        }
        let path = found.ok_or(InitError::NoOutputPath(last))?;
        configure_output(&mut port, &path, format, config.stream_tag)
            .map_err(InitError::Configure)?;
        let periods = PeriodRing::new(
            config.periods,
            config.period_bytes,
            config.lead_periods,
            config.drain_periods,
        );
        let stats = Stats { ring: ring.stats, ..Stats::default() };
        Ok(Hda {
            regs,
            dma,
            config,
            format,
            ring,
            path,
            codecs,
            stream: iss,
            streams: iss + oss + bss,
            periods,
            reported: 0,
            running: false,
            started_at: 0,
            stats,
        })
    }

    /// The output path in use.
    pub fn path(&self) -> &OutputPath {
        &self.path
    }

    /// The codecs that answered the reset (STATESTS bits).
    pub fn codecs(&self) -> u16 {
        self.codecs
    }

    /// The stream descriptor used (the first output stream).
    pub fn stream_index(&self) -> u8 {
        self.stream
    }

    /// What the driver has counted.
    pub fn stats(&self) -> Stats {
        Stats { ring: self.ring.stats, ..self.stats }
    }

    /// Whether the stream is running.
    pub fn running(&self) -> bool {
        self.running
    }

    fn sd(&self, reg: usize) -> usize {
        sd(self.stream, reg)
    }

    /// Resets the stream descriptor (§3.3.35: RUN off, then SRST set and
    /// cleared) and clears its status.
    fn reset_stream(&mut self) -> Result<(), StreamError> {
        self.stop_dma()?;
        let (ctl, budget) = (self.sd(SD_CTL), self.config.poll_budget);
        self.regs.write32(ctl, SD_CTL_SRST);
        if !poll(budget, || self.regs.read32(ctl), |v| v & SD_CTL_SRST != 0) {
            self.stats.srst_unseen += 1;
        }
        self.regs.write32(ctl, 0);
        if !poll(budget, || self.regs.read32(ctl), |v| v & SD_CTL_SRST == 0) {
            return Err(StreamError::ResetStuck);
        }
        self.regs.write8(self.sd(SD_STS), SD_STS_BCIS | SD_STS_FIFOE | SD_STS_DESE);
        Ok(())
    }

    /// Clears RUN and waits until it reads 0.
    fn stop_dma(&mut self) -> Result<(), StreamError> {
        let ctl = self.sd(SD_CTL);
        let value = self.regs.read32(ctl) & 0x00ff_ffff;
        if value & SD_CTL_RUN != 0 {
            self.regs.write32(ctl, value & !SD_CTL_RUN);
        }
        if !poll(self.config.poll_budget, || self.regs.read32(ctl), |v| v & SD_CTL_RUN == 0) {
            return Err(StreamError::RunStuck);
        }
        Ok(())
    }

    /// Programs the stream, fills every period from `source` and starts
    /// the DMA engine with interrupts on. A running stream is restarted.
    pub fn start(&mut self, source: &mut impl PeriodSource) -> Result<(), StreamError> {
        self.running = false;
        self.reset_stream()?;
        let (cfg, io) = (self.config, self.dma.io_addr);
        let bdl = io + BDL_AT as u64;
        if write_bdl(&self.dma.region, BDL_AT, io + BUFFER_AT as u64, cfg.periods, cfg.period_bytes)
            .is_err()
        {
            return Err(StreamError::DescriptorError);
        }
        self.regs.write32(self.sd(SD_BDPL), bdl as u32);
        self.regs.write32(self.sd(SD_BDPU), (bdl >> 32) as u32);
        self.regs.write32(self.sd(SD_CBL), u32::from(cfg.periods) * cfg.period_bytes);
        self.regs.write16(self.sd(SD_LVI), cfg.periods - 1);
        self.regs.write16(self.sd(SD_FMT), self.format);
        let ctl = u32::from(cfg.stream_tag) << SD_CTL_STRM_SHIFT
            | SD_CTL_IOCE
            | SD_CTL_FEIE
            | SD_CTL_DEIE;
        self.regs.write32(self.sd(SD_CTL), ctl);
        self.periods =
            PeriodRing::new(cfg.periods, cfg.period_bytes, cfg.lead_periods, cfg.drain_periods);
        self.reported = 0;
        self.stats.periods_played = 0;
        self.stats.run_ticks = None;
        self.refill(source);
        self.regs.write32(INTCTL, INTCTL_GIE | 1 << self.stream);
        // The BDL and the buffer must be in memory before the engine runs.
        fence(Ordering::SeqCst);
        self.started_at = self.regs.read32(WALCLK);
        self.regs.write32(self.sd(SD_CTL), ctl | SD_CTL_RUN);
        let at = self.sd(SD_CTL);
        if !poll(cfg.poll_budget, || self.regs.read32(at), |v| v & SD_CTL_RUN != 0) {
            return Err(StreamError::RunStuck);
        }
        self.running = true;
        Ok(())
    }

    /// Stops the stream (RUN off, its interrupt disabled, status cleared).
    pub fn stop(&mut self) -> Result<(), StreamError> {
        self.running = false;
        self.regs.write32(INTCTL, 0);
        let result = self.stop_dma();
        self.regs.write8(self.sd(SD_STS), SD_STS_BCIS | SD_STS_FIFOE | SD_STS_DESE);
        result
    }

    /// Fills the free periods: from the source until it ends, silence after.
    /// A period the engine reaches only after `lead_periods` still queued
    /// waits until the source has a whole period ready ([`PeriodSource::ready`]);
    /// a later interrupt, or [`Hda::top_up`], fills it.
    fn refill(&mut self, source: &mut impl PeriodSource) {
        let Some(first) = self.next_to_fill(source) else {
            return; // the common case on a notification: no zeroed buffer
        };
        // A buffer the size of the period, not of the largest one: it is
        // zeroed on every call, and a call comes with every interrupt.
        let bytes = self.config.period_bytes as usize;
        match bytes {
            0..=1024 => self.refill_through(source, &mut [0u8; 1024][..bytes], first),
            1025..=4096 => self.refill_through(source, &mut [0u8; 4096][..bytes], first),
            _ => self.refill_through(source, &mut [0u8; MAX_PERIOD_BYTES][..bytes], first),
        }
    }

    /// The free slot to fill now, if any: within the lead, once the source
    /// has a whole period, or after the source's end.
    fn next_to_fill(&self, source: &impl PeriodSource) -> Option<u16> {
        let slot = self.periods.next_free()?;
        let bytes = self.config.period_bytes as usize;
        (self.periods.ended() || self.periods.needed_next() || source.ready(bytes)).then_some(slot)
    }

    /// Fills slot `first` (from [`Hda::next_to_fill`]) and each one after it
    /// that is to be filled now.
    fn refill_through(&mut self, source: &mut impl PeriodSource, period: &mut [u8], first: u16) {
        let mut next = Some(first);
        while let Some(slot) = next {
            let fill = if self.periods.ended() { Fill::End } else { source.fill(period) };
            if fill != Fill::Audio {
                period.fill(0);
            }
            if fill == Fill::Silence {
                self.stats.underruns += 1;
                if noteworthy(self.stats.underruns) {
                    log::warn!(target: "hda", "underrun: the source had no audio ({} times)", self.stats.underruns);
                }
            }
            let at = BUFFER_AT + usize::from(slot) * period.len();
            if self.dma.region.write(at, period).is_err() {
                log::error!(target: "hda", "period {slot} outside the DMA region");
            }
            self.periods.mark_filled(fill == Fill::End);
            next = self.next_to_fill(source);
        }
    }

    /// Handles the controller's interrupt: clears what is pending, then
    /// refills what has played. Call `irq_ack` after.
    pub fn handle_irq(&mut self, source: &mut impl PeriodSource) -> Event {
        let status = self.regs.read32(INTSTS);
        let ours = 1u32 << self.stream;
        if status & !INTSTS_GIS == 0 {
            self.stats.spurious_irqs += 1;
        }
        for i in (0..self.streams).filter(|i| status & 1 << i != 0) {
            let at = sd(i, SD_STS);
            let sts = self.regs.read8(at);
            self.regs.write8(at, sts & (SD_STS_BCIS | SD_STS_FIFOE | SD_STS_DESE));
            if 1 << i != ours {
                self.stats.spurious_irqs += 1;
                continue;
            }
            if sts & SD_STS_BCIS != 0 {
                self.stats.completions += 1;
            }
            if sts & SD_STS_FIFOE != 0 {
                self.stats.fifo_errors += 1;
                if noteworthy(self.stats.fifo_errors) {
                    log::warn!(target: "hda", "FIFO error ({} times)", self.stats.fifo_errors);
                }
            }
            if sts & SD_STS_DESE != 0 {
                log::error!(target: "hda", "descriptor error: stopping the stream");
                let _ = self.stop();
                return Event::Failed(StreamError::DescriptorError);
            }
        }
        if status & INTSTS_CIS != 0 {
            self.regs.write8(RIRBSTS, RIRBSTS_RINTFL | RIRBSTS_RIRBOIS);
            let states = self.regs.read16(STATESTS);
            self.regs.write16(STATESTS, states);
        }
        self.service(source)
    }

    /// Fills the periods left empty for want of a whole period of audio,
    /// if the source now has one (call when the source has new audio). The
    /// link position is not read: the next interrupt does that.
    pub fn top_up(&mut self, source: &mut impl PeriodSource) {
        if self.running {
            self.refill(source);
        }
    }

    /// Reads the link position and refills the periods played since the
    /// last look; stops the stream once everything has played.
    pub fn service(&mut self, source: &mut impl PeriodSource) -> Event {
        if !self.running {
            return Event::Idle;
        }
        let lpib = self.regs.read32(self.sd(SD_LPIB));
        match self.periods.advance(lpib) {
            Ok(_) => {}
            Err(BadPosition(p)) => {
                self.stats.bad_positions += 1;
                if noteworthy(self.stats.bad_positions) {
                    log::warn!(target: "hda", "link position {p:#x} past the buffer ({} times)", self.stats.bad_positions);
                }
                return Event::Playing;
            }
        }
        self.stats.periods_played = self.periods.consumed();
        let played = self.periods.consumed_from_source() - self.reported;
        if played > 0 {
            self.reported += played;
            source.played(played as u32);
        }
        if self.periods.finished() {
            self.stats.run_ticks = Some(self.regs.read32(WALCLK).wrapping_sub(self.started_at));
            return match self.stop() {
                Ok(()) => Event::Finished,
                Err(e) => Event::Failed(e),
            };
        }
        self.refill(source);
        Event::Playing
    }
}

/// Takes the controller through reset with the ring DMA engines stopped
/// (§4.2.2: GCTL.CRST written 0, then 1), then waits for the codecs to
/// announce themselves in STATESTS (§4.3); returns their bits, cleared.
fn reset_controller(regs: &mut impl HdaRegisters, budget: u32) -> Result<u16, InitError> {
    regs.write8(CORBCTL, 0);
    regs.write8(RIRBCTL, 0);
    regs.write32(INTCTL, 0);
    let gctl = regs.read32(GCTL);
    regs.write32(GCTL, gctl & !GCTL_CRST);
    if !poll(budget, || regs.read32(GCTL), |v| v & GCTL_CRST == 0) {
        return Err(InitError::ResetStuck("entering reset"));
    }
    let gctl = regs.read32(GCTL);
    regs.write32(GCTL, gctl | GCTL_CRST);
    if !poll(budget, || regs.read32(GCTL), |v| v & GCTL_CRST != 0) {
        return Err(InitError::ResetStuck("leaving reset"));
    }
    let mut codecs = 0;
    poll(
        budget,
        || regs.read16(STATESTS) & 0x7fff,
        |v| {
            codecs = v;
            v != 0
        },
    );
    if codecs == 0 {
        return Err(InitError::NoCodec);
    }
    // Codecs have 521 us to speak up (§4.3); with no timer here, a slower
    // one gets a sixteenth of the budget in further reads.
    for _ in 0..budget / 16 {
        codecs |= regs.read16(STATESTS) & 0x7fff;
    }
    regs.write16(STATESTS, codecs);
    regs.write16(WAKEEN, 0);
    Ok(codecs)
}

#[cfg(test)]
mod tests;
