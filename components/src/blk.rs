//! Block: a virtio-MMIO block driver and the block virtualiser.
//!
//! Requests flow client → `virt` → driver → device. The virtualiser turns a
//! client's data-region offset into the I/O (physical) address the device
//! uses, and a client's block number into a disk block number; the driver
//! never touches data, only the device's rings.

pub mod partition;
pub mod probe;
pub mod virt;
pub mod virtio;
