//! virtio-MMIO transport (virtio 1.2, modern only) and devices.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
