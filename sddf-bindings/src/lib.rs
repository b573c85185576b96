//! The shared-memory queue ABI of sDDF 0.7 (serial, block), byte for byte
//! compatible with the C components.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
