//! Block: a virtio-MMIO block driver and the block virtualiser.
//!
//! Requests flow client → `virt` → driver → device. The virtualiser turns a
//! client's data-region offset into the I/O (physical) address the device
//! uses, and a client's block number into a disk block number; the driver
//! never touches data, only the device's rings.
//! `partition` reads the MBR or GPT that the virtualiser uses to find a
//! client's partition.

#[cfg(test)]
mod end_to_end;
pub mod partition;
pub mod probe;
#[cfg(test)]
mod testing;
pub mod virt;
pub mod virtio;

use sddf_bindings::SharedRegion;

/// DMA memory: a region the device can reach, and its I/O address.
pub struct Dma {
    /// The region, mapped in this PD.
    pub region: SharedRegion,
    /// Its address as the device sees it.
    pub io_addr: u64,
}
