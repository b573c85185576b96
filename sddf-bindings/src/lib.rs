//! The shared-memory queue ABI of sDDF 0.7 (serial, block, sound), byte for byte
//! compatible with the C components.
//!
//! - [`shared`]: bounds-checked volatile and atomic access to a shared region
//!   ([`SharedRegion`]). It holds every `unsafe` block of the crate.
//! - [`serial`]: byte rings with the producer-side signalling flag.
//! - [`blk`]: request/response rings and the storage-info region.
//! - [`sound`]: command and PCM rings and the shared stream state.
//! - [`timer`]: the timer driver's protected-call protocol (no shared memory).
//! - [`config`]: `#[repr(C)]` mirrors of the sdfgen config structs.
//! - [`vsock`]: our own VMM-to-VMM packet channel for virtio-vsock (not an
//!   sDDF ABI; docs/vsock.md).
//!
//! The peer behind a queue is not trusted: whatever it writes into shared
//! memory, no operation panics or touches memory outside its regions. Queue
//! capacities come from the configuration, never from shared memory. Layouts
//! and protocols follow `shared/design/sddf-abi.md` (sDDF 0.7.0, `650ace5d`).

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs, unsafe_code)]

#[cfg(any(test, feature = "test-utils"))]
extern crate alloc;

pub mod blk;
pub mod config;
mod ring;
pub mod serial;
pub mod shared;
pub mod sound;
#[cfg(test)]
mod testing;
pub mod timer;
pub mod vsock;

pub use shared::{ConfigCell, SharedAtomic, SharedRegion};

use core::fmt;

/// Why a shared region or a queue handle could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// An access or a sub-region lies (partly) outside its shared region.
    OutOfBounds,
    /// An atomic field is not naturally aligned.
    Misaligned,
    /// A region resource has a null address (the connection is not set up).
    NullRegion,
    /// A queue capacity is zero or not a power of two.
    BadCapacity,
    /// A region is smaller than the queue layout needs for its capacity.
    RegionTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::OutOfBounds => "access outside a shared region",
            Error::Misaligned => "atomic field in shared memory is not naturally aligned",
            Error::NullRegion => "shared region has a null address",
            Error::BadCapacity => "queue capacity is zero or not a power of two",
            Error::RegionTooSmall => "shared region is too small for the queue capacity",
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_a_sentence() {
        assert_eq!(Error::BadCapacity.to_string(), "queue capacity is zero or not a power of two");
        assert_eq!(Error::OutOfBounds.to_string(), "access outside a shared region");
    }
}
