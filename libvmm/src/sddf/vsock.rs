//! The virtio-vsock device's backend: the packet rings to the peer guest's
//! VMM (`sddf_bindings::vsock`, docs/vsock.md), and the channel between the
//! two VMMs.
//!
//! A notification on that channel means "packets, space or a change of the
//! peer's state": the VMM then lets the device poll. The device calls
//! [`VsockBackend::flush`] after each batch; the peer is notified only when
//! the rings' signalling flags say it waits for us.

use super::Notifier;
use sddf_bindings::vsock::VsockChannel;
use virtio::vsock::{VsockBackend, VsockHeader};

/// The rings to the peer VMM and the channel that signals it.
pub struct SddfVsock<N: Notifier> {
    ring: VsockChannel,
    channel: u8,
    notifier: N,
}

impl<N: Notifier> SddfVsock<N> {
    /// A backend over `ring`, notifying the peer VMM on `channel`.
    pub fn new(ring: VsockChannel, channel: u8, notifier: N) -> Self {
        SddfVsock { ring, channel, notifier }
    }

    /// The channel to the peer VMM.
    pub fn channel(&self) -> u8 {
        self.channel
    }

    /// The rings (statistics, tests).
    pub fn ring(&self) -> &VsockChannel {
        &self.ring
    }
}

impl<N: Notifier> VsockBackend for SddfVsock<N> {
    fn send_begin(&mut self, hdr: &VsockHeader) -> bool {
        match self.ring.send_begin(&hdr.to_bytes(), hdr.len.get() as usize) {
            Ok(()) => true,
            // Full: the ring asked the peer for a notification when space frees.
            Err(sddf_bindings::vsock::PacketError::Full) => false,
            Err(e) => {
                // The device checks lengths first: this is a bug, not the guest's doing.
                log::error!(target: "virtio", "vsock: packet refused by the ring: {e:?}");
                false
            }
        }
    }

    fn send_payload(&mut self, offset: usize, data: &[u8]) {
        if let Err(e) = self.ring.send_payload(offset, data) {
            log::error!(target: "virtio", "vsock: payload refused by the ring: {e:?}");
        }
    }

    fn send_commit(&mut self) {
        if let Err(e) = self.ring.send_commit() {
            log::error!(target: "virtio", "vsock: commit refused by the ring: {e:?}");
        }
    }

    fn recv_peek(&mut self) -> Option<VsockHeader> {
        self.ring.recv_peek().map(|p| VsockHeader::from_bytes(&p.hdr))
    }

    fn recv_payload(&mut self, offset: usize, buf: &mut [u8]) {
        if self.ring.recv_payload(offset, buf).is_err() {
            // Only past the packet's end, which the device never asks for.
            buf.fill(0);
        }
    }

    fn recv_pop(&mut self) {
        let _ = self.ring.recv_pop();
    }

    fn take_peer_reset(&mut self) -> bool {
        self.ring.poll_peer().is_some()
    }

    fn peer_up(&self) -> bool {
        self.ring.peer_state().up
    }

    fn set_up(&mut self, up: bool) {
        if up {
            self.ring.activate();
        } else {
            self.ring.reset();
        }
        // The peer learns of it from the control header, when it looks:
        // make it look.
        self.notifier.notify(self.channel);
    }

    fn flush(&mut self) {
        if self.ring.must_notify_peer() {
            self.notifier.notify(self.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sddf::Recorder;
    use sddf_bindings::SharedRegion;
    use virtio::vsock::packet::{VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_OP_RW};

    const RING: usize = 256 + (256 << 10);

    /// Two VMMs' backends over one pair of rings, notifying channel 4.
    fn pair() -> (SddfVsock<Recorder>, SddfVsock<Recorder>) {
        let (a_to_b, b_to_a) = (SharedRegion::leak_zeroed(RING), SharedRegion::leak_zeroed(RING));
        let a = VsockChannel::new(a_to_b.clone(), b_to_a.clone()).unwrap();
        let b = VsockChannel::new(b_to_a, a_to_b).unwrap();
        (SddfVsock::new(a, 4, Recorder::default()), SddfVsock::new(b, 4, Recorder::default()))
    }

    fn hdr(op: u16, len: u32) -> VsockHeader {
        VsockHeader {
            src_cid: 3.into(),
            dst_cid: 4.into(),
            src_port: 1000.into(),
            dst_port: 1234.into(),
            len: len.into(),
            socket_type: 1.into(),
            op: op.into(),
            buf_alloc: 65536.into(),
            ..VsockHeader::default()
        }
    }

    fn send(a: &mut SddfVsock<Recorder>, h: &VsockHeader, payload: &[u8]) -> bool {
        if !a.send_begin(h) {
            return false;
        }
        for (i, chunk) in payload.chunks(100).enumerate() {
            a.send_payload(i * 100, chunk);
        }
        a.send_commit();
        a.flush();
        true
    }

    #[test]
    fn packets_cross_in_order_with_their_payload() {
        let (mut a, mut b) = pair();
        a.set_up(true);
        b.set_up(true);
        assert!(a.peer_up() && b.peer_up());
        let _ = (a.take_peer_reset(), b.take_peer_reset());
        let payload: std::vec::Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        assert!(send(&mut a, &hdr(VIRTIO_VSOCK_OP_REQUEST, 0), &[]));
        assert!(send(&mut a, &hdr(VIRTIO_VSOCK_OP_RW, 3000), &payload));
        let first = b.recv_peek().expect("the request");
        assert_eq!((first.op.get(), first.len.get()), (VIRTIO_VSOCK_OP_REQUEST, 0));
        b.recv_pop();
        let second = b.recv_peek().expect("the data");
        assert_eq!(second, hdr(VIRTIO_VSOCK_OP_RW, 3000));
        let mut got = [0u8; 3000];
        b.recv_payload(0, &mut got[..1000]);
        b.recv_payload(1000, &mut got[1000..]);
        assert_eq!(&got[..], &payload[..]);
        b.recv_pop();
        assert!(b.recv_peek().is_none());
        // The peer was told, on the one channel between the VMMs.
        assert!(a.notifier.0.iter().all(|&ch| ch == 4) && !a.notifier.0.is_empty());
    }

    #[test]
    fn a_peer_reset_is_seen_once_and_drops_what_it_had_sent() {
        let (mut a, mut b) = pair();
        a.set_up(true);
        b.set_up(true);
        let _ = (a.take_peer_reset(), b.take_peer_reset());
        assert!(send(&mut a, &hdr(VIRTIO_VSOCK_OP_RW, 10), &[7; 10]));
        // a's guest reboots: its device resets and comes back.
        a.set_up(false);
        assert!(!b.peer_up());
        a.set_up(true);
        assert!(b.take_peer_reset(), "b sees the reset");
        assert!(!b.take_peer_reset(), "once");
        assert!(b.recv_peek().is_none(), "nothing from a's old incarnation");
        assert!(send(&mut a, &hdr(VIRTIO_VSOCK_OP_REQUEST, 0), &[]));
        assert_eq!(b.recv_peek().map(|h| h.op.get()), Some(VIRTIO_VSOCK_OP_REQUEST));
    }

    #[test]
    fn a_full_ring_refuses_until_the_peer_takes_packets() {
        let (mut a, mut b) = pair();
        a.set_up(true);
        b.set_up(true);
        let _ = (a.take_peer_reset(), b.take_peer_reset());
        let big = [0x5a; 65536];
        let mut sent = 0;
        while send(&mut a, &hdr(VIRTIO_VSOCK_OP_RW, 65536), &big) {
            sent += 1;
            assert!(sent < 100, "the ring never fills");
        }
        assert!(sent >= 2);
        let before = b.notifier.0.len();
        b.recv_peek().unwrap();
        b.recv_pop();
        b.flush();
        assert!(b.notifier.0.len() > before, "the waiting sender is notified");
        assert!(send(&mut a, &hdr(VIRTIO_VSOCK_OP_RW, 65536), &big));
    }
}
