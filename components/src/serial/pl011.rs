//! Driver for the Arm PrimeCell UART (PL011), as on QEMU's `virt` machine.
//!
//! TX: bytes from the TX virtualiser's queue go to the data register while
//! the TX FIFO has room; when it is full the TX interrupt is unmasked and
//! the rest waits for it. RX: on the RX (or RX timeout) interrupt, bytes go
//! from the FIFO into the RX virtualiser's queue while it has room. When it
//! is full the RX interrupts are masked and the driver asks `virt_rx` for a
//! signal; the bytes wait in the FIFO meanwhile, so none is lost.
//! Registers: PL011 TRM (DDI 0183), §3.

use crate::{Notify, Registers};
use sddf_bindings::serial::SerialQueueHandle;

/// Data register.
pub const UARTDR: usize = 0x00;
/// Flag register.
pub const UARTFR: usize = 0x18;
/// Line control.
pub const UARTLCR_H: usize = 0x2c;
/// Control.
pub const UARTCR: usize = 0x30;
/// Interrupt mask set/clear (1 = enabled).
pub const UARTIMSC: usize = 0x38;
/// Masked interrupt status.
pub const UARTMIS: usize = 0x40;
/// Interrupt clear.
pub const UARTICR: usize = 0x44;

/// FR: transmit FIFO full.
pub const FR_TXFF: u32 = 1 << 5;
/// FR: receive FIFO empty.
pub const FR_RXFE: u32 = 1 << 4;
/// LCR_H: 8-bit words.
pub const LCR_H_WLEN8: u32 = 0b11 << 5;
/// LCR_H: FIFOs enabled.
pub const LCR_H_FEN: u32 = 1 << 4;
/// CR: UART enable, transmit enable, receive enable.
pub const CR_UARTEN: u32 = 1;
/// CR: transmit enable.
pub const CR_TXE: u32 = 1 << 8;
/// CR: receive enable.
pub const CR_RXE: u32 = 1 << 9;
/// Interrupt bit: receive.
pub const INT_RX: u32 = 1 << 4;
/// Interrupt bit: transmit.
pub const INT_TX: u32 = 1 << 5;
/// Interrupt bit: receive timeout.
pub const INT_RT: u32 = 1 << 6;

/// Bytes per batch between the FIFO and a queue.
const BATCH: usize = 32;

/// The driver's ends of its two queues.
pub struct Queues {
    /// From the TX virtualiser (we consume).
    pub tx: SerialQueueHandle,
    /// To the RX virtualiser (we produce); `None` for a TX-only system.
    pub rx: Option<SerialQueueHandle>,
    /// Channel to the TX virtualiser.
    pub tx_channel: u8,
    /// Channel to the RX virtualiser.
    pub rx_channel: u8,
}

/// A PL011 and the driver's queues.
pub struct Pl011<R: Registers> {
    regs: R,
    q: Queues,
    /// Bytes taken from the TX queue that the FIFO has not accepted yet.
    pending: [u8; BATCH],
    pending_at: usize,
    pending_len: usize,
}

impl<R: Registers> Pl011<R> {
    /// Sets the UART up (8N1, FIFOs, RX interrupts) and returns the driver.
    /// The baud rate is left as firmware set it.
    pub fn new(mut regs: R, q: Queues) -> Self {
        regs.write(UARTCR, 0);
        regs.write(UARTLCR_H, LCR_H_WLEN8 | LCR_H_FEN);
        regs.write(UARTICR, 0x7ff);
        regs.write(UARTIMSC, if q.rx.is_some() { INT_RX | INT_RT } else { 0 });
        regs.write(UARTCR, CR_UARTEN | CR_TXE | if q.rx.is_some() { CR_RXE } else { 0 });
        Pl011 { regs, q, pending: [0; BATCH], pending_at: 0, pending_len: 0 }
    }

    /// The register block (tests look at their model through it).
    pub fn regs(&mut self) -> &mut R {
        &mut self.regs
    }

    /// The UART interrupt: receive, and transmit what waited for FIFO room.
    pub fn handle_irq(&mut self) -> Notify {
        let status = self.regs.read(UARTMIS);
        self.regs.write(UARTICR, status);
        let mut notify = Notify::NONE;
        if status & (INT_RX | INT_RT) != 0 {
            notify.merge(self.receive());
        }
        notify.merge(self.transmit());
        notify
    }

    /// A notification from the TX virtualiser (data) or the RX virtualiser
    /// (room in the RX queue again).
    pub fn handle_notified(&mut self, channel: u8) -> Notify {
        let mut notify = Notify::NONE;
        if channel == self.q.rx_channel && self.q.rx.is_some() {
            notify.merge(self.receive());
        }
        if channel == self.q.tx_channel {
            notify.merge(self.transmit());
        }
        notify
    }

    /// Moves TX bytes into the FIFO until either runs out.
    fn transmit(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let mut took = false;
        loop {
            if self.pending_at == self.pending_len {
                self.pending_at = 0;
                self.pending_len = self.q.tx.dequeue_batch(&mut self.pending);
                took |= self.pending_len > 0;
                if self.pending_len == 0 {
                    self.mask(INT_TX, false);
                    break;
                }
            }
            if self.regs.read(UARTFR) & FR_TXFF != 0 {
                // The FIFO raises INT_TX when it drains below its trigger level.
                self.mask(INT_TX, true);
                break;
            }
            self.regs.write(UARTDR, u32::from(self.pending[self.pending_at]));
            self.pending_at += 1;
        }
        if took && self.q.tx.require_producer_signal() {
            self.q.tx.cancel_producer_signal();
            notify.add(self.q.tx_channel);
        }
        notify
    }

    /// Moves received bytes from the FIFO to the RX queue while it has room.
    fn receive(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let Some(rx) = self.q.rx.as_mut() else { return notify };
        let mut buf = [0u8; BATCH];
        loop {
            let room = (rx.free_space() as usize).min(BATCH);
            if room == 0 {
                if rx.request_consumer_signal() {
                    continue;
                }
                // Full: leave input in the FIFO until virt_rx makes room.
                let imsc = self.regs.read(UARTIMSC) & !(INT_RX | INT_RT);
                self.regs.write(UARTIMSC, imsc);
                break;
            }
            let mut n = 0;
            while n < room && self.regs.read(UARTFR) & FR_RXFE == 0 {
                buf[n] = self.regs.read(UARTDR) as u8;
                n += 1;
            }
            if n == 0 {
                let imsc = self.regs.read(UARTIMSC) | INT_RX | INT_RT;
                self.regs.write(UARTIMSC, imsc);
                break;
            }
            let put = rx.enqueue_batch(&buf[..n]);
            if put < n {
                // It had room for `n`, and we are its only producer: the RX virtualiser
                // moved its index back. The FIFO cannot take the bytes back.
                log::warn!(target: "serial", "RX queue shrank under us: {} input bytes dropped (corrupt RX virtualiser index)", n - put);
            }
            notify.add(self.q.rx_channel);
        }
        notify
    }

    fn mask(&mut self, bits: u32, enabled: bool) {
        let imsc = self.regs.read(UARTIMSC);
        let new = if enabled { imsc | bits } else { imsc & !bits };
        if new != imsc {
            self.regs.write(UARTIMSC, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sddf_bindings::SharedRegion;
    use std::collections::VecDeque;
    use std::vec::Vec;

    /// A PL011 model: FIFOs of 32 bytes (TX drains only when the test says).
    #[derive(Default)]
    struct Model {
        tx_fifo: VecDeque<u8>,
        sent: Vec<u8>,
        rx_fifo: VecDeque<u8>,
        imsc: u32,
        cr: u32,
    }

    impl Model {
        fn drain_tx(&mut self) {
            self.sent.extend(self.tx_fifo.drain(..));
        }
    }

    impl Registers for Model {
        fn read(&mut self, offset: usize) -> u32 {
            match offset {
                UARTFR => {
                    (if self.tx_fifo.len() >= 32 { FR_TXFF } else { 0 })
                        | if self.rx_fifo.is_empty() { FR_RXFE } else { 0 }
                }
                UARTDR => self.rx_fifo.pop_front().map_or(0, u32::from),
                UARTIMSC => self.imsc,
                UARTMIS => {
                    let raw = if self.rx_fifo.is_empty() { 0 } else { INT_RX }
                        | if self.tx_fifo.len() < 16 { INT_TX } else { 0 };
                    raw & self.imsc
                }
                UARTCR => self.cr,
                _ => 0,
            }
        }
        fn write(&mut self, offset: usize, value: u32) {
            match offset {
                UARTDR => {
                    assert!(self.tx_fifo.len() < 32, "write to a full TX FIFO");
                    self.tx_fifo.push_back(value as u8);
                }
                UARTIMSC => self.imsc = value,
                UARTCR => self.cr = value,
                _ => {}
            }
        }
    }

    fn queue(cap: u32) -> (SerialQueueHandle, SerialQueueHandle) {
        let q = SharedRegion::leak_zeroed(64);
        let d = SharedRegion::leak_zeroed(cap as usize);
        (
            SerialQueueHandle::new(q.clone(), d.clone(), cap).unwrap(),
            SerialQueueHandle::new(q, d, cap).unwrap(),
        )
    }

    fn driver() -> (Pl011<Model>, SerialQueueHandle, SerialQueueHandle) {
        let (tx, virt_tx) = queue(256);
        let (rx, virt_rx) = queue(64);
        let q = Queues { tx, rx: Some(rx), tx_channel: 1, rx_channel: 2 };
        (Pl011::new(Model::default(), q), virt_tx, virt_rx)
    }

    #[test]
    fn init_enables_the_uart_and_rx_interrupts() {
        let (mut d, _, _) = driver();
        assert_eq!(d.regs().cr, CR_UARTEN | CR_TXE | CR_RXE);
        assert_eq!(d.regs().imsc, INT_RX | INT_RT);
    }

    #[test]
    fn tx_waits_for_fifo_room_without_losing_bytes() {
        let (mut d, mut virt_tx, _) = driver();
        let data: Vec<u8> = (0..200u8).collect();
        assert_eq!(virt_tx.enqueue_batch(&data), 200);
        assert!(!virt_tx.request_consumer_signal() || virt_tx.free_space() > 0);
        d.handle_notified(1);
        assert_eq!(d.regs().tx_fifo.len(), 32, "FIFO filled");
        assert!(d.regs().imsc & INT_TX != 0, "waits for the TX interrupt");
        let mut rounds = 0;
        while d.regs().sent.len() + d.regs().tx_fifo.len() < 200 {
            d.regs().drain_tx();
            let n = d.handle_irq();
            assert!(n.is_empty() || n.contains(1));
            rounds += 1;
            assert!(rounds < 20);
        }
        d.regs().drain_tx();
        assert_eq!(d.regs().sent, data);
        d.handle_irq();
        assert_eq!(d.regs().imsc & INT_TX, 0, "TX interrupt masked when idle");
    }

    #[test]
    fn tx_signals_the_virtualiser_when_it_asked() {
        let (mut d, mut virt_tx, _) = driver();
        virt_tx.enqueue_batch(&[7; 256]);
        assert!(!virt_tx.request_consumer_signal(), "queue full");
        let n = d.handle_notified(1);
        assert!(n.contains(1), "space again: signal virt_tx");
    }

    #[test]
    fn rx_stops_at_a_full_queue_and_resumes_when_signalled() {
        let (mut d, _, mut virt_rx) = driver();
        let input: Vec<u8> = (0..100u8).collect();
        d.regs().rx_fifo.extend(input.iter().copied());
        let n = d.handle_irq();
        assert!(n.contains(2));
        assert_eq!(virt_rx.len(), 64);
        assert_eq!(d.regs().rx_fifo.len(), 36, "the rest stays in the FIFO");
        assert_eq!(d.regs().imsc & (INT_RX | INT_RT), 0, "RX masked while full");
        let mut got = [0u8; 100];
        let mut n = virt_rx.dequeue_batch(&mut got);
        assert!(virt_rx.require_producer_signal(), "the driver asked for a signal");
        virt_rx.cancel_producer_signal();
        d.handle_notified(2);
        n += virt_rx.dequeue_batch(&mut got[n..]);
        assert_eq!(&got[..n], &input[..]);
        assert_eq!(d.regs().imsc & (INT_RX | INT_RT), INT_RX | INT_RT, "RX unmasked");
    }
}
