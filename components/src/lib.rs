//! sDDF components written in Rust, on [`sddf_bindings`]: the drivers and
//! virtualisers that sit between a device and its clients (a VMM's virtio
//! devices, or native PDs).
//!
//! - [`serial::pl011`]: the Arm PL011 UART driver;
//! - [`serial::virt_tx`], [`serial::virt_rx`]: the serial virtualisers, which
//!   share one UART between several clients;
//! - [`blk::virtio`]: a driver for a virtio-MMIO block device (QEMU's
//!   `virtio-blk-device`);
//! - [`blk::virt`]: the block virtualiser, which gives each client a range
//!   of the disk or a partition of its MBR or GPT ([`blk::partition`]);
//! - [`pci`]: bus-0 enumeration, BAR sizing and assignment and INTx routing
//!   on a generic ECAM host bridge, for native drivers of PCI devices;
//! - [`sound::hda`]: a driver for an Intel High Definition Audio controller
//!   and its codec (QEMU's `intel-hda` with `hda-output`), playing periods
//!   from a [`sound::PeriodSource`]; [`sound::sddf`] serves the sDDF sound
//!   driver queues with it;
//! - [`sound::virt`]: the sound virtualiser, which shares the driver's
//!   streams between clients (one owner per stream);
//! - [`timer`]: timeouts for several clients on one hardware timer (sDDF's
//!   timer protocol).
//!
//! Everything here is safe code over [`sddf_bindings::SharedRegion`] (queues,
//! DMA memory and device registers alike), so it runs in host tests. A
//! component never notifies by itself: each handler returns the channels to
//! notify as a [`Notify`] set and the protection domain sends them.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod blk;
mod notify;
pub mod pci;
mod regs;
pub mod serial;
pub mod sound;
pub mod timer;

pub use notify::Notify;
pub use regs::Registers;
