//! The serial RX virtualiser: input from the driver to one client at a time.
//!
//! Input goes to the *current* client (the first one at start). A switch
//! sequence, as in sDDF's C virtualiser, makes another client current: the
//! switch byte (by default [`SWITCH`], `Ctrl-\`), then the client's number
//! (up to four decimal digits; client slot `i` is number `i` by default, as
//! in sDDF, or `first + i` with [`VirtRx::with_first_number`]), then Enter (`\r`; `\n` is taken
//! too). None of these bytes is delivered. The switch byte typed twice
//! delivers one switch byte. A number with no client behind it, or any
//! other byte in the middle of a sequence, ends the sequence (logged) and
//! that byte is not delivered; the current client stays.
//!
//! When the current client's queue is full, the virtualiser stops taking
//! bytes from the driver and asks the client for a signal: input waits
//! (back to the UART's FIFO) instead of being dropped.

use crate::Notify;
use sddf_bindings::serial::SerialQueueHandle;

/// The default byte that starts a client switch: `Ctrl-\` (0x1c), as in sDDF.
pub const SWITCH: u8 = 0x1c;

/// Most digits in a client number (sDDF: 4).
const MAX_DIGITS: u8 = 4;

/// How often one notification retries a client queue that reports room but takes nothing.
const RETRIES: u32 = 16;

/// One client: its RX queue (we produce) and its channel.
pub struct Client {
    /// The client's RX queue.
    pub queue: SerialQueueHandle,
    /// Our channel to the client.
    pub channel: u8,
}

/// Where the input stands in a switch sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Not in one: bytes are input.
    None,
    /// The switch byte came.
    Started,
    /// The switch byte and `count` digits, so far `value`.
    Number { value: u32, count: u8 },
}

/// What to do with one byte of input.
enum Action {
    /// Deliver it to the current client.
    Deliver,
    /// Take it and go to this state.
    Consume(Escape),
    /// Take it, end the sequence and make client `n` current if it exists.
    Switch(u32),
}

/// The RX virtualiser for up to `N` clients.
pub struct VirtRx<const N: usize> {
    driver: SerialQueueHandle,
    driver_channel: u8,
    clients: [Option<Client>; N],
    current: usize,
    switch: u8,
    first: u32,
    escape: Escape,
}

impl<const N: usize> VirtRx<N> {
    /// A virtualiser over the driver's RX queue (we consume), whose switch
    /// byte is [`SWITCH`].
    pub fn new(
        driver: SerialQueueHandle,
        driver_channel: u8,
        clients: [Option<Client>; N],
    ) -> Self {
        let current = clients.iter().position(Option::is_some).unwrap_or(0);
        let escape = Escape::None;
        VirtRx { driver, driver_channel, clients, current, switch: SWITCH, first: 0, escape }
    }

    /// The same with `byte` as the switch byte. A digit, `\r` or `\n` would
    /// make some sequences ambiguous; the PD should pick a control byte
    /// nobody types otherwise.
    pub fn with_switch(mut self, byte: u8) -> Self {
        self.switch = byte;
        self
    }

    /// The same with client slot `i` switched to by number `first + i`
    /// (sDDF, and the default: 0), so the numbers users type can match the
    /// labels they see.
    pub fn with_first_number(mut self, first: u32) -> Self {
        self.first = first;
        self
    }

    /// The client (slot) input goes to.
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
            // Look at a byte; take it only once it is delivered (or consumed).
            let mut byte = [0u8];
            if self.driver.peek_batch(&mut byte) == 0 {
                break;
            }
            match self.action(byte[0]) {
                Action::Consume(next) => self.escape = next,
                Action::Switch(n) => self.switch_to(n),
                Action::Deliver => {
                    match self.clients.get_mut(self.current).and_then(Option::as_mut) {
                        Some(client) => {
                            if client.queue.enqueue_batch(&byte) == 0 {
                                // Full: wait for the client's signal, unless it drained meanwhile.
                                if client.queue.request_consumer_signal() && retries > 0 {
                                    retries -= 1;
                                    continue;
                                }
                                break;
                            }
                            notify.add(client.channel);
                            self.escape = Escape::None;
                        }
                        None => {
                            log::warn!(target: "serial", "no client for input; byte dropped");
                            self.escape = Escape::None;
                        }
                    }
                }
            }
            self.driver.skip(1);
            took = true;
        }
        if took && self.driver.require_producer_signal() {
            self.driver.cancel_producer_signal();
            notify.add(self.driver_channel);
        }
        notify
    }

    /// What `byte` does in the current state (nothing changes yet: a byte to
    /// deliver may have to wait).
    fn action(&self, byte: u8) -> Action {
        let digit = byte.is_ascii_digit().then(|| u32::from(byte - b'0'));
        match (self.escape, digit) {
            (Escape::None, _) if byte == self.switch => Action::Consume(Escape::Started),
            (Escape::None, _) => Action::Deliver,
            (Escape::Started, _) if byte == self.switch => Action::Deliver,
            (Escape::Started, Some(d)) => Action::Consume(Escape::Number { value: d, count: 1 }),
            (Escape::Number { value, .. }, _) if byte == b'\r' || byte == b'\n' => {
                Action::Switch(value)
            }
            (Escape::Number { value, count }, Some(d)) if count < MAX_DIGITS => {
                Action::Consume(Escape::Number { value: value * 10 + d, count: count + 1 })
            }
            _ => {
                log::warn!(target: "serial", "input switch: unexpected byte {byte:#04x}; sequence dropped");
                Action::Consume(Escape::None)
            }
        }
    }

    /// Ends a switch sequence for the client numbered `n`: it becomes
    /// current if it exists.
    fn switch_to(&mut self, n: u32) {
        self.escape = Escape::None;
        let slot = n.checked_sub(self.first).and_then(|i| usize::try_from(i).ok());
        match slot.filter(|&i| self.clients.get(i).is_some_and(Option::is_some)) {
            Some(i) => {
                log::info!(target: "serial", "input now goes to client {n}");
                self.current = i;
            }
            None => {
                let current = self.current as u64 + u64::from(self.first);
                log::warn!(target: "serial", "input switch: no client {n}; input stays with client {current}");
            }
        }
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
    fn input_goes_to_the_current_client_and_switches_on_the_sequence() {
        let (mut v, mut drv, mut a, mut b) = virt();
        drv.enqueue_batch(b"ls\n\x1c1\rpwd\n\x1c0\ry");
        let n = v.handle();
        assert!(n.contains(1) && n.contains(2));
        assert_eq!(drain(&mut a), b"ls\ny");
        assert_eq!(drain(&mut b), b"pwd\n");
        assert_eq!(v.current(), 0);
    }

    #[test]
    fn a_line_feed_ends_the_number_too_and_leading_zeros_count_as_digits() {
        let (mut v, mut drv, mut a, mut b) = virt();
        drv.enqueue_batch(b"\x1c0001\nb\x1c0\na");
        v.handle();
        assert_eq!(drain(&mut b), b"b");
        assert_eq!(drain(&mut a), b"a");
    }

    #[test]
    fn the_switch_byte_twice_is_delivered_once() {
        let (mut v, mut drv, mut a, _) = virt();
        drv.enqueue_batch(b"a\x1c\x1cb\x1c\x1c\x1c\x1c");
        v.handle();
        assert_eq!(drain(&mut a), b"a\x1cb\x1c\x1c");
        assert_eq!(v.current(), 0);
    }

    #[test]
    fn a_switch_to_no_client_is_ignored_and_its_bytes_dropped() {
        let (mut v, mut drv, mut a, mut b) = virt();
        // Client 2 is past N, 9999 too; 12345 has too many digits (the 5th
        // ends it); a letter or Enter after the switch byte ends it.
        drv.enqueue_batch(b"\x1c2\rA\x1c9999\rB\x1c12345\rC\x1cxD\x1c\rE");
        v.handle();
        assert_eq!(v.current(), 0);
        // Only the byte that broke a sequence is lost: the `\r` after "1234" + "5" is input.
        assert_eq!(drain(&mut a), b"AB\rCDE");
        assert!(drain(&mut b).is_empty());
    }

    #[test]
    fn an_unmapped_client_slot_is_no_target() {
        let (drv, mut drv_side) = queue(64);
        let (b, mut b_client) = queue(16);
        let mut v = VirtRx::new(drv, 0, [None, Some(Client { queue: b, channel: 2 })]);
        assert_eq!(v.current(), 1, "input starts with the first mapped client");
        drv_side.enqueue_batch(b"\x1c0\rx");
        v.handle();
        assert_eq!(v.current(), 1);
        assert_eq!(drain(&mut b_client), b"x");
    }

    #[test]
    fn a_sequence_split_across_notifications_still_switches() {
        let (mut v, mut drv, _, mut b) = virt();
        for part in [&b"\x1c"[..], b"1", b"\r", b"z"] {
            drv.enqueue_batch(part);
            v.handle();
        }
        assert_eq!(v.current(), 1);
        assert_eq!(drain(&mut b), b"z");
    }

    #[test]
    fn the_switch_byte_is_configurable() {
        let (mut v, mut drv, mut a, mut b) = virt();
        v = v.with_switch(0x1d);
        drv.enqueue_batch(b"\x1c\x1d1\rq\x1d\x1d");
        v.handle();
        assert_eq!(drain(&mut a), b"\x1c", "the default byte is plain input now");
        assert_eq!(drain(&mut b), b"q\x1d");
    }

    #[test]
    fn numbers_can_start_at_one() {
        let (mut v, mut drv, mut a, mut b) = virt();
        v = v.with_first_number(1);
        drv.enqueue_batch(b"\x1c0\rx\x1c2\ry\x1c3\rz\x1c1\rw");
        v.handle();
        assert_eq!(drain(&mut a), b"xw", "0 is no client; 1 is slot 0");
        assert_eq!(drain(&mut b), b"yz", "2 is slot 1; 3 is no client");
        assert_eq!(v.current(), 0);
    }

    #[test]
    fn a_literal_switch_byte_waits_for_room_like_any_input() {
        let (mut v, mut drv, mut a, _) = virt();
        let mut input = [b'.'; 16].to_vec();
        input.extend_from_slice(b"\x1c\x1c!");
        drv.enqueue_batch(&input);
        v.handle();
        assert_eq!(drain(&mut a), [b'.'; 16]);
        v.handle();
        assert_eq!(drain(&mut a), b"\x1c!");
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
