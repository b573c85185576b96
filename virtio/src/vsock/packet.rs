//! virtio-vsock packets (virtio 1.2 §5.10.6): the header, a transmit chain parsed into one,
//! and the rules that decide what the device does with it.
//!
//! [`parse_tx`] only looks at the chain (layout and lengths) and reads the header once;
//! [`classify_tx`] then decides, from the header alone, whether the packet goes to the peer,
//! is answered with an RST by the device, or is dropped. [`check_rx`] is the same kind of
//! check for packets that come from the peer.

use core::fmt;

pub use crate::layout::VsockHeader;
use crate::memory::{GuestMemory, MemoryError};
use crate::queue::DescriptorChain;

/// Size of `struct virtio_vsock_hdr` ([`VsockHeader`], virtio 1.2 §5.10.6).
pub const HEADER_SIZE: usize = core::mem::size_of::<VsockHeader>();
/// Largest payload of one packet: Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE (64 KiB). Longer
/// packets are dropped.
pub const VIRTIO_VSOCK_MAX_PKT_BUF_SIZE: u32 = 64 * 1024;

/// VIRTIO_VSOCK_OP_INVALID (virtio 1.2 §5.10.6).
pub const VIRTIO_VSOCK_OP_INVALID: u16 = 0;
/// VIRTIO_VSOCK_OP_REQUEST: connect.
pub const VIRTIO_VSOCK_OP_REQUEST: u16 = 1;
/// VIRTIO_VSOCK_OP_RESPONSE: connection accepted.
pub const VIRTIO_VSOCK_OP_RESPONSE: u16 = 2;
/// VIRTIO_VSOCK_OP_RST: connection refused or aborted.
pub const VIRTIO_VSOCK_OP_RST: u16 = 3;
/// VIRTIO_VSOCK_OP_SHUTDOWN: no more data in one or both directions (`flags`).
pub const VIRTIO_VSOCK_OP_SHUTDOWN: u16 = 4;
/// VIRTIO_VSOCK_OP_RW: payload.
pub const VIRTIO_VSOCK_OP_RW: u16 = 5;
/// VIRTIO_VSOCK_OP_CREDIT_UPDATE: the sender's `buf_alloc` / `fwd_cnt`.
pub const VIRTIO_VSOCK_OP_CREDIT_UPDATE: u16 = 6;
/// VIRTIO_VSOCK_OP_CREDIT_REQUEST: asks for a CREDIT_UPDATE.
pub const VIRTIO_VSOCK_OP_CREDIT_REQUEST: u16 = 7;
/// VIRTIO_VSOCK_TYPE_STREAM, the only socket type offered (virtio 1.2 §5.10.6.2).
pub const VIRTIO_VSOCK_TYPE_STREAM: u16 = 1;
/// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: the `id` of the only event (virtio 1.2 §5.10.6.6).
pub const VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: u32 = 0;
/// Size of `struct virtio_vsock_event` (`le32 id`).
pub const EVENT_SIZE: usize = core::mem::size_of::<crate::layout::VirtioVsockEvent>();
/// The well-known CID of the host (virtio 1.2 §5.10.4); never a guest's, never our peer's.
pub const VMADDR_CID_HOST: u64 = 2;

impl VsockHeader {
    /// Decodes the 44 little-endian bytes of a header.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> VsockHeader {
        zerocopy::transmute!(*b)
    }

    /// Encodes the header as 44 little-endian bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        zerocopy::transmute!(*self)
    }

    /// The RST that answers this packet: addresses swapped, same type, no payload, no credit.
    pub fn reset_reply(&self) -> VsockHeader {
        VsockHeader {
            src_cid: self.dst_cid,
            dst_cid: self.src_cid,
            src_port: self.dst_port,
            dst_port: self.src_port,
            socket_type: self.socket_type,
            op: VIRTIO_VSOCK_OP_RST.into(),
            ..VsockHeader::default()
        }
    }
}

/// Whether `op` is one of the seven operations of virtio 1.2 §5.10.6.
pub fn op_known(op: u16) -> bool {
    (VIRTIO_VSOCK_OP_REQUEST..=VIRTIO_VSOCK_OP_CREDIT_REQUEST).contains(&op)
}

/// Why a transmit chain is not a packet. All are guest mistakes; the chain is returned with
/// length 0 and the packet dropped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TxError {
    /// A device-writable buffer: transmit buffers are read-only (virtio 1.2 §5.10.6.4).
    WritableBuffer,
    /// Fewer readable bytes than a header.
    ShortHeader(u64),
    /// `len` is above [`VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`].
    TooLarge(u32),
    /// `len` is more than the readable bytes after the header.
    PastChain {
        /// The header's `len`.
        len: u32,
        /// Readable bytes after the header.
        available: u64,
    },
    /// The header could not be read.
    Memory(MemoryError),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::WritableBuffer => write!(f, "device-writable buffer in a transmit chain"),
            TxError::ShortHeader(n) => write!(f, "header of {n} bytes"),
            TxError::TooLarge(n) => write!(f, "payload of {n} bytes"),
            TxError::PastChain { len, available } => {
                write!(f, "len {len} but {available} payload bytes in the chain")
            }
            TxError::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// Parses a transmit chain: header then payload, split across any readable buffers. Reads
/// the header once. Bytes after `len` are ignored.
pub fn parse_tx<M: GuestMemory + ?Sized>(
    chain: &DescriptorChain,
    mem: &M,
) -> Result<VsockHeader, TxError> {
    if chain.writable_len() != 0 {
        return Err(TxError::WritableBuffer);
    }
    let readable = chain.readable_len();
    if readable < HEADER_SIZE as u64 {
        return Err(TxError::ShortHeader(readable));
    }
    let mut raw = [0u8; HEADER_SIZE];
    match chain.read_at(mem, 0, &mut raw) {
        Ok(HEADER_SIZE) => {}
        Ok(n) => return Err(TxError::ShortHeader(n as u64)),
        Err(e) => return Err(TxError::Memory(e)),
    }
    let h = VsockHeader::from_bytes(&raw);
    let len = h.len.get();
    if len > VIRTIO_VSOCK_MAX_PKT_BUF_SIZE {
        return Err(TxError::TooLarge(len));
    }
    let available = readable - HEADER_SIZE as u64;
    if u64::from(len) > available {
        return Err(TxError::PastChain { len, available });
    }
    Ok(h)
}

/// Why the device answers a transmitted packet with an RST of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RstReason {
    /// `type` is not STREAM (virtio 1.2 §5.10.6.4: "A VIRTIO_VSOCK_OP_RST reply MUST be sent
    /// if a packet is received with an unknown type value").
    UnknownType(u16),
    /// `op` is not one of the seven operations.
    UnknownOp(u16),
    /// `dst_cid` is not the peer's CID (the host's CID 2 included): nobody is there.
    UnknownCid(u64),
    /// A REQUEST while the peer's device is not up.
    PeerDown,
}

/// Why the device drops a transmitted packet without an answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DropReason {
    /// `src_cid` is not our CID (virtio 1.2 §5.10.6.4: the driver MUST use `guest_cid`).
    WrongSource(u64),
    /// A packet other than RW with a payload.
    PayloadOnControl {
        /// The op.
        op: u16,
        /// Its `len`.
        len: u32,
    },
    /// An RST that would have been answered with an RST: never answer an RST.
    UnansweredRst(RstReason),
}

/// What the device does with a parsed transmit packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TxAction {
    /// Hand it to the backend unchanged, for the peer.
    Forward,
    /// Put an RST for it on our own receive queue ([`VsockHeader::reset_reply`]).
    Reset(RstReason),
    /// Drop it.
    Drop(DropReason),
}

impl fmt::Display for RstReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RstReason::UnknownType(t) => write!(f, "unknown type {t}"),
            RstReason::UnknownOp(o) => write!(f, "unknown op {o}"),
            RstReason::UnknownCid(c) => write!(f, "no peer at cid {c}"),
            RstReason::PeerDown => write!(f, "peer not up"),
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::WrongSource(c) => write!(f, "src_cid {c} is not ours"),
            DropReason::PayloadOnControl { op, len } => write!(f, "op {op} with {len} bytes"),
            DropReason::UnansweredRst(r) => write!(f, "RST dropped ({r})"),
        }
    }
}

/// Decides what happens to packet `h` sent by the guest whose CID is `own`, whose only peer is
/// `peer`; `peer_up` says whether the peer's device is up. Checks, in order: source, type,
/// op, payload on a control packet, destination, peer up for a REQUEST.
pub fn classify_tx(h: &VsockHeader, own: u64, peer: u64, peer_up: bool) -> TxAction {
    let (ty, op, len) = (h.socket_type.get(), h.op.get(), h.len.get());
    if h.src_cid.get() != own {
        return TxAction::Drop(DropReason::WrongSource(h.src_cid.get()));
    }
    let rst = if ty != VIRTIO_VSOCK_TYPE_STREAM {
        Some(RstReason::UnknownType(ty))
    } else if !op_known(op) {
        Some(RstReason::UnknownOp(op))
    } else if op != VIRTIO_VSOCK_OP_RW && len != 0 {
        return TxAction::Drop(DropReason::PayloadOnControl { op, len });
    } else if h.dst_cid.get() != peer {
        Some(RstReason::UnknownCid(h.dst_cid.get()))
    } else if op == VIRTIO_VSOCK_OP_REQUEST && !peer_up {
        Some(RstReason::PeerDown)
    } else {
        None
    };
    match rst {
        None => TxAction::Forward,
        Some(r) if op == VIRTIO_VSOCK_OP_RST => TxAction::Drop(DropReason::UnansweredRst(r)),
        Some(r) => TxAction::Reset(r),
    }
}

/// Why a packet from the peer is dropped. The peer is another VMM's device, which should
/// never send these; it is not trusted either.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RxError {
    /// `dst_cid` is not our CID.
    WrongDestination(u64),
    /// `src_cid` is not the peer's CID.
    WrongSource(u64),
    /// `type` is not STREAM.
    UnknownType(u16),
    /// `op` is not one of the seven operations.
    UnknownOp(u16),
    /// A payload on a packet other than RW, or more than 64 KiB.
    BadLength {
        /// The op.
        op: u16,
        /// Its `len`.
        len: u32,
    },
}

impl fmt::Display for RxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RxError::WrongDestination(c) => write!(f, "dst_cid {c} is not ours"),
            RxError::WrongSource(c) => write!(f, "src_cid {c} is not the peer's"),
            RxError::UnknownType(t) => write!(f, "unknown type {t}"),
            RxError::UnknownOp(o) => write!(f, "unknown op {o}"),
            RxError::BadLength { op, len } => write!(f, "op {op} with {len} bytes"),
        }
    }
}

/// Checks packet `h` from the peer `peer` for the guest whose CID is `own`.
pub fn check_rx(h: &VsockHeader, own: u64, peer: u64) -> Result<(), RxError> {
    let (ty, op, len) = (h.socket_type.get(), h.op.get(), h.len.get());
    if h.dst_cid.get() != own {
        return Err(RxError::WrongDestination(h.dst_cid.get()));
    }
    if h.src_cid.get() != peer {
        return Err(RxError::WrongSource(h.src_cid.get()));
    }
    if ty != VIRTIO_VSOCK_TYPE_STREAM {
        return Err(RxError::UnknownType(ty));
    }
    if !op_known(op) {
        return Err(RxError::UnknownOp(op));
    }
    let payload_ok =
        if op == VIRTIO_VSOCK_OP_RW { len <= VIRTIO_VSOCK_MAX_PKT_BUF_SIZE } else { len == 0 };
    if !payload_ok {
        return Err(RxError::BadLength { op, len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::queue::Segment;

    const BASE: u64 = 0x4000_0000;
    const OWN: u64 = 3;
    const PEER: u64 = 4;

    fn hdr(op: u16, len: u32) -> VsockHeader {
        VsockHeader {
            src_cid: OWN.into(),
            dst_cid: PEER.into(),
            src_port: 1000.into(),
            dst_port: 2000.into(),
            len: len.into(),
            socket_type: VIRTIO_VSOCK_TYPE_STREAM.into(),
            op: op.into(),
            flags: 0.into(),
            buf_alloc: 65536.into(),
            fwd_cnt: 7.into(),
        }
    }

    fn chain(segs: &[(u64, u32, bool)]) -> DescriptorChain {
        let mut c = DescriptorChain::empty(0);
        for &(addr, len, writable) in segs {
            c.push(Segment { addr, len, writable }).unwrap();
        }
        c
    }

    #[test]
    fn header_round_trips_in_wire_order() {
        let h = VsockHeader {
            src_cid: 0x0102_0304_0506_0708.into(),
            dst_cid: 0x1112_1314_1516_1718.into(),
            src_port: 0x2122_2324.into(),
            dst_port: 0x3132_3334.into(),
            len: 0x4142_4344.into(),
            socket_type: 0x5152.into(),
            op: 0x6162.into(),
            flags: 0x7172_7374.into(),
            buf_alloc: 0x8182_8384.into(),
            fwd_cnt: 0x9192_9394.into(),
        };
        let b = h.to_bytes();
        assert_eq!(b[0], 0x08, "little-endian src_cid first");
        assert_eq!(&b[24..28], &[0x44, 0x43, 0x42, 0x41], "len at offset 24");
        assert_eq!(&b[28..32], &[0x52, 0x51, 0x62, 0x61], "type then op");
        assert_eq!(&b[40..44], &[0x94, 0x93, 0x92, 0x91], "fwd_cnt last");
        assert_eq!(VsockHeader::from_bytes(&b), h);
    }

    #[test]
    fn reset_reply_swaps_addresses_and_carries_no_credit() {
        let r = hdr(VIRTIO_VSOCK_OP_REQUEST, 0).reset_reply();
        let addresses = (r.src_cid.get(), r.dst_cid.get(), r.src_port.get(), r.dst_port.get());
        assert_eq!(addresses, (PEER, OWN, 2000, 1000));
        let rest = (r.op.get(), r.len.get(), r.buf_alloc.get(), r.fwd_cnt.get());
        assert_eq!(rest, (VIRTIO_VSOCK_OP_RST, 0, 0, 0));
        assert_eq!(r.socket_type.get(), VIRTIO_VSOCK_TYPE_STREAM);
    }

    #[test]
    fn parses_header_split_across_buffers() {
        let mut ram = vec![0u8; 0x1000];
        let h = hdr(VIRTIO_VSOCK_OP_RW, 10);
        ram[..44].copy_from_slice(&h.to_bytes());
        let mem = SliceMemory::new(BASE, &mut ram);
        let c = chain(&[(BASE, 5, false), (BASE + 5, 30, false), (BASE + 35, 19, false)]);
        assert_eq!(parse_tx(&c, &mem), Ok(h));
    }

    #[test]
    fn rejects_bad_transmit_chains() {
        let mut ram = vec![0u8; 0x1000];
        ram[..44].copy_from_slice(&hdr(VIRTIO_VSOCK_OP_RW, 10).to_bytes());
        ram[0x100..0x12c].copy_from_slice(&hdr(VIRTIO_VSOCK_OP_RW, 65537).to_bytes());
        let mem = SliceMemory::new(BASE, &mut ram);
        let short = chain(&[(BASE, 43, false)]);
        assert_eq!(parse_tx(&short, &mem), Err(TxError::ShortHeader(43)));
        let past = chain(&[(BASE, 53, false)]);
        assert_eq!(parse_tx(&past, &mem), Err(TxError::PastChain { len: 10, available: 9 }));
        let writable = chain(&[(BASE, 54, false), (BASE + 0x200, 4, true)]);
        assert_eq!(parse_tx(&writable, &mem), Err(TxError::WritableBuffer));
        let only_writable = chain(&[(BASE, 54, true)]);
        assert_eq!(parse_tx(&only_writable, &mem), Err(TxError::WritableBuffer));
        let huge = chain(&[(BASE + 0x100, 0xf00, false)]);
        assert_eq!(parse_tx(&huge, &mem), Err(TxError::TooLarge(65537)));
    }

    #[test]
    fn classifies_transmitted_packets() {
        let c = |h: VsockHeader, up| classify_tx(&h, OWN, PEER, up);
        assert_eq!(c(hdr(VIRTIO_VSOCK_OP_RW, 100), false), TxAction::Forward);
        assert_eq!(c(hdr(VIRTIO_VSOCK_OP_REQUEST, 0), true), TxAction::Forward);
        assert_eq!(c(hdr(VIRTIO_VSOCK_OP_REQUEST, 0), false), TxAction::Reset(RstReason::PeerDown));
        let wrong_src = VsockHeader { src_cid: 9.into(), ..hdr(VIRTIO_VSOCK_OP_RW, 0) };
        assert_eq!(c(wrong_src, true), TxAction::Drop(DropReason::WrongSource(9)));
        let seqpacket = VsockHeader { socket_type: 2.into(), ..hdr(VIRTIO_VSOCK_OP_REQUEST, 0) };
        assert_eq!(c(seqpacket, true), TxAction::Reset(RstReason::UnknownType(2)));
        for op in [0, 8, 0xffff] {
            assert_eq!(c(hdr(op, 0), true), TxAction::Reset(RstReason::UnknownOp(op)));
        }
        let host =
            VsockHeader { dst_cid: VMADDR_CID_HOST.into(), ..hdr(VIRTIO_VSOCK_OP_REQUEST, 0) };
        assert_eq!(c(host, true), TxAction::Reset(RstReason::UnknownCid(2)));
        let control = hdr(VIRTIO_VSOCK_OP_SHUTDOWN, 1);
        let want = DropReason::PayloadOnControl { op: VIRTIO_VSOCK_OP_SHUTDOWN, len: 1 };
        assert_eq!(c(control, true), TxAction::Drop(want));
        let rst_to_host = VsockHeader { dst_cid: 2.into(), ..hdr(VIRTIO_VSOCK_OP_RST, 0) };
        let want = DropReason::UnansweredRst(RstReason::UnknownCid(2));
        assert_eq!(c(rst_to_host, true), TxAction::Drop(want));
    }

    #[test]
    fn checks_packets_from_the_peer() {
        let from_peer =
            |op, len| VsockHeader { src_cid: PEER.into(), dst_cid: OWN.into(), ..hdr(op, len) };
        assert_eq!(check_rx(&from_peer(VIRTIO_VSOCK_OP_RW, 65536), OWN, PEER), Ok(()));
        let other = VsockHeader { dst_cid: 5.into(), ..from_peer(VIRTIO_VSOCK_OP_RW, 1) };
        assert_eq!(check_rx(&other, OWN, PEER), Err(RxError::WrongDestination(5)));
        let spoofed = VsockHeader { src_cid: 2.into(), ..from_peer(VIRTIO_VSOCK_OP_RW, 1) };
        assert_eq!(check_rx(&spoofed, OWN, PEER), Err(RxError::WrongSource(2)));
        let bad = |op, len| check_rx(&from_peer(op, len), OWN, PEER);
        assert_eq!(bad(9, 0), Err(RxError::UnknownOp(9)));
        assert_eq!(bad(VIRTIO_VSOCK_OP_RW, 65537), Err(RxError::BadLength { op: 5, len: 65537 }));
        assert_eq!(bad(VIRTIO_VSOCK_OP_RST, 1), Err(RxError::BadLength { op: 3, len: 1 }));
    }
}
