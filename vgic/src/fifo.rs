//! The per-vCPU overflow queue: a fixed-capacity FIFO of distinct
//! interrupt IDs, for interrupts waiting for a free list register.

use heapless::Deque;

use crate::state::IRQ_WORDS;
use crate::{NUM_IRQS, QUEUE_LEN};

/// Fixed-capacity FIFO of distinct interrupt IDs (a `heapless` ring buffer
/// plus a membership bitmap, so `contains` is O(1)).
#[derive(Clone)]
pub(crate) struct Fifo {
    ring: Deque<u16, QUEUE_LEN>,
    /// One bit per interrupt ID in the queue.
    members: [u32; IRQ_WORDS],
}

impl Fifo {
    /// An empty queue.
    pub(crate) const EMPTY: Fifo = Fifo { ring: Deque::new(), members: [0; IRQ_WORDS] };

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// No entries?
    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// No room left?
    pub(crate) fn is_full(&self) -> bool {
        self.ring.is_full()
    }

    fn mark(&mut self, irq: u16, on: bool) {
        let irq = usize::from(irq);
        if let Some(w) = self.members.get_mut(irq / 32) {
            if on {
                *w |= 1 << (irq % 32);
            } else {
                *w &= !(1 << (irq % 32));
            }
        }
    }

    /// The `i`-th entry from the front.
    pub(crate) fn get(&self, i: usize) -> Option<u16> {
        let (front, back) = self.ring.as_slices();
        match i.checked_sub(front.len()) {
            None => front.get(i).copied(),
            Some(j) => back.get(j).copied(),
        }
    }

    /// The oldest entry.
    pub(crate) fn front(&self) -> Option<u16> {
        self.ring.front().copied()
    }

    /// Appends `irq` (nothing to do if already queued); false if full or
    /// `irq` is not an interrupt ID.
    pub(crate) fn push_back(&mut self, irq: u16) -> bool {
        if self.contains(irq) {
            return true;
        }
        if usize::from(irq) >= NUM_IRQS || self.ring.push_back(irq).is_err() {
            return false;
        }
        self.mark(irq, true);
        true
    }

    /// Removes and returns the oldest entry.
    pub(crate) fn pop_front(&mut self) -> Option<u16> {
        let irq = self.ring.pop_front()?;
        self.mark(irq, false);
        Some(irq)
    }

    /// Is `irq` queued?
    pub(crate) fn contains(&self, irq: u16) -> bool {
        let irq = usize::from(irq);
        self.members.get(irq / 32).is_some_and(|w| (w >> (irq % 32)) & 1 != 0)
    }

    /// Removes `irq` if queued, keeping the order of the others.
    pub(crate) fn remove(&mut self, irq: u16) {
        if !self.contains(irq) {
            return;
        }
        let old = core::mem::replace(&mut self.ring, Deque::new());
        for e in old.into_iter().filter(|&e| e != irq) {
            // Never full: at most as many entries as were there.
            let _ = self.ring.push_back(e);
        }
        self.mark(irq, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_push_pop_wraps_around() {
        let mut q = Fifo::EMPTY;
        for round in 0..3u16 {
            for i in 0..QUEUE_LEN as u16 {
                assert!(q.push_back(i + round));
            }
            assert!(q.is_full() && !q.push_back(999));
            for i in 0..QUEUE_LEN as u16 {
                assert_eq!(q.pop_front(), Some(i + round));
            }
            assert_eq!(q.pop_front(), None);
            q.push_back(7);
            q.pop_front();
        }
    }

    #[test]
    fn fifo_remove_keeps_order() {
        let mut q = Fifo::EMPTY;
        for i in [1, 2, 3, 4] {
            q.push_back(i);
        }
        q.remove(2);
        q.remove(9);
        assert_eq!((0..q.len()).filter_map(|i| q.get(i)).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert!(!q.contains(2) && q.contains(4));
    }

    #[test]
    fn fifo_get_and_remove_across_the_wrap() {
        let mut q = Fifo::EMPTY;
        for i in 0..QUEUE_LEN as u16 - 2 {
            q.push_back(i);
        }
        for _ in 0..QUEUE_LEN - 4 {
            q.pop_front();
        }
        // Two entries at the end of the ring, three wrapped to its start.
        for i in [100, 101, 102] {
            q.push_back(i);
        }
        let want = [QUEUE_LEN as u16 - 4, QUEUE_LEN as u16 - 3, 100, 101, 102];
        assert_eq!((0..q.len()).filter_map(|i| q.get(i)).collect::<Vec<_>>(), want);
        assert_eq!(q.get(5), None);
        q.remove(want[1]);
        q.remove(101);
        assert_eq!((0..q.len()).filter_map(|i| q.get(i)).collect::<Vec<_>>(), [want[0], 100, 102]);
        assert!(!q.contains(101) && q.contains(102));
    }

    #[test]
    fn fifo_ignores_duplicates_and_bad_ids() {
        let mut q = Fifo::EMPTY;
        assert!(q.push_back(5) && q.push_back(5));
        assert_eq!(q.len(), 1);
        assert!(!q.push_back(NUM_IRQS as u16));
        assert_eq!(q.pop_front(), Some(5));
        assert!(!q.contains(5));
    }
}
