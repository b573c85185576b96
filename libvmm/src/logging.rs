//! `log` output through the seL4 debug console, with a level per component.
//!
//! Components are `log` targets: `core`, `cpu`, `mmio`, `irq`, `psci`,
//! `boot`, `virtio`, ... A record is printed as `NAME|LEVEL|target: message`
//! where NAME is the PD's name in capitals. Without `CONFIG_PRINTING` (the
//! release configurations) nothing is printed.

use core::fmt::{self, Write};
use log::{LevelFilter, Metadata, Record};

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
        let mut out = DebugConsole;
        for c in crate::microkit::pd_name().as_str().chars() {
            let _ = out.write_char(c.to_ascii_uppercase());
        }
        let _ = writeln!(out, "|{}|{}: {}", record.level(), record.target(), record.args());
    }

    fn flush(&self) {}
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
}
