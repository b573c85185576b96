//! The serial TX virtualiser: several clients' output onto one driver queue.
//!
//! On any notification it visits the clients round-robin, starting one
//! further each time, and moves each client's pending bytes to the driver as
//! far as they fit. A client's bytes are never split by another client's
//! unless the driver queue fills. When the driver queue is full, it asks the
//! driver for a signal and carries on when it comes; a client that asked for
//! a signal (its queue was full) gets one once bytes left its queue.

use super::CHUNK;
use crate::Notify;

/// Most passes over the clients per notification.
const ROUNDS: usize = 16;
use sddf_bindings::serial::SerialQueueHandle;

/// One client: its TX queue (we consume) and its channel.
pub struct Client {
    /// The client's TX queue.
    pub queue: SerialQueueHandle,
    /// Our channel to the client.
    pub channel: u8,
}

/// The TX virtualiser for up to `N` clients.
pub struct VirtTx<const N: usize> {
    driver: SerialQueueHandle,
    driver_channel: u8,
    clients: [Option<Client>; N],
    next: usize,
}

impl<const N: usize> VirtTx<N> {
    /// A virtualiser over the driver's TX queue (we produce).
    pub fn new(
        driver: SerialQueueHandle,
        driver_channel: u8,
        clients: [Option<Client>; N],
    ) -> Self {
        VirtTx { driver, driver_channel, clients, next: 0 }
    }

    /// Moves what can be moved; call it on every notification (a client's
    /// data or the driver's "space again").
    pub fn handle(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let mut moved_any = false;
        // Bounded: a driver whose index flips could otherwise keep us here.
        'again: for _ in 0..ROUNDS {
            for k in 0..N {
                let i = (self.next + k) % N;
                let Some(client) = self.clients[i].as_mut() else { continue };
                let (moved, rest) = move_bytes(&mut client.queue, &mut self.driver);
                moved_any |= moved;
                if moved && client.queue.require_producer_signal() {
                    client.queue.cancel_producer_signal();
                    notify.add(client.channel);
                }
                if rest {
                    // The driver queue is full: wait for its signal, unless
                    // it drained meanwhile.
                    if self.driver.request_consumer_signal() {
                        continue 'again;
                    }
                    break 'again;
                }
            }
            break;
        }
        self.next = (self.next + 1) % N.max(1);
        if moved_any {
            notify.add(self.driver_channel);
        }
        notify
    }
}

/// Moves bytes from `from` to `to` until `from` is empty or `to` is full.
/// Returns (whether any moved, whether some are left for want of room).
fn move_bytes(from: &mut SerialQueueHandle, to: &mut SerialQueueHandle) -> (bool, bool) {
    let mut buf = [0u8; CHUNK];
    let mut moved = false;
    loop {
        let avail = from.len() as usize;
        if avail == 0 {
            return (moved, false);
        }
        let n = avail.min(to.free_space() as usize).min(CHUNK);
        if n == 0 {
            return (moved, true);
        }
        let got = from.peek_batch(&mut buf[..n]);
        if got == 0 {
            return (moved, false);
        }
        // Bytes leave the client's queue only once they are in the driver's.
        let put = to.enqueue_batch(&buf[..got]);
        from.skip(put);
        moved |= put > 0;
        if put < got {
            // We are the driver queue's only producer and it had room: the driver moved its
            // index backwards. Its queue is not trusted further this round.
            log::warn!(target: "serial", "TX driver queue shrank under us ({put} of {got} bytes fit): corrupt driver index");
            return (moved, true);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sddf_bindings::SharedRegion;
    use std::vec::Vec;

    pub(crate) fn queue(cap: u32) -> (SerialQueueHandle, SerialQueueHandle) {
        let q = SharedRegion::leak_zeroed(64);
        let d = SharedRegion::leak_zeroed(cap as usize);
        (
            SerialQueueHandle::new(q.clone(), d.clone(), cap).unwrap(),
            SerialQueueHandle::new(q, d, cap).unwrap(),
        )
    }

    fn drain(q: &mut SerialQueueHandle) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = q.dequeue_batch(&mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn clients_output_reaches_the_driver_whole_and_in_order() {
        let (drv_side, mut drv) = queue(1024);
        let (a, mut a_client) = queue(128);
        let (b, mut b_client) = queue(128);
        let mut virt = VirtTx::new(
            drv_side,
            0,
            [Some(Client { queue: a, channel: 1 }), None, Some(Client { queue: b, channel: 2 })],
        );
        a_client.enqueue_batch(b"hello from a\n");
        b_client.enqueue_batch(b"hello from b\n");
        let n = virt.handle();
        assert!(n.contains(0));
        let out = drain(&mut drv);
        assert_eq!(out, b"hello from a\nhello from b\n");
        assert!(virt.handle().is_empty(), "nothing to do, nobody notified");
    }

    #[test]
    fn a_full_driver_queue_loses_nothing_and_every_side_is_signalled() {
        let (drv_side, mut drv) = queue(64);
        let (a, mut a_client) = queue(256);
        let (b, mut b_client) = queue(256);
        let mut virt = VirtTx::new(
            drv_side,
            0,
            [Some(Client { queue: a, channel: 1 }), Some(Client { queue: b, channel: 2 })],
        );
        let a_data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let b_data: Vec<u8> = (0..1000u32).map(|i| b'A' + (i % 26) as u8).collect();
        let (mut a_sent, mut b_sent) = (0, 0);
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        for _ in 0..10_000 {
            if a_sent < a_data.len() {
                a_sent += a_client.enqueue_batch(&a_data[a_sent..]);
                a_client.request_consumer_signal();
            }
            if b_sent < b_data.len() {
                b_sent += b_client.enqueue_batch(&b_data[b_sent..]);
                b_client.request_consumer_signal();
            }
            virt.handle();
            // The driver drains; when the virtualiser asked, it signals.
            for byte in drain(&mut drv) {
                if byte.is_ascii_lowercase() {
                    got_a.push(byte)
                } else {
                    got_b.push(byte)
                }
            }
            if got_a.len() == a_data.len() && got_b.len() == b_data.len() {
                break;
            }
        }
        assert_eq!(got_a, a_data);
        assert_eq!(got_b, b_data);
    }

    #[test]
    fn the_driver_is_asked_for_a_signal_when_full() {
        let (drv_side, mut drv) = queue(16);
        let (a, mut a_client) = queue(64);
        let mut virt = VirtTx::new(drv_side, 0, [Some(Client { queue: a, channel: 1 })]);
        a_client.enqueue_batch(&[b'x'; 40]);
        virt.handle();
        assert!(drv.require_producer_signal(), "virt_tx waits for the driver");
        drv.cancel_producer_signal();
        assert_eq!(drain(&mut drv).len(), 16);
        virt.handle();
        assert_eq!(drain(&mut drv).len(), 16);
    }

    #[test]
    fn a_driver_queue_that_fills_under_us_loses_no_byte() {
        use core::sync::atomic::Ordering::Relaxed;
        let (dq, dd) = (SharedRegion::leak_zeroed(64), SharedRegion::leak_zeroed(64));
        let driver = SerialQueueHandle::new(dq.clone(), dd, 64).unwrap();
        let (cq, cd) = (SharedRegion::leak_zeroed(64), SharedRegion::leak_zeroed(256));
        let mut client = SerialQueueHandle::new(cq.clone(), cd.clone(), 256).unwrap();
        let theirs = SerialQueueHandle::new(cq.clone(), cd, 256).unwrap();
        let (c_tail, c_head) = (cq.atomic_u32(0).unwrap(), cq.atomic_u32(4).unwrap());
        let mut virt = VirtTx::new(driver, 0, [Some(Client { queue: theirs, channel: 1 })]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = crate::blk::virt::tests::flip_head(dq.clone(), 4, 0, 64, stop.clone());
        let driver_tail = dq.atomic_u32(0).unwrap();
        let (mut sent, mut lost) = (0usize, 0usize);
        for round in 0..50_000u32 {
            sent += client.enqueue_batch(&[round as u8; 7]);
            virt.handle();
            let published = driver_tail.load(Relaxed) as usize;
            let waiting = c_tail.load(Relaxed).wrapping_sub(c_head.load(Relaxed)) as usize;
            lost = sent - waiting - published;
            if lost != 0 {
                break;
            }
        }
        stop.store(true, Relaxed);
        flipper.join().unwrap();
        assert_eq!(lost, 0, "bytes left the client's queue but never reached the driver's");
    }
}
