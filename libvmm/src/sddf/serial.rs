//! The virtio console's backend: an sDDF serial client.
//!
//! Guest output goes into the TX queue to the serial TX virtualiser; input
//! comes from the RX virtualiser's queue. Signalling follows sDDF's
//! protocol (`docs/developing.md`):
//! - after writing TX bytes, always notify the TX virtualiser (with
//!   [`SddfSerial::with_coalescing`], once a batch of bytes is pending, the
//!   queue is half full, or the console is idle: `tx_flush_all`);
//! - when TX is full, ask to be woken (`producer_signalled = 0`) and re-check.
//!   The virtualiser's notification on `tx_channel` then means "space again":
//!   the VMM must call the console's `poll` on it (libvmm ignores it).
//! - after draining RX, notify the RX virtualiser if it asked for it.

use super::Notifier;
use sddf_bindings::serial::SerialQueueHandle;

/// An sDDF serial client connection (both directions).
pub struct SddfSerial<N: Notifier> {
    tx: SerialQueueHandle,
    rx: SerialQueueHandle,
    tx_channel: u8,
    rx_channel: u8,
    notifier: N,
    wrote: bool,
    /// Bytes written since the last notification; notify once this many.
    coalesce: u32,
    unsignalled: u32,
}

impl<N: Notifier> SddfSerial<N> {
    /// A client over the `tx` and `rx` queues, notifying the virtualisers
    /// on `tx_channel` and `rx_channel`.
    pub fn new(
        tx: SerialQueueHandle,
        rx: SerialQueueHandle,
        tx_channel: u8,
        rx_channel: u8,
        notifier: N,
    ) -> Self {
        SddfSerial {
            tx,
            rx,
            tx_channel,
            rx_channel,
            notifier,
            wrote: false,
            coalesce: 0,
            unsignalled: 0,
        }
    }

    /// Holds TX notifications back until `bytes` are pending or the queue is half full;
    /// [`SerialBackend::tx_flush_all`](virtio::console::SerialBackend::tx_flush_all) sends
    /// the rest.
    pub fn with_coalescing(mut self, bytes: u32) -> Self {
        self.coalesce = bytes;
        self
    }

    /// The notifier (tests inspect their fake through it).
    pub fn notifier(&mut self) -> &mut N {
        &mut self.notifier
    }
}

impl<N: Notifier> virtio::console::SerialBackend for SddfSerial<N> {
    fn tx_space(&self) -> usize {
        let space = self.tx.free_space();
        if space > 0 {
            return space as usize;
        }
        // Full: the console stops here, so ask to be woken, then re-check.
        if self.tx.request_consumer_signal() {
            self.tx.free_space() as usize
        } else {
            0
        }
    }

    fn tx(&mut self, data: &[u8]) -> usize {
        let n = self.tx.enqueue_batch(data);
        self.wrote |= n > 0;
        self.unsignalled = self.unsignalled.saturating_add(n as u32);
        if n < data.len() && !self.tx.request_consumer_signal() {
            // Full, and the virtualiser will notify when it has drained.
            return n;
        }
        if n < data.len() {
            // Space appeared between the write and the request: use it.
            let more = self.tx.enqueue_batch(&data[n..]);
            self.wrote |= more > 0;
            return n + more;
        }
        n
    }

    fn tx_flush(&mut self) {
        let full = self.tx.free_space() < self.tx.capacity() / 2;
        if self.wrote && (self.unsignalled >= self.coalesce || full) {
            self.tx_flush_all();
        }
    }

    fn tx_flush_all(&mut self) {
        if core::mem::take(&mut self.wrote) {
            self.unsignalled = 0;
            self.notifier.notify(self.tx_channel);
        }
    }

    fn rx(&mut self, buf: &mut [u8]) -> usize {
        let n = self.rx.dequeue_batch(buf);
        if n > 0 && self.rx.require_producer_signal() {
            self.rx.cancel_producer_signal();
            self.notifier.notify(self.rx_channel);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sddf::Recorder;
    use sddf_bindings::SharedRegion;
    use virtio::console::SerialBackend;

    /// A queue pair: the client's handle and the virtualiser's handle over
    /// the same shared memory.
    fn queue(capacity: u32) -> (SerialQueueHandle, SerialQueueHandle) {
        let q = SharedRegion::leak_zeroed(64);
        let data = SharedRegion::leak_zeroed(capacity as usize);
        let ours = SerialQueueHandle::new(q.clone(), data.clone(), capacity).unwrap();
        let theirs = SerialQueueHandle::new(q, data, capacity).unwrap();
        (ours, theirs)
    }

    fn client(capacity: u32) -> (SddfSerial<Recorder>, SerialQueueHandle, SerialQueueHandle) {
        let (tx, virt_tx) = queue(capacity);
        let (rx, virt_rx) = queue(capacity);
        (SddfSerial::new(tx, rx, 1, 2, Recorder::default()), virt_tx, virt_rx)
    }

    #[test]
    fn coalescing_holds_notifications_until_a_batch_or_idle() {
        let (c, mut virt_tx, _) = client(64);
        let mut c = c.with_coalescing(16);
        assert_eq!(c.tx(b"0123456789"), 10);
        c.tx_flush();
        assert!(c.notifier().0.is_empty(), "10 bytes < 16: held back");
        assert_eq!(c.tx(b"abcdef"), 6);
        c.tx_flush();
        assert_eq!(c.notifier().0, [1], "16 bytes pending");
        assert_eq!(c.tx(b"xyz"), 3);
        c.tx_flush();
        c.tx_flush_all();
        c.tx_flush_all();
        assert_eq!(c.notifier().0, [1, 1], "idle: the rest goes, once");
        let mut out = [0u8; 19];
        assert_eq!(virt_tx.dequeue_batch(&mut out), 19);
        assert_eq!(&out, b"0123456789abcdefxyz", "nothing lost or reordered");
    }

    #[test]
    fn coalescing_notifies_once_the_queue_is_half_full() {
        let (c, _, _) = client(64);
        let mut c = c.with_coalescing(1024);
        assert_eq!(c.tx(&[b'q'; 33]), 33);
        c.tx_flush();
        assert_eq!(c.notifier().0, [1]);
    }

    #[test]
    fn tx_bytes_reach_the_virtualiser_and_it_is_notified_once_per_batch() {
        let (mut c, mut virt_tx, _) = client(16);
        assert_eq!(c.tx(b"hello "), 6);
        assert_eq!(c.tx(b"world"), 5);
        c.tx_flush();
        c.tx_flush();
        assert_eq!(c.notifier().0, [1]);
        let mut buf = [0u8; 16];
        assert_eq!(virt_tx.dequeue_batch(&mut buf), 11);
        assert_eq!(&buf[..11], b"hello world");
    }

    #[test]
    fn full_tx_takes_what_fits_and_asks_to_be_woken() {
        let (mut c, mut virt_tx, _) = client(8);
        assert_eq!(c.tx(b"0123456789"), 8);
        assert_eq!(c.tx_space(), 0);
        // The virtualiser drains and sees that the client wants a signal.
        let mut buf = [0u8; 8];
        assert_eq!(virt_tx.dequeue_batch(&mut buf), 8);
        assert!(virt_tx.require_producer_signal(), "client asked to be woken");
        assert_eq!(c.tx(b"89"), 2);
    }

    #[test]
    fn finding_tx_full_asks_to_be_woken() {
        let (mut c, mut virt_tx, _) = client(8);
        assert_eq!(c.tx(b"01234567"), 8);
        let mut buf = [0u8; 8];
        virt_tx.dequeue_batch(&mut buf);
        virt_tx.cancel_producer_signal();
        assert_eq!(c.tx(b"abcdefgh"), 8);
        // The console only looks at the space before it stops.
        assert_eq!(c.tx_space(), 0);
        virt_tx.dequeue_batch(&mut buf);
        assert!(virt_tx.require_producer_signal(), "the client asked for a signal");
    }

    #[test]
    fn rx_drains_and_notifies_the_virtualiser_only_if_asked() {
        let (mut c, _, mut virt_rx) = client(16);
        assert_eq!(virt_rx.enqueue_batch(b"abc"), 3);
        let mut buf = [0u8; 8];
        // The flag starts as "signal wanted" (zeroed memory): notified once.
        assert_eq!(c.rx(&mut buf), 3);
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(c.notifier().0, [2]);
        virt_rx.enqueue_batch(b"d");
        assert_eq!(c.rx(&mut buf), 1);
        assert_eq!(c.notifier().0, [2], "not asked again");
        assert_eq!(c.rx(&mut buf), 0);
    }
}
