//! Fuzz harnesses, one module per target (`fuzz_targets/<name>.rs` calls `<module>::run`).
//!
//! Each `run` takes the raw fuzzer input, so a crash artifact pasted into a `#[test]` here
//! (or into the owning crate's tests) replays exactly. `seeds` builds the seed corpus.

pub mod devices;
pub mod exit;
pub mod fdt;
pub mod image;
pub mod partition;
pub mod sddf;
pub mod seeds;
pub mod snd;
pub mod vgic;
pub mod vgic3;
pub mod virtio_ops;
pub mod virtqueue;
pub mod vsock;
