//! The timer driver's logic: timeouts for several clients on one hardware
//! timer, served with sDDF's timer protocol ([`sddf_bindings::timer`]).
//!
//! Each client (a Microkit channel) has at most one timeout: a new
//! SET_TIMEOUT replaces the one it had (sDDF's C driver queues several;
//! a client that only ever needs its next wake-up, like a VMM, is served
//! either way). The hardware is programmed for the earliest timeout. When
//! it fires, every client whose timeout has passed is notified once.
//! Times are counter ticks inside, nanoseconds at the protocol; the
//! conversions round so that a timeout is never early.

use crate::Notify;
use sddf_bindings::timer::NS_IN_S;

/// Timeouts of clients on channels `0..N`.
pub struct TimerService<const N: usize> {
    /// Counter ticks per second.
    freq: u64,
    /// Each client's deadline, in counter ticks.
    deadlines: [Option<u64>; N],
}

/// What the PD does next: notify these clients, and program the hardware
/// for this deadline (counter ticks; `None`: disable it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    /// Clients whose timeouts passed.
    pub notify: Notify,
    /// The earliest timeout left.
    pub deadline: Option<u64>,
}

impl<const N: usize> TimerService<N> {
    /// A service for a counter running at `freq` ticks per second.
    pub fn new(freq: u64) -> Self {
        TimerService { freq: freq.max(1), deadlines: [None; N] }
    }

    /// `now` in nanoseconds (GET_TIME), rounded down.
    pub fn ns(&self, ticks: u64) -> u64 {
        let ns = u128::from(ticks) * u128::from(NS_IN_S) / u128::from(self.freq);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Client `client` asks to be notified `timeout_ns` from `now` (ticks).
    /// A client id out of range is ignored (logged). Returns the deadline
    /// to program.
    pub fn set_timeout(&mut self, client: u8, now: u64, timeout_ns: u64) -> Option<u64> {
        let ticks = (u128::from(timeout_ns) * u128::from(self.freq)).div_ceil(u128::from(NS_IN_S));
        let deadline = now.saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX));
        match self.deadlines.get_mut(usize::from(client)) {
            Some(d) => *d = Some(deadline),
            None => {
                log::warn!(target: "timer", "timeout from channel {client} ignored (not a client)")
            }
        }
        self.earliest()
    }

    /// The hardware timer fired, or the PD was woken otherwise, at `now`:
    /// the clients to notify and what to program next.
    pub fn expire(&mut self, now: u64) -> Next {
        let mut notify = Notify::NONE;
        for (ch, d) in self.deadlines.iter_mut().enumerate() {
            if d.is_some_and(|t| t <= now) {
                *d = None;
                notify.add(ch as u8);
            }
        }
        Next { notify, deadline: self.earliest() }
    }

    /// The earliest timeout pending.
    pub fn earliest(&self) -> Option<u64> {
        self.deadlines.iter().flatten().copied().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// QEMU virt's counter: 62.5 MHz, 16 ns a tick.
    const FREQ: u64 = 62_500_000;

    fn chans(n: Notify) -> Vec<u8> {
        n.channels().collect()
    }

    #[test]
    fn each_client_is_notified_once_when_its_timeout_passes() {
        let mut t = TimerService::<4>::new(FREQ);
        assert_eq!(t.set_timeout(1, 1000, 1_000_000), Some(63_500));
        assert_eq!(t.set_timeout(2, 1000, 500_000), Some(32_250));
        assert_eq!(t.expire(32_249), Next { notify: Notify::NONE, deadline: Some(32_250) });
        let n = t.expire(32_250);
        assert_eq!((chans(n.notify), n.deadline), (vec![2], Some(63_500)));
        let n = t.expire(100_000);
        assert_eq!((chans(n.notify), n.deadline), (vec![1], None));
        assert!(t.expire(200_000).notify.is_empty(), "notified once");
    }

    #[test]
    fn a_new_timeout_replaces_the_old_one() {
        let mut t = TimerService::<4>::new(FREQ);
        t.set_timeout(3, 0, 1_000_000);
        assert_eq!(t.set_timeout(3, 0, 5_000_000), Some(312_500));
        assert!(t.expire(62_500).notify.is_empty());
    }

    #[test]
    fn conversions_never_make_a_timeout_early() {
        let mut t = TimerService::<2>::new(FREQ);
        // 1 ns is less than a tick: rounded up to one tick.
        assert_eq!(t.set_timeout(0, 10, 1), Some(11));
        assert_eq!(t.ns(62_500_000), NS_IN_S);
        assert_eq!(t.ns(1), 16);
        // Huge timeouts saturate instead of wrapping into the past.
        assert_eq!(t.set_timeout(1, 10, u64::MAX), Some(11));
        t.expire(11);
        assert_eq!(t.set_timeout(1, u64::MAX - 5, u64::MAX), Some(u64::MAX));
        // Zero: due now.
        let mut t = TimerService::<2>::new(FREQ);
        t.set_timeout(0, 500, 0);
        assert_eq!(chans(t.expire(500).notify), [0]);
    }

    #[test]
    fn unknown_clients_are_ignored() {
        let mut t = TimerService::<2>::new(FREQ);
        assert_eq!(t.set_timeout(2, 0, 1000), None);
        assert_eq!(t.set_timeout(200, 0, 1000), None);
        assert!(t.expire(u64::MAX).notify.is_empty());
    }
}
