//! `log` output through the seL4 debug console, with a level per component
//! and a rate limit per component.
//!
//! Components are `log` targets: `core`, `cpu`, `mmio`, `irq`, `psci`,
//! `boot`, `virtio`, ... A record is printed as `NAME|LEVEL|target: message`
//! where NAME is the PD's name in capitals. Without `CONFIG_PRINTING` (the
//! release configurations) nothing is printed.
//!
//! A guest (or a peer PD) can make us log: a bad register access, a bad
//! request. Every character is a `seL4_DebugPutChar` system call, so each
//! (target, level) pair has a token bucket ([`RateLimiter`]): a burst of
//! [`BURST`] lines ([`ERROR_BURST`] for errors, so boot failures print), then
//! [`PER_SECOND`] lines a second, timed by the generic timer's counter. The
//! first line printed after some were dropped is preceded by
//! `... N lines dropped (rate limit)`. `trace` records, which only a developer
//! turns on, are not limited. A record the level filter rejects costs
//! nothing more than the comparison.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use log::{Level, LevelFilter, Metadata, Record};

/// Lines a (target, level) pair may print at once, `warn` to `debug`.
pub const BURST: u32 = 20;
/// Lines a target may print at once at `error` level.
pub const ERROR_BURST: u32 = 100;
/// Lines a (target, level) pair may print per second after its burst.
pub const PER_SECOND: u64 = 10;
/// Buckets in the logger's table; further pairs share buckets.
const BUCKETS: usize = 32;

/// Writes bytes with `seL4_DebugPutChar`.
pub struct DebugConsole;

impl Write for DebugConsole {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            crate::sel4::syscall::debug_put_char(b);
        }
        Ok(())
    }
}

/// Log levels: one default and overrides for some components.
#[derive(Clone, Copy)]
pub struct Levels {
    /// Level for components without an override.
    pub default: LevelFilter,
    /// `(component, level)` overrides.
    pub overrides: &'static [(&'static str, LevelFilter)],
}

impl Levels {
    /// The level that applies to `target`.
    pub fn for_target(&self, target: &str) -> LevelFilter {
        self.overrides
            .iter()
            .find(|(component, _)| *component == target)
            .map_or(self.default, |&(_, level)| level)
    }

    fn max(&self) -> LevelFilter {
        self.overrides.iter().map(|&(_, l)| l).fold(self.default, core::cmp::max)
    }
}

impl log::Log for Levels {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.for_target(metadata.target())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let dropped = match admit(record.target(), record.level()) {
            Verdict::Print { dropped } => dropped,
            Verdict::Drop => return,
        };
        let name = crate::microkit::pd_name();
        emit(&mut DebugConsole, name.as_str(), record, dropped);
    }

    fn flush(&self) {}
}

/// Writes `record` as `NAME|LEVEL|target: message`, after a line saying
/// how many were `dropped` before it, if any.
fn emit<W: Write>(out: &mut W, pd: &str, record: &Record, dropped: u32) {
    let (level, target) = (record.level(), record.target());
    if dropped > 0 {
        upper(out, pd);
        let _ = writeln!(out, "|{level}|{target}: ... {dropped} lines dropped (rate limit)");
    }
    upper(out, pd);
    let _ = writeln!(out, "|{level}|{target}: {}", record.args());
}

fn upper<W: Write>(out: &mut W, s: &str) {
    for c in s.chars() {
        let _ = out.write_char(c.to_ascii_uppercase());
    }
}

/// The logger's buckets.
static LIMITER: RateLimiter<BUCKETS> = RateLimiter::new();
/// Stand-in clock where the kernel does not export the counter: each line
/// advances it by an eighth of a line's cost (one line in eight passes).
static LINE_CLOCK: AtomicU64 = AtomicU64::new(0);

/// Asks [`LIMITER`] whether a record of `target` at `level` may print now.
fn admit(target: &str, level: Level) -> Verdict {
    if level == Level::Trace {
        return Verdict::Print { dropped: 0 };
    }
    let cost = crate::sel4::generic_timer::frequency() / PER_SECOND;
    let now = if crate::sel4::config::EXPORT_PCNT_USER {
        crate::sel4::generic_timer::now()
    } else {
        LINE_CLOCK.fetch_add(cost / 8, Ordering::Relaxed)
    };
    let burst = if level == Level::Error { ERROR_BURST } else { BURST };
    LIMITER.admit(key(target, level), now, cost, burst)
}

/// FNV-1a of the target and the level; never 0 (0 marks a free bucket).
fn key(target: &str, level: Level) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.bytes().chain([level as u8]) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// Whether a line may be printed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Print it; first report `dropped` lines that were not printed before it.
    Print {
        /// Lines of this bucket dropped since the last printed one.
        dropped: u32,
    },
    /// Drop it (counted).
    Drop,
}

/// One token bucket, kept as a time credit in counter ticks: a line costs
/// `cost` ticks, the credit grows with time up to `burst` lines' worth.
#[derive(Default)]
struct Bucket {
    /// Hash of (target, level); 0 while the bucket is free.
    key: AtomicU64,
    credit: AtomicU64,
    last: AtomicU64,
    dropped: AtomicU32,
}

/// Token buckets for up to `N` keys, with no heap and `&self` access (the
/// logger is a shared static). A PD is single-threaded; if two threads did
/// race here they could only miscount, never misbehave.
pub struct RateLimiter<const N: usize> {
    buckets: [Bucket; N],
}

impl<const N: usize> Default for RateLimiter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RateLimiter<N> {
    /// An empty table.
    pub const fn new() -> Self {
        RateLimiter {
            buckets: [const {
                Bucket {
                    key: AtomicU64::new(0),
                    credit: AtomicU64::new(0),
                    last: AtomicU64::new(0),
                    dropped: AtomicU32::new(0),
                }
            }; N],
        }
    }

    /// Takes one line from `key`'s bucket at time `now` (counter ticks): a
    /// line costs `cost` ticks and the bucket holds `burst` lines. A key
    /// that finds no free bucket shares one picked by its hash.
    pub fn admit(&self, key: u64, now: u64, cost: u64, burst: u32) -> Verdict {
        let Some(b) = self.bucket(key) else { return Verdict::Print { dropped: 0 } };
        let cap = cost.saturating_mul(u64::from(burst));
        let credit = if b.key.load(Ordering::Relaxed) == 0 {
            // Claimed just now: a full bucket.
            b.key.store(key, Ordering::Relaxed);
            cap
        } else {
            let last = b.last.load(Ordering::Relaxed);
            // A counter that went backwards refills nothing.
            b.credit.load(Ordering::Relaxed).saturating_add(now.saturating_sub(last)).min(cap)
        };
        b.last.store(now, Ordering::Relaxed);
        if credit >= cost {
            b.credit.store(credit - cost, Ordering::Relaxed);
            Verdict::Print { dropped: b.dropped.swap(0, Ordering::Relaxed) }
        } else {
            b.credit.store(credit, Ordering::Relaxed);
            let d = b.dropped.load(Ordering::Relaxed);
            b.dropped.store(d.saturating_add(1), Ordering::Relaxed);
            Verdict::Drop
        }
    }

    /// `key`'s bucket, or a free one (still carrying key 0), or a shared one.
    fn bucket(&self, key: u64) -> Option<&Bucket> {
        let mut free = None;
        for b in &self.buckets {
            match b.key.load(Ordering::Relaxed) {
                k if k == key => return Some(b),
                0 if free.is_none() => free = Some(b),
                _ => {}
            }
        }
        let n = u64::try_from(N).ok().filter(|&n| n > 0)?;
        free.or_else(|| self.buckets.get(usize::try_from(key % n).ok()?))
    }
}

/// Installs the logger with `levels`. Call once, first thing in
/// `Handler::init`; later calls are ignored.
pub fn init(levels: &'static Levels) {
    if log::set_logger(levels).is_ok() {
        log::set_max_level(levels.max());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_default_covers_the_rest() {
        let levels = Levels {
            default: LevelFilter::Info,
            overrides: &[("mmio", LevelFilter::Warn), ("virtio", LevelFilter::Trace)],
        };
        assert_eq!(levels.for_target("mmio"), LevelFilter::Warn);
        assert_eq!(levels.for_target("virtio"), LevelFilter::Trace);
        assert_eq!(levels.for_target("core"), LevelFilter::Info);
        assert_eq!(levels.max(), LevelFilter::Trace);
    }

    /// 100 ticks a second, so a line costs 10 ticks at 10 lines/s.
    const COST: u64 = 10;

    fn printed(l: &RateLimiter<4>, key: u64, now: u64, lines: u32) -> (u32, u32) {
        let (mut printed, mut reported) = (0, 0);
        for _ in 0..lines {
            if let Verdict::Print { dropped } = l.admit(key, now, COST, BURST) {
                printed += 1;
                reported += dropped;
            }
        }
        (printed, reported)
    }

    #[test]
    fn a_flood_prints_a_burst_then_the_steady_rate() {
        let l = RateLimiter::<4>::new();
        // 15,063 lines at one instant: only the burst.
        assert_eq!(printed(&l, 7, 1000, 15_063), (BURST, 0));
        // One second later: ten more lines, the first says what was dropped.
        assert_eq!(l.admit(7, 1100, COST, BURST), Verdict::Print { dropped: 15_063 - BURST });
        assert_eq!(printed(&l, 7, 1100, 100), (9, 0));
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let l = RateLimiter::<4>::new();
        assert_eq!(printed(&l, 1, 0, 50).0, BURST);
        assert_eq!(printed(&l, 2, 0, 50).0, BURST, "another target is not starved");
        assert_eq!(printed(&l, 1, 5, 1).0, 0);
    }

    #[test]
    fn more_keys_than_buckets_share_and_still_limit() {
        let l = RateLimiter::<2>::new();
        let total: u32 = (1..=8).map(|k| printed_in(&l, k)).sum();
        assert!(total <= 2 * BURST + 8, "{total} lines printed");
    }

    fn printed_in(l: &RateLimiter<2>, key: u64) -> u32 {
        (0..100).filter(|_| matches!(l.admit(key, 0, COST, BURST), Verdict::Print { .. })).count()
            as u32
    }

    #[test]
    fn a_counter_going_backwards_refills_nothing() {
        let l = RateLimiter::<4>::new();
        assert_eq!(printed(&l, 3, u64::MAX, 30).0, BURST);
        assert_eq!(printed(&l, 3, 0, 30).0, 0);
    }

    #[test]
    fn dropped_lines_are_reported_before_the_next_line() {
        let mut out = std::string::String::new();
        let args = format_args!("bad access at {:#x}", 0x8000_0000u64);
        let record = Record::builder().target("mmio").level(Level::Warn).args(args).build();
        emit(&mut out, "vmm", &record, 7);
        assert_eq!(
            out,
            "VMM|WARN|mmio: ... 7 lines dropped (rate limit)\nVMM|WARN|mmio: bad access at 0x80000000\n"
        );
    }

    #[test]
    fn trace_is_never_limited_and_keys_differ_by_level() {
        assert_ne!(key("irq", Level::Warn), key("irq", Level::Error));
        assert_ne!(key("irq", Level::Warn), key("mmio", Level::Warn));
        for _ in 0..1000 {
            assert_eq!(admit("test-trace", Level::Trace), Verdict::Print { dropped: 0 });
        }
    }
}
