//! The channels a component wants notified after handling an event.

/// A set of Microkit channel ids (0..63).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify(u64);

impl Notify {
    /// No channel.
    pub const NONE: Notify = Notify(0);

    /// Adds channel `ch` (ids of 64 and above are ignored: Microkit has 63).
    pub fn add(&mut self, ch: u8) {
        if ch < 64 {
            self.0 |= 1 << ch;
        }
    }

    /// Adds every channel of `other`.
    pub fn merge(&mut self, other: Notify) {
        self.0 |= other.0;
    }

    /// Whether channel `ch` is in the set.
    pub fn contains(self, ch: u8) -> bool {
        ch < 64 && self.0 & (1 << ch) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The channel ids, lowest first (one step per channel in the set, not
    /// per possible id: this runs on every wakeup of every PD).
    pub fn channels(self) -> impl Iterator<Item = u8> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let ch = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(ch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn holds_channels_once_and_ignores_out_of_range_ids() {
        let mut n = Notify::NONE;
        assert!(n.is_empty());
        n.add(3);
        n.add(3);
        n.add(62);
        n.add(64);
        let mut m = Notify::NONE;
        m.add(0);
        n.merge(m);
        assert_eq!(n.channels().collect::<Vec<_>>(), [0, 3, 62]);
        assert!(n.contains(62) && !n.contains(64) && !n.contains(1));
    }
}
