//! The serial RX virtualiser: input from the driver to one client at a time.
//!
//! Input goes to the *current* client (the first one at start). Typing the
//! escape byte [`SWITCH`] (Ctrl-\) then a digit `d` makes client `d` current;
//! the two bytes are not delivered. When the current client's queue is full,
//! the virtualiser stops taking bytes from the driver and asks the client
//! for a signal: input waits (back to the UART's FIFO) instead of being
//! dropped.

use crate::Notify;
use sddf_bindings::serial::SerialQueueHandle;

/// The byte that starts a client switch: Ctrl-\ (0x1c).
pub const SWITCH: u8 = 0x1c;

/// How often one notification retries a client queue that reports room but takes nothing.
const RETRIES: u32 = 16;

/// One client: its RX queue (we produce) and its channel.
pub struct Client {
    /// The client's RX queue.
    pub queue: SerialQueueHandle,
    /// Our channel to the client.
    pub channel: u8,
}

/// The RX virtualiser for up to `N` clients.
pub struct VirtRx<const N: usize> {
    driver: SerialQueueHandle,
    driver_channel: u8,
    clients: [Option<Client>; N],
    current: usize,
    escape: bool,
}

impl<const N: usize> VirtRx<N> {
    /// A virtualiser over the driver's RX queue (we consume).
    pub fn new(
        driver: SerialQueueHandle,
        driver_channel: u8,
        clients: [Option<Client>; N],
    ) -> Self {
        let current = clients.iter().position(Option::is_some).unwrap_or(0);
        VirtRx { driver, driver_channel, clients, current, escape: false }
    }

    /// The client input goes to.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Delivers what can be delivered; call it on every notification (input
    /// from the driver, or room again in a client's queue).
    pub fn handle(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let mut took = false;
        // Bounded: a client whose index flips could otherwise keep us here.
        let mut retries = RETRIES;
        loop {
            // Look at a byte; take it only once it is delivered (or is a switch).
            let mut byte = [0u8];
            if self.driver.peek_batch(&mut byte) == 0 {
                break;
            }
            let byte = byte[0];
            if self.escape {
                match byte.checked_sub(b'0').map(usize::from) {
                    Some(d) if d < N && self.clients[d].is_some() => {
                        log::info!(target: "serial", "input now goes to client {d}");
                        self.current = d;
                        self.take();
                        took = true;
                        continue;
                    }
                    _ => {} // not a switch: deliver the byte as it is
                }
            } else if byte == SWITCH {
                self.escape = true;
                self.driver.skip(1);
                took = true;
                continue;
            }
            match self.clients.get_mut(self.current).and_then(Option::as_mut) {
                Some(client) => {
                    if client.queue.enqueue_batch(&[byte]) == 0 {
                        // Full: wait for the client's signal, unless it drained meanwhile.
                        if client.queue.request_consumer_signal() && retries > 0 {
                            retries -= 1;
                            continue;
                        }
                        break;
                    }
                    notify.add(client.channel);
                }
                None => log::warn!(target: "serial", "no client for input; byte dropped"),
            }
            self.take();
            took = true;
        }
        if took && self.driver.require_producer_signal() {
            self.driver.cancel_producer_signal();
            notify.add(self.driver_channel);
        }
        notify
    }

    /// Takes the byte looked at, which ends an escape.
    fn take(&mut self) {
        self.escape = false;
        self.driver.skip(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::virt_tx::tests::queue;
    use std::vec::Vec;

    fn drain(q: &mut SerialQueueHandle) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = q.dequeue_batch(&mut buf);
        buf[..n].to_vec()
    }

    fn virt() -> (VirtRx<2>, SerialQueueHandle, SerialQueueHandle, SerialQueueHandle) {
        let (drv, drv_side) = queue(64);
        let (a, a_client) = queue(16);
        let (b, b_client) = queue(16);
        let v = VirtRx::new(
            drv,
            0,
            [Some(Client { queue: a, channel: 1 }), Some(Client { queue: b, channel: 2 })],
        );
        (v, drv_side, a_client, b_client)
    }

    #[test]
    fn input_goes_to_the_current_client_and_switches_on_escape() {
        let (mut v, mut drv, mut a, mut b) = virt();
        drv.enqueue_batch(b"ls\n\x1c1pwd\n\x1c9x\x1c0y");
        let n = v.handle();
        assert!(n.contains(1) && n.contains(2));
        assert_eq!(drain(&mut a), b"ls\ny");
        assert_eq!(drain(&mut b), b"pwd\n9x", "an escape without a client is kept");
        assert_eq!(v.current(), 0);
    }

    #[test]
    fn a_full_client_queue_holds_input_back_instead_of_dropping_it() {
        let (mut v, mut drv, mut a, _) = virt();
        let input: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        drv.enqueue_batch(&input);
        v.handle();
        let mut got = drain(&mut a);
        assert_eq!(got.len(), 16, "the client's queue filled; the rest waits");
        assert_eq!(drv.free_space(), 64 - 24, "the driver's queue still holds 24");
        assert!(a.require_producer_signal(), "virt_rx asked the client for a signal");
        a.cancel_producer_signal();
        while got.len() < input.len() {
            v.handle();
            got.extend(drain(&mut a));
        }
        assert_eq!(got, input);
    }

    #[test]
    fn the_driver_is_signalled_when_it_asked() {
        let (mut v, mut drv, _, _) = virt();
        drv.enqueue_batch(b"abc");
        assert!(drv.request_consumer_signal());
        let n = v.handle();
        assert!(n.contains(0));
    }

    #[test]
    fn a_client_queue_that_fills_under_us_loses_no_input() {
        use core::sync::atomic::Ordering::Relaxed;
        use sddf_bindings::SharedRegion;
        let (dq, dd) = (SharedRegion::leak_zeroed(64), SharedRegion::leak_zeroed(256));
        let driver = SerialQueueHandle::new(dq.clone(), dd.clone(), 256).unwrap();
        let mut drv = SerialQueueHandle::new(dq.clone(), dd, 256).unwrap();
        let (cq, cd) = (SharedRegion::leak_zeroed(64), SharedRegion::leak_zeroed(64));
        let client = SerialQueueHandle::new(cq.clone(), cd, 64).unwrap();
        let mut v = VirtRx::new(driver, 0, [Some(Client { queue: client, channel: 1 })]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = crate::blk::virt::tests::flip_head(cq.clone(), 4, 0, 64, stop.clone());
        let (taken, delivered) = (dq.atomic_u32(4).unwrap(), cq.atomic_u32(0).unwrap());
        while cq.atomic_u32(4).unwrap().load(Relaxed) == 0 {
            std::thread::yield_now(); // until the flipper runs
        }
        for _ in 0..50_000 {
            drv.enqueue_batch(b"abc");
            v.handle();
            if taken.load(Relaxed) != delivered.load(Relaxed) {
                break;
            }
        }
        stop.store(true, Relaxed);
        flipper.join().unwrap();
        assert_eq!(taken.load(Relaxed), delivered.load(Relaxed), "input taken but not delivered");
    }
}
