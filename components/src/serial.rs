//! Serial: the PL011 driver and the TX/RX virtualisers.
//!
//! Data flows client → `virt_tx` → driver → UART, and UART → driver →
//! `virt_rx` → the current client. Every hop is an sDDF serial queue, and
//! every hop is lossless: a producer facing a full queue asks the consumer
//! for a signal (`producer_signalled`) and waits, and the driver leaves input
//! in the UART's FIFO (hardware flow control) while its RX queue is full.
//!
//! When several clients share the UART, `virt_tx` can start each client's
//! lines with a [`label::Label`], and `virt_rx` switches input between
//! clients on sDDF's key sequence (`Ctrl-\`, a client number, Enter).

pub mod label;
pub mod pl011;
pub mod virt_rx;
pub mod virt_tx;

/// Bytes moved per copy between two queues (a stack buffer).
const CHUNK: usize = 256;
