//! virtio-blk requests (virtio 1.2 §5.2.6): a descriptor chain parsed into a [`Request`].
//!
//! A request is a byte stream: a 16-byte device-readable header (`le32 type; le32 reserved;
//! le64 sector`), data, and a last device-writable status byte. Segment boundaries carry no
//! meaning (VIRTIO_F_VERSION_1 implies any layout, virtio 1.2 §2.7.4.3). [`parse`] reads
//! the header once and checks the layout; it does not look at the disk, so range and
//! read-only checks are made by the device before it executes the request.

use core::fmt;

use zerocopy::IntoBytes;

use crate::layout::VirtioBlkReqHeader;
use crate::memory::{GuestMemory, MemoryError};
use crate::queue::DescriptorChain;

/// VIRTIO_BLK_T_IN: read (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// VIRTIO_BLK_T_OUT: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// VIRTIO_BLK_T_FLUSH: make completed writes durable.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// VIRTIO_BLK_T_GET_ID: read the device id string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// VIRTIO_BLK_S_OK: success (virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// VIRTIO_BLK_S_IOERR: the request failed.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// VIRTIO_BLK_S_UNSUPP: the request type is not supported.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;
/// Size of the request header, `struct virtio_blk_req` up to `data` (virtio 1.2 §5.2.6).
pub const HEADER_SIZE: u64 = size_of::<VirtioBlkReqHeader>() as u64;
/// virtio-blk sectors are always 512 bytes (virtio 1.2 §5.2.6).
pub const SECTOR_SIZE: u64 = 512;
/// Length of the GET_ID string (VIRTIO_BLK_ID_BYTES, virtio 1.2 §5.2.6).
pub const VIRTIO_BLK_ID_BYTES: usize = 20;

/// What a request asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RequestKind {
    /// VIRTIO_BLK_T_IN: read `data_len` bytes from `sector` into the guest.
    Read,
    /// VIRTIO_BLK_T_OUT: write `data_len` bytes from the guest at `sector`.
    Write,
    /// VIRTIO_BLK_T_FLUSH.
    Flush,
    /// VIRTIO_BLK_T_GET_ID: up to 20 bytes of id into the guest.
    GetId,
    /// Any other type; answered with VIRTIO_BLK_S_UNSUPP.
    Unsupported(u32),
}

/// A parsed request. Its header was read once. The chain it was parsed from locates the
/// data: the data methods take that chain (a device keeps the chains of its requests in a
/// table, so a request is small and a chain is never copied).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Request {
    /// What to do.
    pub kind: RequestKind,
    /// First 512-byte sector (Read and Write).
    pub sector: u64,
    /// Bytes of data: device-readable after the header for Write, device-writable before
    /// the status byte for Read and GetId, 0 otherwise.
    pub data_len: u64,
    /// Guest-physical address of the status byte.
    pub status: u64,
    head: u16,
}

impl Request {
    /// The chain's head index (the id to complete it with).
    pub fn head(&self) -> u16 {
        self.head
    }

    /// Copies write data, starting `offset` bytes into it, into `buf`. Returns the bytes
    /// copied (fewer at the end of the data).
    pub fn read_data<M: GuestMemory + ?Sized>(
        &self,
        chain: &DescriptorChain,
        mem: &M,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, MemoryError> {
        let n = clamp(buf.len(), self.data_len.saturating_sub(offset));
        chain.read_at(mem, HEADER_SIZE + offset, &mut buf[..n])
    }

    /// Copies `data` into the read data area, `offset` bytes into it; never into the
    /// status byte. Returns the bytes copied.
    pub fn write_data<M: GuestMemory + ?Sized>(
        &self,
        chain: &DescriptorChain,
        mem: &mut M,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, MemoryError> {
        let n = clamp(data.len(), self.data_len.saturating_sub(offset));
        chain.write_at(mem, offset, &data[..n])
    }

    /// Calls `f(gpa, at, n)` for each guest piece of the write data `[offset, offset + len)`
    /// (`at`: bytes before the piece); see [`Request::read_data`]. Returns the bytes covered.
    pub fn read_data_pieces<E>(
        &self,
        chain: &DescriptorChain,
        offset: u64,
        len: usize,
        f: impl FnMut(u64, usize, usize) -> Result<(), E>,
    ) -> Result<usize, E> {
        let n = clamp(len, self.data_len.saturating_sub(offset));
        chain.readable_pieces(HEADER_SIZE + offset, n, f)
    }

    /// Calls `f(gpa, at, n)` for each guest piece of the read data area `[offset, offset +
    /// len)`, never the status byte; see [`Request::write_data`]. Returns the bytes covered.
    pub fn write_data_pieces<E>(
        &self,
        chain: &DescriptorChain,
        offset: u64,
        len: usize,
        f: impl FnMut(u64, usize, usize) -> Result<(), E>,
    ) -> Result<usize, E> {
        let n = clamp(len, self.data_len.saturating_sub(offset));
        chain.writable_pieces(offset, n, f)
    }
}

/// `min(len, limit)` as a usize.
fn clamp(len: usize, limit: u64) -> usize {
    usize::try_from(limit).map_or(len, |l| core::cmp::min(len, l))
}

/// Why a chain is not a valid request. All are guest mistakes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParseError {
    /// No device-writable byte for the status.
    NoStatus,
    /// Fewer than 16 device-readable bytes for the header.
    ShortHeader(u64),
    /// Data in the wrong direction: readable data for a read, or writable bytes besides the
    /// status for a write.
    BadLayout,
    /// Read/write data that is empty or not a multiple of 512 bytes (virtio 1.2 §5.2.6.1).
    BadLength(u64),
    /// The header could not be read.
    Memory(MemoryError),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NoStatus => write!(f, "no writable status byte"),
            ParseError::ShortHeader(n) => write!(f, "header of {n} bytes"),
            ParseError::BadLayout => write!(f, "data in the wrong direction"),
            ParseError::BadLength(n) => write!(f, "data length {n}"),
            ParseError::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// A rejected request: why, and where its status byte is if it has one (then the device
/// answers VIRTIO_BLK_S_IOERR there; without one the chain is returned with length 0).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RequestError {
    /// Why.
    pub error: ParseError,
    /// Head index of the chain.
    pub head: u16,
    /// Guest-physical address of the status byte, if there is one.
    pub status: Option<u64>,
}

/// Parses `chain` as a virtio-blk request.
pub fn parse<M: GuestMemory + ?Sized>(
    chain: &DescriptorChain,
    mem: &M,
) -> Result<Request, RequestError> {
    let head = chain.head();
    let fail = |error, status| RequestError { error, head, status };
    // The status is the last writable byte; segments are never empty.
    let status = match chain.writable().last() {
        Some(seg) => seg.addr.wrapping_add(u64::from(seg.len) - 1),
        None => return Err(fail(ParseError::NoStatus, None)),
    };
    let readable = chain.readable_len();
    let writable = chain.writable_len() - 1;
    if readable < HEADER_SIZE {
        return Err(fail(ParseError::ShortHeader(readable), Some(status)));
    }
    let mut header = VirtioBlkReqHeader::default();
    chain
        .read_at(mem, 0, header.as_mut_bytes())
        .map_err(|e| fail(ParseError::Memory(e), Some(status)))?;
    let sector = header.sector.get();
    let (kind, data_len) = match header.type_.get() {
        VIRTIO_BLK_T_IN if readable != HEADER_SIZE => {
            return Err(fail(ParseError::BadLayout, Some(status)))
        }
        VIRTIO_BLK_T_IN => (RequestKind::Read, writable),
        VIRTIO_BLK_T_OUT if writable != 0 => return Err(fail(ParseError::BadLayout, Some(status))),
        VIRTIO_BLK_T_OUT => (RequestKind::Write, readable - HEADER_SIZE),
        VIRTIO_BLK_T_FLUSH => (RequestKind::Flush, 0),
        VIRTIO_BLK_T_GET_ID => (RequestKind::GetId, writable),
        other => (RequestKind::Unsupported(other), 0),
    };
    if matches!(kind, RequestKind::Read | RequestKind::Write)
        && (data_len == 0 || data_len % SECTOR_SIZE != 0)
    {
        return Err(fail(ParseError::BadLength(data_len), Some(status)));
    }
    Ok(Request { kind, sector, data_len, status, head })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::queue::Segment;

    const BASE: u64 = 0x4000_0000;
    const HDR: u64 = BASE;
    const DATA: u64 = BASE + 0x1000;
    const STATUS: u64 = BASE + 0x3000;

    fn ram_with_header(ty: u32, sector: u64) -> Vec<u8> {
        let mut ram = vec![0u8; 0x4000];
        ram[..4].copy_from_slice(&ty.to_le_bytes());
        ram[8..16].copy_from_slice(&sector.to_le_bytes());
        ram
    }

    fn chain(segs: &[(u64, u32, bool)]) -> DescriptorChain {
        let mut c = DescriptorChain::empty(3);
        for &(addr, len, writable) in segs {
            c.push(Segment { addr, len, writable }).unwrap();
        }
        c
    }

    fn parse_in(ram: &mut [u8], segs: &[(u64, u32, bool)]) -> Result<Request, RequestError> {
        parse(&chain(segs), &SliceMemory::new(BASE, ram))
    }

    #[test]
    fn parses_read_write_flush_and_get_id() {
        let mut ram = ram_with_header(VIRTIO_BLK_T_IN, 7);
        let r =
            parse_in(&mut ram, &[(HDR, 16, false), (DATA, 1024, true), (STATUS, 1, true)]).unwrap();
        assert_eq!(
            (r.kind, r.sector, r.data_len, r.status, r.head()),
            (RequestKind::Read, 7, 1024, STATUS, 3)
        );
        let mut ram = ram_with_header(VIRTIO_BLK_T_OUT, 9);
        let r =
            parse_in(&mut ram, &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)]).unwrap();
        assert_eq!((r.kind, r.data_len), (RequestKind::Write, 512));
        let mut ram = ram_with_header(VIRTIO_BLK_T_FLUSH, 0);
        let r = parse_in(&mut ram, &[(HDR, 16, false), (STATUS, 1, true)]).unwrap();
        assert_eq!((r.kind, r.data_len), (RequestKind::Flush, 0));
        let mut ram = ram_with_header(VIRTIO_BLK_T_GET_ID, 0);
        let r =
            parse_in(&mut ram, &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)]).unwrap();
        assert_eq!((r.kind, r.data_len), (RequestKind::GetId, 20));
    }

    #[test]
    fn header_and_status_may_share_segments_with_data() {
        let mut ram = ram_with_header(VIRTIO_BLK_T_OUT, 1);
        ram[16..16 + 512].fill(0xab);
        let segs = [(HDR, 10, false), (HDR + 10, 518, false), (STATUS, 1, true)];
        let r = parse_in(&mut ram, &segs).unwrap();
        assert_eq!((r.kind, r.sector, r.data_len), (RequestKind::Write, 1, 512));
        let mem = SliceMemory::new(BASE, &mut ram);
        let mut buf = [0u8; 600];
        assert_eq!(r.read_data(&chain(&segs), &mem, 0, &mut buf).unwrap(), 512);
        assert!(buf[..512].iter().all(|&b| b == 0xab));
        let mut ram = ram_with_header(VIRTIO_BLK_T_IN, 1);
        let r = parse_in(&mut ram, &[(HDR, 16, false), (DATA, 513, true)]).unwrap();
        assert_eq!((r.data_len, r.status), (512, DATA + 512));
    }

    #[test]
    fn unknown_type_is_unsupported() {
        let mut ram = ram_with_header(11, 0);
        let r = parse_in(&mut ram, &[(HDR, 16, false), (STATUS, 1, true)]).unwrap();
        assert_eq!(r.kind, RequestKind::Unsupported(11));
    }

    #[test]
    fn short_header_is_rejected_with_status() {
        let mut ram = ram_with_header(VIRTIO_BLK_T_IN, 0);
        let e = parse_in(&mut ram, &[(HDR, 12, false), (DATA, 512, true), (STATUS, 1, true)])
            .unwrap_err();
        assert_eq!((e.error, e.status, e.head), (ParseError::ShortHeader(12), Some(STATUS), 3));
    }

    #[test]
    fn missing_or_read_only_status_is_rejected_without_status() {
        let mut ram = ram_with_header(VIRTIO_BLK_T_OUT, 0);
        let e = parse_in(&mut ram, &[(HDR, 16, false), (DATA, 512, false)]).unwrap_err();
        assert_eq!((e.error, e.status), (ParseError::NoStatus, None));
        let e = parse_in(&mut ram, &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, false)])
            .unwrap_err();
        assert_eq!((e.error, e.status), (ParseError::NoStatus, None));
    }

    #[test]
    fn data_in_the_wrong_direction_is_rejected() {
        let mut ram = ram_with_header(VIRTIO_BLK_T_IN, 0);
        let e = parse_in(&mut ram, &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)])
            .unwrap_err();
        assert_eq!(e.error, ParseError::BadLayout);
        let mut ram = ram_with_header(VIRTIO_BLK_T_OUT, 0);
        let e = parse_in(&mut ram, &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)])
            .unwrap_err();
        assert_eq!(e.error, ParseError::BadLayout);
    }

    #[test]
    fn empty_or_partial_sector_data_is_rejected() {
        let mut ram = ram_with_header(VIRTIO_BLK_T_IN, 0);
        let e = parse_in(&mut ram, &[(HDR, 16, false), (STATUS, 1, true)]).unwrap_err();
        assert_eq!(e.error, ParseError::BadLength(0));
        let e = parse_in(&mut ram, &[(HDR, 16, false), (DATA, 100, true), (STATUS, 1, true)])
            .unwrap_err();
        assert_eq!(e.error, ParseError::BadLength(100));
        let mut ram = ram_with_header(VIRTIO_BLK_T_OUT, 0);
        let e = parse_in(&mut ram, &[(HDR, 16, false), (STATUS, 1, true)]).unwrap_err();
        assert_eq!(e.error, ParseError::BadLength(0));
    }

    #[test]
    fn write_data_never_touches_the_status_byte() {
        let mut ram = ram_with_header(VIRTIO_BLK_T_IN, 0);
        let segs = [(HDR, 16, false), (DATA, 513, true)];
        let r = parse_in(&mut ram, &segs).unwrap();
        let c = chain(&segs);
        let mut mem = SliceMemory::new(BASE, &mut ram);
        mem.write(DATA + 512, &[0x77]).unwrap();
        assert_eq!(r.write_data(&c, &mut mem, 0, &[1u8; 600]).unwrap(), 512);
        assert_eq!(r.write_data(&c, &mut mem, 512, &[1u8; 4]).unwrap(), 0);
        assert_eq!(mem.as_slice()[0x1000 + 512], 0x77);
    }
}
