//! virtio-vsock (device id 19, virtio 1.2 §5.10) between two guests: stream sockets only.
//!
//! The device joins one guest to exactly one peer guest, through a [`VsockBackend`] (the
//! VMM-to-VMM channel). It does not terminate connections: the two guests' drivers speak the
//! vsock protocol to each other, credit-based flow control included, and the device checks
//! and forwards packets:
//!
//! - **tx** (queue 1): each chain is parsed ([`packet::parse_tx`]: read-only buffers, a whole
//!   header, `len` inside the chain and at most 64 KiB) and classified
//!   ([`packet::classify_tx`]). A packet from another CID is dropped. A packet of an unknown
//!   type or op, to a CID other than the peer's, or a REQUEST while the peer is down, is
//!   answered by the device itself with an RST on the guest's rx queue. Everything else goes
//!   to the backend unchanged. When the backend is full the chain stays in the available ring
//!   and the device retries on its next poll: nothing is lost, order is kept.
//! - **rx** (queue 0): device RSTs (a small fixed queue; the oldest is dropped when it is
//!   full) and the peer's packets fill the guest's receive buffers, header then payload over
//!   any split. An RW payload larger than the buffer is delivered as several RW packets with
//!   the same header and smaller `len`, in order.
//! - **event** (queue 2): when the peer's transport was reset, one
//!   VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, held until the guest posts an event buffer.
//!
//! Payload bytes go through a small stack buffer ([`CHUNK`] bytes); the device holds no
//! chain and no payload between calls.

mod device;
pub mod packet;

pub use device::{VsockDevice, RST_QUEUE_CAPACITY};
pub use packet::{VsockHeader, HEADER_SIZE};

/// virtio device id of a socket device (virtio 1.2 §5.10.1).
pub const VSOCK_DEVICE_ID: u32 = 19;
/// rx: device to guest (virtio 1.2 §5.10.2).
pub const RXQ: u16 = 0;
/// tx: guest to device.
pub const TXQ: u16 = 1;
/// event: device events to the guest.
pub const EVENTQ: u16 = 2;
/// QueueNumMax of each queue.
pub const QUEUE_SIZE: u16 = 128;
/// VIRTIO_VSOCK_F_STREAM (bit 0): stream sockets (virtio 1.2 §5.10.3). The only feature
/// offered; the device behaves the same whether or not the driver accepts it (Linux does
/// not know the bit).
pub const VIRTIO_VSOCK_F_STREAM: u64 = 1 << 0;
/// Payload bytes moved per backend call (a stack buffer).
pub const CHUNK: usize = 512;

/// Where the device's packets go and come from: the VMM-to-VMM channel to the peer guest.
///
/// A packet is a [`VsockHeader`] and `len` payload bytes; payload is copied in pieces of at
/// most [`CHUNK`] bytes, in order, so no side needs a 64 KiB buffer. The backend must be able
/// to hold at least one packet of [`HEADER_SIZE`] + 64 KiB, or a full-size packet never goes.
pub trait VsockBackend {
    /// Reserves room for one packet with `hdr` (payload of `hdr.len` bytes). False: no room
    /// now (the device keeps the tx chain and retries on its next poll).
    fn send_begin(&mut self, hdr: &VsockHeader) -> bool;
    /// Writes payload bytes `data` at `offset` into the reserved packet.
    fn send_payload(&mut self, offset: usize, data: &[u8]);
    /// Publishes the reserved packet to the peer.
    fn send_commit(&mut self);
    /// The header of the oldest packet from the peer, if any (not removed). The device reads
    /// it once per packet and checks it; the backend need not.
    fn recv_peek(&mut self) -> Option<VsockHeader>;
    /// Copies payload bytes of that packet from `offset` into `buf`.
    fn recv_payload(&mut self, offset: usize, buf: &mut [u8]);
    /// Removes that packet.
    fn recv_pop(&mut self);
    /// True once after the peer's transport was reset (its guest rebooted or stopped) since
    /// the last call.
    fn take_peer_reset(&mut self) -> bool;
    /// Whether the peer's device is up (its driver set DRIVER_OK); a REQUEST to a peer that
    /// is not up is answered with RST.
    fn peer_up(&self) -> bool;
    /// Our device became active (true) or was reset (false): tell the peer. `false` also
    /// comes when the device was not up (the driver resets it before initialising it).
    fn set_up(&mut self, up: bool);
    /// Called at the end of each queue_notify/poll: send the notifications owed (coalesced).
    fn flush(&mut self) {}
}
