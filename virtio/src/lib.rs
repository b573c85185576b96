//! virtio-MMIO transport (virtio 1.2, modern only) and devices.
//!
//! The crate is split along the seams of the virtio 1.2 specification:
//!
//! - [`layout`]: the byte layouts of the structures in guest memory (descriptors, ring
//!   entries, the block request and vsock packet headers, configuration spaces), checked at
//!   compile time.
//! - [`memory`]: the [`GuestMemory`] seam, guest-physical memory as the device sees it.
//! - [`queue`]: split virtqueues (§2.7): ring access, descriptor-chain parsing, notification
//!   suppression. Every guest-written value is read once and validated.
//! - [`device`]: the [`VirtioDevice`] trait that a device model implements; it never sees
//!   register offsets or the device status.
//! - [`mmio`]: the virtio-MMIO transport (§4.2.2), which owns the status machine, feature
//!   negotiation, queue configuration and the interrupt status.
//! - [`console`] (device id 3), [`block`] (device id 2), [`vsock`] (device id 19) and
//!   [`sound`] (device id 25), each generic over a small backend trait.
//!
//! Nothing here panics on guest input and nothing allocates: the library is `no_std` and uses
//! fixed-capacity arrays. Guest mistakes are logged with `log::warn!(target: "virtio", ...)`
//! (rate limited) and handled as the specification asks (chain completed with length 0, an
//! I/O error status, or `DEVICE_NEEDS_RESET`).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::sync::atomic::{AtomicU32, Ordering};

/// Logs a guest mistake at `warn` level under target `virtio`, rate limited crate-wide.
macro_rules! guest_warn {
    ($($arg:tt)*) => {
        if $crate::guest_log_allowed() {
            log::warn!(target: "virtio", $($arg)*);
        }
    };
}

pub mod block;
pub mod console;
pub mod device;
pub mod layout;
pub mod memory;
pub mod mmio;
pub mod queue;
pub mod sound;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod vsock;

pub use device::{DeviceContext, VirtioDevice};
pub use memory::{CopyError, GuestMemory, GuestMemoryExt, MemoryError, SharedBuffer, SliceMemory};
pub use mmio::{Interrupt, MmioTransport};
pub use queue::{DescriptorChain, Queue, Segment};

/// Feature bit masks that are not specific to one device type (virtio 1.2 §6).
pub mod features {
    /// VIRTIO_F_INDIRECT_DESC (bit 28): the driver may use indirect descriptor tables
    /// (virtio 1.2 §2.7.5.3).
    pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
    /// VIRTIO_F_EVENT_IDX (bit 29): `used_event` / `avail_event` notification suppression
    /// (virtio 1.2 §2.7.10).
    pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
    /// VIRTIO_F_VERSION_1 (bit 32): compliance with virtio 1.x; required by this modern-only
    /// transport (virtio 1.2 §6.1).
    pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
}

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    /// ACKNOWLEDGE: the guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// DRIVER: the guest knows how to drive the device.
    pub const DRIVER: u32 = 2;
    /// DRIVER_OK: the driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = 4;
    /// FEATURES_OK: feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// DEVICE_NEEDS_RESET: the device hit an error it cannot recover from.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// FAILED: the guest gave up on the device.
    pub const FAILED: u32 = 128;
}

/// How many guest-mistake warnings are logged before rate limiting starts.
const GUEST_LOG_BURST: u32 = 256;
/// After the burst, one warning in this many is logged.
const GUEST_LOG_EVERY: u32 = 4096;

static GUEST_LOG_COUNT: AtomicU32 = AtomicU32::new(0);

/// Whether the next guest-mistake warning should be logged (a hostile guest must not be able
/// to flood the VMM's console).
#[doc(hidden)]
pub fn guest_log_allowed() -> bool {
    let n = GUEST_LOG_COUNT.fetch_add(1, Ordering::Relaxed);
    n < GUEST_LOG_BURST || n % GUEST_LOG_EVERY == 0
}
