//! Descriptor chains of a split virtqueue (virtio 1.2 §2.7.5).
//!
//! A chain is walked once, when it is popped, into a [`DescriptorChain`]: a fixed-capacity
//! list of `(gpa, len, writable)` segments. Every rule the specification puts on the driver
//! is checked during that walk, and the walk is bounded by the queue size, so a hostile chain
//! (a loop, a huge indirect table, addresses outside guest RAM) ends in a [`ChainError`].

use core::fmt;

use zerocopy::IntoBytes;

use crate::layout::VirtqDesc;
use crate::memory::{GuestMemory, MemoryError};

/// VIRTQ_DESC_F_NEXT: the buffer continues in the descriptor named by `next`
/// (virtio 1.2 §2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// VIRTQ_DESC_F_WRITE: the buffer is device-writable (virtio 1.2 §2.7.5).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// VIRTQ_DESC_F_INDIRECT: the buffer holds a table of descriptors (virtio 1.2 §2.7.5.3).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Size of one descriptor, `struct virtq_desc` (virtio 1.2 §2.7.5).
pub const DESCRIPTOR_SIZE: u64 = size_of::<VirtqDesc>() as u64;
/// Most segments a chain may have here; a longer one is a [`ChainError::TooManySegments`].
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes a chain may describe in total (virtio 1.2 §2.7.5.2 bounds chains to 2^32 bytes).
pub const MAX_CHAIN_BYTES: u64 = u32::MAX as u64;

/// One descriptor as read from guest memory, `struct virtq_desc` (virtio 1.2 §2.7.5).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// `VIRTQ_DESC_F_*` flags.
    pub flags: u16,
    /// Index of the next descriptor when `flags` has `VIRTQ_DESC_F_NEXT`.
    pub next: u16,
}

impl Descriptor {
    /// Decodes the 16 little-endian bytes of a descriptor.
    pub fn from_bytes(b: &[u8; 16]) -> Descriptor {
        let d: VirtqDesc = zerocopy::transmute!(*b);
        Descriptor::from(d)
    }

    /// Encodes the descriptor as 16 little-endian bytes.
    pub fn to_bytes(&self) -> [u8; 16] {
        zerocopy::transmute!(VirtqDesc::from(*self))
    }
}

impl From<VirtqDesc> for Descriptor {
    fn from(d: VirtqDesc) -> Descriptor {
        Descriptor {
            addr: d.addr.get(),
            len: d.len.get(),
            flags: d.flags.get(),
            next: d.next.get(),
        }
    }
}

impl From<Descriptor> for VirtqDesc {
    fn from(d: Descriptor) -> VirtqDesc {
        VirtqDesc {
            addr: d.addr.into(),
            len: d.len.into(),
            flags: d.flags.into(),
            next: d.next.into(),
        }
    }
}

/// One buffer of a chain, inside guest RAM and never empty.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes (non-zero).
    pub len: u32,
    /// Whether the device may write it (`VIRTQ_DESC_F_WRITE`).
    pub writable: bool,
}

/// Why a descriptor chain was rejected. Each one is a guest mistake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChainError {
    /// The head index from the available ring is not below the queue size.
    HeadOutOfRange(u16),
    /// A `next` index is not below the size of its table.
    NextOutOfRange(u16),
    /// More descriptors than the queue size (a loop, or virtio 1.2 §2.7.5.2 broken).
    TooLong,
    /// More non-empty buffers than [`MAX_SEGMENTS`].
    TooManySegments,
    /// The buffers add up to more than 2^32 - 1 bytes.
    TooLarge,
    /// A device-readable buffer after a device-writable one (virtio 1.2 §2.7.4.2).
    ReadableAfterWritable,
    /// `VIRTQ_DESC_F_INDIRECT` without VIRTIO_F_INDIRECT_DESC negotiated.
    IndirectNotNegotiated,
    /// `VIRTQ_DESC_F_INDIRECT` together with `VIRTQ_DESC_F_NEXT` (virtio 1.2 §2.7.5.3.1).
    IndirectWithNext,
    /// `VIRTQ_DESC_F_INDIRECT` inside an indirect table (virtio 1.2 §2.7.5.3.1).
    NestedIndirect,
    /// An indirect table whose length is zero or not a multiple of 16 (virtio 1.2 §2.7.5.3.1).
    BadIndirectLength(u32),
    /// A buffer or table outside guest RAM.
    OutsideMemory(MemoryError),
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::HeadOutOfRange(i) => write!(f, "head index {i} out of range"),
            ChainError::NextOutOfRange(i) => write!(f, "next index {i} out of range"),
            ChainError::TooLong => write!(f, "chain longer than the queue size"),
            ChainError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} buffers"),
            ChainError::TooLarge => write!(f, "chain longer than 2^32 bytes"),
            ChainError::ReadableAfterWritable => write!(f, "readable buffer after writable"),
            ChainError::IndirectNotNegotiated => write!(f, "indirect descriptor not negotiated"),
            ChainError::IndirectWithNext => write!(f, "indirect descriptor with NEXT"),
            ChainError::NestedIndirect => write!(f, "nested indirect descriptor"),
            ChainError::BadIndirectLength(l) => write!(f, "indirect table length {l:#x}"),
            ChainError::OutsideMemory(e) => write!(f, "{e}"),
        }
    }
}

/// A parsed descriptor chain: its head index and its buffers, device-readable ones first.
///
/// Zero-length descriptors are dropped while parsing, so every [`Segment`] is non-empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorChain {
    head: u16,
    segments: [Segment; MAX_SEGMENTS],
    count: usize,
    readable: usize,
    readable_len: u64,
    writable_len: u64,
}

impl DescriptorChain {
    /// A chain with head `head` and no buffers.
    pub const fn empty(head: u16) -> DescriptorChain {
        const NONE: Segment = Segment { addr: 0, len: 0, writable: false };
        DescriptorChain {
            head,
            segments: [NONE; MAX_SEGMENTS],
            count: 0,
            readable: 0,
            readable_len: 0,
            writable_len: 0,
        }
    }

    /// Makes this chain an empty one with head `head`, in place. The old segments stay in
    /// the array but are no longer part of the chain, so refilling a chain costs nothing
    /// for the capacity it does not use (a chain is about 1 KiB).
    pub fn reset(&mut self, head: u16) {
        self.head = head;
        self.count = 0;
        self.readable = 0;
        self.readable_len = 0;
        self.writable_len = 0;
    }

    /// Index of the head descriptor: the id to give back in the used ring.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// All buffers, device-readable ones first.
    pub fn segments(&self) -> &[Segment] {
        self.segments.get(..self.count).unwrap_or(&[])
    }

    /// The device-readable buffers.
    pub fn readable(&self) -> &[Segment] {
        self.segments.get(..self.readable).unwrap_or(&[])
    }

    /// The device-writable buffers.
    pub fn writable(&self) -> &[Segment] {
        self.segments.get(self.readable..self.count).unwrap_or(&[])
    }

    /// Total bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// Appends a buffer. Empty buffers are dropped; the readable-before-writable order
    /// (virtio 1.2 §2.7.4.2), the segment limit and the 2^32-byte limit are checked here.
    pub fn push(&mut self, seg: Segment) -> Result<(), ChainError> {
        if seg.len == 0 {
            return Ok(());
        }
        if !seg.writable && self.readable != self.count {
            return Err(ChainError::ReadableAfterWritable);
        }
        let slot = self.segments.get_mut(self.count).ok_or(ChainError::TooManySegments)?;
        let len = u64::from(seg.len);
        if self.readable_len + self.writable_len + len > MAX_CHAIN_BYTES {
            return Err(ChainError::TooLarge);
        }
        *slot = seg;
        self.count += 1;
        if seg.writable {
            self.writable_len += len;
        } else {
            self.readable += 1;
            self.readable_len += len;
        }
        Ok(())
    }

    /// Copies device-readable bytes, starting `offset` bytes into them, into `buf`. Returns
    /// how many bytes were copied (fewer than `buf.len()` at the end of the readable part).
    pub fn read_at<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, MemoryError> {
        for_each_piece(self.readable(), offset, buf.len(), |gpa, at, n| {
            mem.read(gpa, &mut buf[at..at + n])
        })
    }

    /// Calls `f(gpa, at, n)` for each guest piece of the device-readable bytes
    /// `[offset, offset + len)` (`at`: bytes before it). Returns the bytes covered (fewer than
    /// `len` at the end of the readable part).
    pub fn readable_pieces<E>(
        &self,
        offset: u64,
        len: usize,
        f: impl FnMut(u64, usize, usize) -> Result<(), E>,
    ) -> Result<usize, E> {
        for_each_piece(self.readable(), offset, len, f)
    }

    /// Like [`DescriptorChain::readable_pieces`], over the device-writable bytes.
    pub fn writable_pieces<E>(
        &self,
        offset: u64,
        len: usize,
        f: impl FnMut(u64, usize, usize) -> Result<(), E>,
    ) -> Result<usize, E> {
        for_each_piece(self.writable(), offset, len, f)
    }

    /// Copies `data` into the device-writable bytes, starting `offset` bytes into them.
    /// Returns how many bytes were copied (fewer than `data.len()` at the end).
    pub fn write_at<M: GuestMemory + ?Sized>(
        &self,
        mem: &mut M,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, MemoryError> {
        for_each_piece(self.writable(), offset, data.len(), |gpa, at, n| {
            mem.write(gpa, &data[at..at + n])
        })
    }
}

/// Calls `f(gpa, buf_offset, n)` for each piece of the byte stream `segs` that lies in
/// `[offset, offset + len)`. Returns the bytes covered.
fn for_each_piece<E>(
    segs: &[Segment],
    mut offset: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), E>,
) -> Result<usize, E> {
    let mut done = 0usize;
    for seg in segs {
        if done == len {
            break;
        }
        let seg_len = u64::from(seg.len);
        if offset >= seg_len {
            offset -= seg_len;
            continue;
        }
        // `seg_len - offset` fits in u32, hence in usize on the supported targets.
        let n = core::cmp::min((seg_len - offset) as usize, len - done);
        // Parsed segments lie inside guest RAM; a hand-built one may not (then the access
        // fails instead of overflowing).
        f(seg.addr.wrapping_add(offset), done, n)?;
        done += n;
        offset = 0;
    }
    Ok(done)
}

/// Where a chain's descriptors live and what the negotiated features allow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChainSource {
    /// Guest-physical address of the descriptor table.
    pub table: u64,
    /// Queue size: entries in the table and the bound on a chain's length.
    pub size: u16,
    /// Whether VIRTIO_F_INDIRECT_DESC was negotiated.
    pub indirect: bool,
}

/// Reads descriptor `index` of the table at `table`, once.
fn read_descriptor<M: GuestMemory + ?Sized>(
    mem: &M,
    table: u64,
    index: u16,
) -> Result<Descriptor, ChainError> {
    let gpa = table.wrapping_add(u64::from(index) * DESCRIPTOR_SIZE);
    let mut raw = VirtqDesc::default();
    mem.read(gpa, raw.as_mut_bytes()).map_err(ChainError::OutsideMemory)?;
    Ok(Descriptor::from(raw))
}

/// Walks the chain starting at `head`, with at most `src.size` descriptors in the
/// descriptor table and at most as many entries in an indirect table.
#[cfg(test)]
pub(crate) fn walk<M: GuestMemory + ?Sized>(
    mem: &M,
    src: &ChainSource,
    head: u16,
) -> Result<DescriptorChain, ChainError> {
    let mut chain = DescriptorChain::empty(head);
    walk_into(mem, src, head, &mut chain)?;
    Ok(chain)
}

/// Like `walk`, into `chain` (reset first), so a chain is never moved: the
/// parsed form is about 1 KiB and copying it cost more than the walk.
pub(crate) fn walk_into<M: GuestMemory + ?Sized>(
    mem: &M,
    src: &ChainSource,
    head: u16,
    chain: &mut DescriptorChain,
) -> Result<(), ChainError> {
    chain.reset(head);
    if head >= src.size {
        return Err(ChainError::HeadOutOfRange(head));
    }
    let mut table = src.table;
    let mut entries = u32::from(src.size);
    let mut budget = entries;
    let mut indirect = false;
    let mut index = head;
    loop {
        if budget == 0 {
            return Err(ChainError::TooLong);
        }
        budget -= 1;
        let d = read_descriptor(mem, table, index)?;
        if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
            entries = check_indirect(mem, src, &d, indirect)?;
            table = d.addr;
            budget = entries;
            indirect = true;
            index = 0;
            continue;
        }
        if d.len != 0 {
            mem.check_range(d.addr, u64::from(d.len)).map_err(ChainError::OutsideMemory)?;
        }
        chain.push(Segment {
            addr: d.addr,
            len: d.len,
            writable: d.flags & VIRTQ_DESC_F_WRITE != 0,
        })?;
        if d.flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(());
        }
        if u32::from(d.next) >= entries {
            return Err(ChainError::NextOutOfRange(d.next));
        }
        index = d.next;
    }
}

/// Checks an indirect descriptor (virtio 1.2 §2.7.5.3.1) and returns its entry count.
fn check_indirect<M: GuestMemory + ?Sized>(
    mem: &M,
    src: &ChainSource,
    d: &Descriptor,
    nested: bool,
) -> Result<u32, ChainError> {
    if nested {
        return Err(ChainError::NestedIndirect);
    }
    if !src.indirect {
        return Err(ChainError::IndirectNotNegotiated);
    }
    if d.flags & VIRTQ_DESC_F_NEXT != 0 {
        return Err(ChainError::IndirectWithNext);
    }
    if d.len == 0 || u64::from(d.len) % DESCRIPTOR_SIZE != 0 {
        return Err(ChainError::BadIndirectLength(d.len));
    }
    let entries = d.len / DESCRIPTOR_SIZE as u32;
    if entries > u32::from(src.size) {
        return Err(ChainError::TooLong);
    }
    mem.check_range(d.addr, u64::from(d.len)).map_err(ChainError::OutsideMemory)?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;

    const BASE: u64 = 0x4000_0000;
    const TABLE: u64 = BASE;
    const INDIRECT: u64 = BASE + 0x1000;
    const DATA: u64 = BASE + 0x2000;

    fn put(mem: &mut SliceMemory<'_>, table: u64, i: u16, d: Descriptor) {
        mem.write(table + u64::from(i) * 16, &d.to_bytes()).unwrap();
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> Descriptor {
        Descriptor { addr, len, flags, next }
    }

    fn src(indirect: bool) -> ChainSource {
        ChainSource { table: TABLE, size: 8, indirect }
    }

    #[test]
    fn walks_readable_then_writable() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        put(&mut mem, TABLE, 2, desc(DATA, 16, VIRTQ_DESC_F_NEXT, 5));
        put(&mut mem, TABLE, 5, desc(DATA + 16, 0, VIRTQ_DESC_F_NEXT, 1));
        put(&mut mem, TABLE, 1, desc(DATA + 32, 100, VIRTQ_DESC_F_WRITE, 0));
        let c = walk(&mem, &src(false), 2).unwrap();
        assert_eq!(c.head(), 2);
        assert_eq!(c.segments().len(), 2, "zero-length buffer dropped");
        assert_eq!(c.readable(), &[Segment { addr: DATA, len: 16, writable: false }]);
        assert_eq!(c.writable_len(), 100);
    }

    #[test]
    fn self_loop_is_too_long() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        put(&mut mem, TABLE, 3, desc(DATA, 1, VIRTQ_DESC_F_NEXT, 3));
        assert_eq!(walk(&mem, &src(false), 3), Err(ChainError::TooLong));
    }

    #[test]
    fn rejects_bad_indices_and_order() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        assert_eq!(walk(&mem, &src(false), 8), Err(ChainError::HeadOutOfRange(8)));
        put(&mut mem, TABLE, 0, desc(DATA, 1, VIRTQ_DESC_F_NEXT, 9));
        assert_eq!(walk(&mem, &src(false), 0), Err(ChainError::NextOutOfRange(9)));
        put(&mut mem, TABLE, 0, desc(DATA, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1));
        put(&mut mem, TABLE, 1, desc(DATA, 1, 0, 0));
        assert_eq!(walk(&mem, &src(false), 0), Err(ChainError::ReadableAfterWritable));
    }

    #[test]
    fn rejects_buffers_outside_ram() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        put(&mut mem, TABLE, 0, desc(BASE + 0x3ff0, 0x11, 0, 0));
        assert!(matches!(walk(&mem, &src(false), 0), Err(ChainError::OutsideMemory(_))));
        put(&mut mem, TABLE, 0, desc(u64::MAX - 3, 8, 0, 0));
        assert!(matches!(walk(&mem, &src(false), 0), Err(ChainError::OutsideMemory(_))));
        // A zero-length descriptor is dropped wherever it points.
        put(&mut mem, TABLE, 0, desc(u64::MAX, 0, 0, 0));
        assert_eq!(walk(&mem, &src(false), 0).unwrap().segments().len(), 0);
    }

    #[test]
    fn rejects_more_than_4_gib() {
        let mut chain = DescriptorChain::empty(0);
        chain.push(Segment { addr: BASE, len: u32::MAX, writable: false }).unwrap();
        let one = Segment { addr: BASE, len: 1, writable: true };
        assert_eq!(chain.push(one), Err(ChainError::TooLarge));
    }

    #[test]
    fn rejects_too_many_segments() {
        let mut chain = DescriptorChain::empty(0);
        let seg = Segment { addr: BASE, len: 1, writable: false };
        for _ in 0..MAX_SEGMENTS {
            chain.push(seg).unwrap();
        }
        assert_eq!(chain.push(seg), Err(ChainError::TooManySegments));
    }

    #[test]
    fn follows_a_valid_indirect_table() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        put(&mut mem, TABLE, 4, desc(INDIRECT, 48, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0));
        put(&mut mem, INDIRECT, 0, desc(DATA, 16, VIRTQ_DESC_F_NEXT, 2));
        put(&mut mem, INDIRECT, 2, desc(DATA + 16, 8, VIRTQ_DESC_F_NEXT, 1));
        put(&mut mem, INDIRECT, 1, desc(DATA + 24, 1, VIRTQ_DESC_F_WRITE, 0));
        let c = walk(&mem, &src(true), 4).unwrap();
        assert_eq!(c.head(), 4);
        assert_eq!(c.readable_len(), 24);
        assert_eq!(c.writable(), &[Segment { addr: DATA + 24, len: 1, writable: true }]);
    }

    #[test]
    fn rejects_bad_indirect_tables() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let ind = VIRTQ_DESC_F_INDIRECT;
        put(&mut mem, TABLE, 0, desc(INDIRECT, 32, ind, 0));
        assert_eq!(walk(&mem, &src(false), 0), Err(ChainError::IndirectNotNegotiated));
        put(&mut mem, INDIRECT, 0, desc(INDIRECT, 16, ind, 0));
        assert_eq!(walk(&mem, &src(true), 0), Err(ChainError::NestedIndirect));
        put(&mut mem, TABLE, 0, desc(INDIRECT, 20, ind, 0));
        assert_eq!(walk(&mem, &src(true), 0), Err(ChainError::BadIndirectLength(20)));
        put(&mut mem, TABLE, 0, desc(INDIRECT, 0, ind, 0));
        assert_eq!(walk(&mem, &src(true), 0), Err(ChainError::BadIndirectLength(0)));
        put(&mut mem, TABLE, 0, desc(INDIRECT, 16, ind | VIRTQ_DESC_F_NEXT, 1));
        assert_eq!(walk(&mem, &src(true), 0), Err(ChainError::IndirectWithNext));
        put(&mut mem, TABLE, 0, desc(INDIRECT, 16 * 9, ind, 0));
        assert_eq!(walk(&mem, &src(true), 0), Err(ChainError::TooLong));
        put(&mut mem, TABLE, 0, desc(BASE + 0x3ff0, 32, ind, 0));
        assert!(matches!(walk(&mem, &src(true), 0), Err(ChainError::OutsideMemory(_))));
    }

    #[test]
    fn indirect_loop_is_too_long() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        put(&mut mem, TABLE, 0, desc(INDIRECT, 32, VIRTQ_DESC_F_INDIRECT, 0));
        put(&mut mem, INDIRECT, 0, desc(DATA, 1, VIRTQ_DESC_F_NEXT, 1));
        put(&mut mem, INDIRECT, 1, desc(DATA, 1, VIRTQ_DESC_F_NEXT, 0));
        assert_eq!(walk(&mem, &src(true), 0), Err(ChainError::TooLong));
    }

    #[test]
    fn read_at_and_write_at_cross_segments() {
        let mut ram = vec![0u8; 0x4000];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        mem.write(DATA, b"abcdefgh").unwrap();
        let mut c = DescriptorChain::empty(0);
        c.push(Segment { addr: DATA, len: 3, writable: false }).unwrap();
        c.push(Segment { addr: DATA + 5, len: 3, writable: false }).unwrap();
        c.push(Segment { addr: DATA + 0x100, len: 2, writable: true }).unwrap();
        c.push(Segment { addr: DATA + 0x200, len: 2, writable: true }).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(c.read_at(&mem, 1, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"bcfgh");
        assert_eq!(c.write_at(&mut mem, 1, b"xyz!").unwrap(), 3);
        assert_eq!(mem.as_slice()[0x2101], b'x');
        assert_eq!(&mem.as_slice()[0x2200..0x2202], b"yz");
    }
}
