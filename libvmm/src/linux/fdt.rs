//! Device-tree (FDT) patching at run time.
//!
//! [`patch`] rewrites a flattened device tree blob (devicetree specification
//! v0.4, chapter 5) into a caller-given buffer, setting what a Linux guest
//! needs from its VMM: the kernel command line, the initrd location, the RAM
//! region and an entropy seed. Everything else is copied unchanged.
//!
//! The input is treated as untrusted: every offset and length is checked
//! against the blob, loops are bounded by the blob size, node nesting is
//! bounded by [`MAX_DEPTH`], and no input can make the code panic. Nothing is
//! allocated.
//!
//! The rewrite makes two passes over the structure block. The first validates
//! it (tokens, balance, depth, property lengths, name offsets) and reads the
//! root's `#address-cells`/`#size-cells`. The second writes the new blob:
//!
//! - a version-17 header (40 bytes), `boot_cpuid_phys` copied;
//! - the memory reservation block, copied;
//! - the structure block, with `FDT_NOP` tokens dropped, properties of
//!   `/chosen` and of the memory nodes replaced in place (a replaced property
//!   is written where the old one was; a new one is written after the node's
//!   existing properties and before its first subnode), further memory nodes
//!   dropped, and a `memory@...` node and/or a `chosen` node appended to the
//!   root when missing;
//! - the input strings block, copied, followed by the names of new properties
//!   that it did not already hold.

use core::fmt;

use zerocopy::big_endian::U32;

/// Deepest node nesting accepted (the root node is at depth 1).
pub const MAX_DEPTH: usize = 64;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_END: u32 = 0x9;

/// Size of the version-17 header.
const HEADER_SIZE: usize = 40;
/// Version written to the output header.
const OUT_VERSION: u32 = 17;
/// Oldest version the output is backwards compatible with.
const OUT_LAST_COMP_VERSION: u32 = 16;
/// Oldest input version accepted.
const MIN_VERSION: u32 = 16;
/// Newest `last_comp_version` accepted: the layout this code understands.
const MAX_LAST_COMP_VERSION: u32 = 17;

/// The version-17 header (devicetree specification v0.4, §5.2): big-endian
/// fields, alignment 1. Its derives and the size assertion check the layout at
/// compile time; [`hdr`] takes the field offsets from it.
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable)]
struct FdtHeader {
    magic: U32,
    totalsize: U32,
    off_dt_struct: U32,
    off_dt_strings: U32,
    off_mem_rsvmap: U32,
    version: U32,
    last_comp_version: U32,
    boot_cpuid_phys: U32,
    size_dt_strings: U32,
    size_dt_struct: U32,
}

const _: () = assert!(size_of::<FdtHeader>() == HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(FdtHeader, boot_cpuid_phys) == 28);

/// Byte offsets of the header fields.
mod hdr {
    use super::FdtHeader;
    use core::mem::offset_of;

    pub const MAGIC: usize = offset_of!(FdtHeader, magic);
    pub const TOTALSIZE: usize = offset_of!(FdtHeader, totalsize);
    pub const OFF_DT_STRUCT: usize = offset_of!(FdtHeader, off_dt_struct);
    pub const OFF_DT_STRINGS: usize = offset_of!(FdtHeader, off_dt_strings);
    pub const OFF_MEM_RSVMAP: usize = offset_of!(FdtHeader, off_mem_rsvmap);
    pub const VERSION: usize = offset_of!(FdtHeader, version);
    pub const LAST_COMP_VERSION: usize = offset_of!(FdtHeader, last_comp_version);
    pub const BOOT_CPUID_PHYS: usize = offset_of!(FdtHeader, boot_cpuid_phys);
    pub const SIZE_DT_STRINGS: usize = offset_of!(FdtHeader, size_dt_strings);
    pub const SIZE_DT_STRUCT: usize = offset_of!(FdtHeader, size_dt_struct);
}

const PROP_BOOTARGS: &str = "bootargs";
const PROP_INITRD_START: &str = "linux,initrd-start";
const PROP_INITRD_END: &str = "linux,initrd-end";
const PROP_RNG_SEED: &str = "rng-seed";
const PROP_REG: &str = "reg";
const PROP_DEVICE_TYPE: &str = "device_type";
const PROP_ADDRESS_CELLS: &[u8] = b"#address-cells";
const PROP_SIZE_CELLS: &[u8] = b"#size-cells";
const NODE_CHOSEN: &[u8] = b"chosen";
const NODE_MEMORY: &[u8] = b"memory";
/// Value of `device_type` in a memory node, with its terminating NUL.
const DEVICE_TYPE_MEMORY: &[u8] = b"memory\0";

/// Default `#address-cells` when the root does not say (spec 2.3.5).
const DEFAULT_ADDRESS_CELLS: u32 = 2;
/// Default `#size-cells` when the root does not say (spec 2.3.5).
const DEFAULT_SIZE_CELLS: u32 = 1;

/// Changes to make to a guest device tree before boot.
#[derive(Clone, Copy, Debug, Default)]
pub struct Patch<'a> {
    /// `/chosen/bootargs` (set or replaced) - written as a NUL-terminated
    /// string.
    pub bootargs: Option<&'a str>,
    /// `/chosen/linux,initrd-start` and `linux,initrd-end` (guest-physical,
    /// end exclusive) - written as 64-bit big-endian values. `None` = remove
    /// any existing initrd properties.
    pub initrd: Option<(u64, u64)>,
    /// The RAM region (base, size): the first memory node's `reg` (node with
    /// `device_type = "memory"`, or a root child named `memory` /
    /// `memory@...`) is replaced by this single region, encoded with the
    /// root's `#address-cells`/`#size-cells` (default 2/1 if absent; 1 or 2
    /// cells supported, [`FdtError::BadCells`] otherwise or if a value does
    /// not fit 32 bits when cells == 1); further memory nodes are dropped
    /// entirely; if there is none, a node `memory@<base hex>` with
    /// `device_type = "memory"` and `reg` is added under the root. A kept
    /// memory node lacking `device_type` gets `device_type = "memory"`.
    /// `None` leaves memory nodes unchanged.
    pub memory: Option<(u64, u64)>,
    /// `/chosen/rng-seed` bytes (set or replaced).
    pub rng_seed: Option<&'a [u8]>,
}

/// Why a device tree could not be patched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FdtError {
    /// The blob does not start with the FDT magic number `0xd00dfeed`.
    BadMagic,
    /// The header, or a block it points to, lies outside the blob.
    Truncated,
    /// The blob's version is older than 16, or it is not backwards
    /// compatible with version 17.
    BadVersion,
    /// The structure block is malformed: bad token, unbalanced or too deeply
    /// nested nodes, property or name outside its block, bad string offset.
    BadStructure,
    /// The output buffer is too small for the patched blob.
    OutputTooSmall,
    /// The root's `#address-cells`/`#size-cells` is not 1 or 2, or the memory
    /// region does not fit in the cells.
    BadCells,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            FdtError::BadMagic => "not a device tree blob (bad magic number)",
            FdtError::Truncated => "device tree blob truncated: header or block outside the blob",
            FdtError::BadVersion => "unsupported device tree blob version",
            FdtError::BadStructure => "malformed device tree structure block",
            FdtError::OutputTooSmall => "output buffer too small for the patched device tree",
            FdtError::BadCells => {
                "root #address-cells/#size-cells unsupported or memory region does not fit"
            }
        };
        f.write_str(msg)
    }
}

/// Reads the header: checks magic 0xd00dfeed, `totalsize <= input.len()`,
/// version >= 16 (`last_comp_version <= 17`), and that the structure,
/// strings and memory-reservation blocks lie inside `totalsize`. Returns the
/// total size.
pub fn check(input: &[u8]) -> Result<usize, FdtError> {
    Header::read(input).map(|h| h.totalsize)
}

/// Writes `input` with `patch` applied into `out`; returns the length of the
/// new blob.
///
/// `/chosen` is created (under the root) if missing. Everything else (nodes,
/// properties, order, memory reservation block, `boot_cpuid_phys`) is copied
/// unchanged, except that `FDT_NOP` tokens are dropped. The output is a
/// version-17 blob laid out as header, memory reservation block, structure
/// block, strings block.
pub fn patch(input: &[u8], out: &mut [u8], patch: &Patch) -> Result<usize, FdtError> {
    let h = Header::read(input)?;
    let blk = slice(input, h.off_struct, h.size_struct).ok_or(FdtError::Truncated)?;
    let strings = slice(input, h.off_strings, h.size_strings).ok_or(FdtError::Truncated)?;
    let rsvmap = input.get(h.off_rsvmap..h.rsvmap_end).ok_or(FdtError::Truncated)?;

    let root = scan(blk, strings)?;
    let cells = match patch.memory {
        Some(_) => Some((
            cells(root.address_cells, DEFAULT_ADDRESS_CELLS)?,
            cells(root.size_cells, DEFAULT_SIZE_CELLS)?,
        )),
        None => None,
    };

    let mut o = Out { buf: out, pos: 0 };
    o.bytes(&[0; HEADER_SIZE])?;
    // The header is 40 bytes and the reservation block a whole number of
    // 16-byte entries: both following blocks start 8-byte aligned.
    o.bytes(rsvmap)?;
    let off_struct = o.pos;
    let mut names = Names::new(strings);
    Rewriter { o: &mut o, names: &mut names, blk, strings, patch, cells }.run()?;
    let size_struct = o.pos - off_struct;
    let off_strings = o.pos;
    o.bytes(strings)?;
    o.bytes(names.extra())?;
    let size_strings = o.pos - off_strings;
    let total = o.pos;

    let field = |v: usize| u32::try_from(v).map_err(|_| FdtError::OutputTooSmall);
    o.set_u32(hdr::MAGIC, FDT_MAGIC)?;
    o.set_u32(hdr::TOTALSIZE, field(total)?)?;
    o.set_u32(hdr::OFF_DT_STRUCT, field(off_struct)?)?;
    o.set_u32(hdr::OFF_DT_STRINGS, field(off_strings)?)?;
    o.set_u32(hdr::OFF_MEM_RSVMAP, field(HEADER_SIZE)?)?;
    o.set_u32(hdr::VERSION, OUT_VERSION)?;
    o.set_u32(hdr::LAST_COMP_VERSION, OUT_LAST_COMP_VERSION)?;
    o.set_u32(hdr::BOOT_CPUID_PHYS, h.boot_cpuid_phys)?;
    o.set_u32(hdr::SIZE_DT_STRINGS, field(size_strings)?)?;
    o.set_u32(hdr::SIZE_DT_STRUCT, field(size_struct)?)?;
    Ok(total)
}

/// Big-endian u32 at `off`, if it lies inside `buf`.
fn be32(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// Big-endian u64 at `off`, if it lies inside `buf`.
fn be64(buf: &[u8], off: usize) -> Option<u64> {
    let b = buf.get(off..off.checked_add(8)?)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// `buf[off..off + len]`, if it lies inside `buf`.
fn slice(buf: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    buf.get(off..off.checked_add(len)?)
}

/// `v` rounded up to a multiple of 4.
fn align4(v: usize) -> Option<usize> {
    Some(v.checked_add(3)? & !3)
}

/// The NUL-terminated string starting at `off` in `buf`, without its NUL.
fn cstr_at(buf: &[u8], off: usize) -> Option<&[u8]> {
    let rest = buf.get(off..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    rest.get(..len)
}

/// The header fields this module uses, validated against the blob.
struct Header {
    totalsize: usize,
    off_struct: usize,
    size_struct: usize,
    off_strings: usize,
    size_strings: usize,
    off_rsvmap: usize,
    /// Offset just past the reservation block's terminating entry.
    rsvmap_end: usize,
    boot_cpuid_phys: u32,
}

impl Header {
    fn read(input: &[u8]) -> Result<Self, FdtError> {
        let field = |off| be32(input, off).map(|v| v as usize);
        let magic = be32(input, hdr::MAGIC).ok_or(FdtError::Truncated)?;
        if magic != FDT_MAGIC {
            return Err(FdtError::BadMagic);
        }
        if input.len() < HEADER_SIZE {
            return Err(FdtError::Truncated);
        }
        let totalsize = field(hdr::TOTALSIZE).ok_or(FdtError::Truncated)?;
        if totalsize > input.len() || totalsize < HEADER_SIZE {
            return Err(FdtError::Truncated);
        }
        let version = be32(input, hdr::VERSION).ok_or(FdtError::Truncated)?;
        let last_comp = be32(input, hdr::LAST_COMP_VERSION).ok_or(FdtError::Truncated)?;
        if version < MIN_VERSION || last_comp > MAX_LAST_COMP_VERSION {
            return Err(FdtError::BadVersion);
        }
        let blob = input.get(..totalsize).ok_or(FdtError::Truncated)?;
        let off_struct = field(hdr::OFF_DT_STRUCT).ok_or(FdtError::Truncated)?;
        let off_strings = field(hdr::OFF_DT_STRINGS).ok_or(FdtError::Truncated)?;
        let off_rsvmap = field(hdr::OFF_MEM_RSVMAP).ok_or(FdtError::Truncated)?;
        let size_strings = field(hdr::SIZE_DT_STRINGS).ok_or(FdtError::Truncated)?;
        let size_struct = if version >= 17 {
            field(hdr::SIZE_DT_STRUCT).ok_or(FdtError::Truncated)?
        } else {
            // Version 16 has no size_dt_struct: the block runs at most to the
            // end of the blob, and its FDT_END token marks where it stops.
            totalsize.checked_sub(off_struct).ok_or(FdtError::Truncated)?
        };
        slice(blob, off_struct, size_struct).ok_or(FdtError::Truncated)?;
        slice(blob, off_strings, size_strings).ok_or(FdtError::Truncated)?;

        // The reservation block: 16-byte (address, size) entries up to and
        // including an all-zero one. Each step moves 16 bytes on, and a step
        // past the blob's end fails, so the loop is bounded.
        let mut at = off_rsvmap;
        let rsvmap_end = loop {
            let address = be64(blob, at).ok_or(FdtError::Truncated)?;
            let size = be64(blob, at.checked_add(8).ok_or(FdtError::Truncated)?)
                .ok_or(FdtError::Truncated)?;
            at = at.checked_add(16).ok_or(FdtError::Truncated)?;
            if address == 0 && size == 0 {
                break at;
            }
        };

        Ok(Header {
            totalsize,
            off_struct,
            size_struct,
            off_strings,
            size_strings,
            off_rsvmap,
            rsvmap_end,
            boot_cpuid_phys: be32(input, hdr::BOOT_CPUID_PHYS).ok_or(FdtError::Truncated)?,
        })
    }
}

/// One token of the structure block.
#[derive(Clone, Copy)]
enum Token<'a> {
    /// `FDT_BEGIN_NODE` with the node's name (unit address included).
    Begin(&'a [u8]),
    /// `FDT_END_NODE`.
    End,
    /// `FDT_PROP` with the property's name and value.
    Prop { name: &'a [u8], value: &'a [u8] },
    /// `FDT_NOP`.
    Nop,
    /// `FDT_END`.
    Finish,
}

/// Reads tokens from a structure block, checking each against the structure
/// and strings blocks. `pos` only grows (by at least 4 per token), so reading
/// to the end of the block takes at most `len / 4` steps.
struct Cursor<'a> {
    blk: &'a [u8],
    strings: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(blk: &'a [u8], strings: &'a [u8], pos: usize) -> Self {
        Cursor { blk, strings, pos }
    }

    /// The next token and the raw bytes it spans (token word included).
    fn next(&mut self) -> Result<(Token<'a>, &'a [u8]), FdtError> {
        let bad = FdtError::BadStructure;
        let start = self.pos;
        let tag = be32(self.blk, start).ok_or(bad)?;
        let body = start.checked_add(4).ok_or(bad)?;
        let (token, end) = match tag {
            FDT_BEGIN_NODE => {
                let name = cstr_at(self.blk, body).ok_or(bad)?;
                let end = body.checked_add(name.len()).ok_or(bad)?;
                (Token::Begin(name), end.checked_add(1).ok_or(bad)?)
            }
            FDT_END_NODE => (Token::End, body),
            FDT_PROP => {
                let len = be32(self.blk, body).ok_or(bad)? as usize;
                let nameoff = be32(self.blk, body.checked_add(4).ok_or(bad)?).ok_or(bad)?;
                let value_at = body.checked_add(8).ok_or(bad)?;
                let value = slice(self.blk, value_at, len).ok_or(bad)?;
                let name = cstr_at(self.strings, nameoff as usize).ok_or(bad)?;
                (Token::Prop { name, value }, value_at + len)
            }
            FDT_NOP => (Token::Nop, body),
            FDT_END => (Token::Finish, body),
            _ => return Err(bad),
        };
        let end = align4(end).ok_or(bad)?;
        let raw = self.blk.get(start..end).ok_or(bad)?;
        self.pos = end;
        Ok((token, raw))
    }
}

/// What the first pass learns about the root node.
#[derive(Clone, Copy, Default)]
struct RootInfo<'a> {
    address_cells: Option<&'a [u8]>,
    size_cells: Option<&'a [u8]>,
}

/// First pass: validates the whole structure block (one root node, balanced
/// nodes no deeper than [`MAX_DEPTH`], properties inside nodes, everything
/// inside its block, ends with `FDT_END`) and reads the root's cell sizes.
fn scan<'a>(blk: &'a [u8], strings: &'a [u8]) -> Result<RootInfo<'a>, FdtError> {
    let mut cur = Cursor::new(blk, strings, 0);
    let mut info = RootInfo::default();
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        match cur.next()?.0 {
            Token::Begin(_) => {
                if depth == 0 {
                    if roots != 0 {
                        return Err(FdtError::BadStructure);
                    }
                    roots += 1;
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(FdtError::BadStructure);
                }
            }
            Token::End => depth = depth.checked_sub(1).ok_or(FdtError::BadStructure)?,
            Token::Prop { name, value } => match depth {
                0 => return Err(FdtError::BadStructure),
                1 if name == PROP_ADDRESS_CELLS => info.address_cells = Some(value),
                1 if name == PROP_SIZE_CELLS => info.size_cells = Some(value),
                _ => {}
            },
            Token::Nop => {}
            Token::Finish => {
                if depth != 0 || roots != 1 {
                    return Err(FdtError::BadStructure);
                }
                return Ok(info);
            }
        }
    }
}

/// A root cell-size property's value (or `default` if absent), checked to be
/// 1 or 2.
fn cells(value: Option<&[u8]>, default: u32) -> Result<u32, FdtError> {
    let n = match value {
        None => default,
        Some(v) if v.len() == 4 => be32(v, 0).ok_or(FdtError::BadCells)?,
        Some(_) => return Err(FdtError::BadCells),
    };
    match n {
        1 | 2 => Ok(n),
        _ => Err(FdtError::BadCells),
    }
}

/// Is this root child a memory node by its name?
fn memory_name(name: &[u8]) -> bool {
    name == NODE_MEMORY || name.strip_prefix(NODE_MEMORY).is_some_and(|r| r.first() == Some(&b'@'))
}

/// Walks the node whose `FDT_BEGIN_NODE` token ended just before `pos` to its
/// `FDT_END_NODE`: returns whether the node itself has
/// `device_type = "memory"` and the offset just past its end.
fn look_ahead(blk: &[u8], strings: &[u8], pos: usize) -> Result<(bool, usize), FdtError> {
    let mut cur = Cursor::new(blk, strings, pos);
    let mut depth = 1usize;
    let mut memory = false;
    loop {
        match cur.next()?.0 {
            Token::Begin(_) => depth += 1,
            Token::End => {
                depth -= 1;
                if depth == 0 {
                    return Ok((memory, cur.pos));
                }
            }
            Token::Prop { name, value } => {
                if depth == 1
                    && name == PROP_DEVICE_TYPE.as_bytes()
                    && (value == DEVICE_TYPE_MEMORY || value == NODE_MEMORY)
                {
                    memory = true;
                }
            }
            Token::Nop => {}
            Token::Finish => return Err(FdtError::BadStructure),
        }
    }
}

/// The output buffer and how much of it is written.
struct Out<'o> {
    buf: &'o mut [u8],
    pos: usize,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), FdtError> {
        let end = self.pos.checked_add(b.len()).ok_or(FdtError::OutputTooSmall)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(FdtError::OutputTooSmall)?;
        dst.copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), FdtError> {
        self.bytes(&v.to_be_bytes())
    }

    /// Zero bytes up to the next multiple of 4.
    fn pad4(&mut self) -> Result<(), FdtError> {
        let pad = self.pos.wrapping_neg() & 3;
        self.bytes(&[0; 3][..pad])
    }

    fn set_u32(&mut self, at: usize, v: u32) -> Result<(), FdtError> {
        let end = at.checked_add(4).ok_or(FdtError::OutputTooSmall)?;
        let dst = self.buf.get_mut(at..end).ok_or(FdtError::OutputTooSmall)?;
        dst.copy_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// An `FDT_BEGIN_NODE` token for `name`.
    fn begin_node(&mut self, name: &[u8]) -> Result<(), FdtError> {
        self.u32(FDT_BEGIN_NODE)?;
        self.bytes(name)?;
        self.bytes(&[0])?;
        self.pad4()
    }

    /// An `FDT_PROP` token whose value is the concatenation of `parts`.
    fn prop(&mut self, nameoff: u32, parts: &[&[u8]]) -> Result<(), FdtError> {
        let len = parts
            .iter()
            .try_fold(0usize, |acc, p| acc.checked_add(p.len()))
            .and_then(|l| u32::try_from(l).ok())
            .ok_or(FdtError::OutputTooSmall)?;
        self.u32(FDT_PROP)?;
        self.u32(len)?;
        self.u32(nameoff)?;
        for p in parts {
            self.bytes(p)?;
        }
        self.pad4()
    }
}

/// Room for the names this module may add to the strings block
/// (70 bytes with their NULs).
const EXTRA_NAMES: usize = 96;

/// The property names this module writes.
const NEW_NAMES: [&str; 6] =
    [PROP_BOOTARGS, PROP_INITRD_START, PROP_INITRD_END, PROP_RNG_SEED, PROP_REG, PROP_DEVICE_TYPE];

/// The output strings block: the input's, then names appended on demand.
struct Names<'a> {
    input: &'a [u8],
    extra: [u8; EXTRA_NAMES],
    extra_len: usize,
    /// Offsets already looked up, by index in [`NEW_NAMES`]: a blob with
    /// many `chosen` nodes costs one search of its strings block per name.
    cache: [Option<u32>; NEW_NAMES.len()],
}

impl<'a> Names<'a> {
    fn new(input: &'a [u8]) -> Self {
        Names { input, extra: [0; EXTRA_NAMES], extra_len: 0, cache: [None; NEW_NAMES.len()] }
    }

    fn extra(&self) -> &[u8] {
        self.extra.get(..self.extra_len).unwrap_or(&[])
    }

    /// Where `name` (NUL-terminated) starts in `buf`, also as the tail of a
    /// longer string.
    fn find(buf: &[u8], name: &[u8]) -> Option<usize> {
        buf.windows(name.len() + 1)
            .position(|w| w.split_last().is_some_and(|(last, head)| *last == 0 && head == name))
    }

    /// The output string offset for `name`, appending it if needed.
    fn offset(&mut self, name: &str) -> Result<u32, FdtError> {
        let slot = NEW_NAMES.iter().position(|n| *n == name);
        if let Some(off) = slot.and_then(|i| self.cache.get(i).copied().flatten()) {
            return Ok(off);
        }
        let off = self.search(name.as_bytes())?;
        if let Some(c) = slot.and_then(|i| self.cache.get_mut(i)) {
            *c = Some(off);
        }
        Ok(off)
    }

    /// Finds or appends `name`.
    fn search(&mut self, name: &[u8]) -> Result<u32, FdtError> {
        let off = if let Some(i) = Self::find(self.input, name) {
            i
        } else if let Some(i) = Self::find(self.extra(), name) {
            self.input.len() + i
        } else {
            let at = self.extra_len;
            let end = at + name.len() + 1;
            let dst = self.extra.get_mut(at..end).ok_or(FdtError::BadStructure)?;
            let (text, nul) = dst.split_at_mut(name.len());
            text.copy_from_slice(name);
            nul.fill(0);
            self.extra_len = end;
            self.input.len() + at
        };
        u32::try_from(off).map_err(|_| FdtError::OutputTooSmall)
    }
}

/// Which `/chosen` properties a `/chosen` node already has in the output.
#[derive(Clone, Copy, Default)]
struct ChosenDone {
    bootargs: bool,
    initrd_start: bool,
    initrd_end: bool,
    rng_seed: bool,
}

/// Which properties the kept memory node already has in the output.
#[derive(Clone, Copy, Default)]
struct MemoryDone {
    reg: bool,
    device_type: bool,
}

/// The root child being copied, as far as patching goes.
#[derive(Clone, Copy)]
enum Child {
    /// Copied unchanged.
    Other,
    /// A `chosen` node.
    Chosen(ChosenDone),
    /// The first memory node, whose `reg` is replaced.
    Memory(MemoryDone),
}

/// Second pass: copies the (validated) structure block with the patch
/// applied.
struct Rewriter<'r, 'a, 'o> {
    o: &'r mut Out<'o>,
    names: &'r mut Names<'a>,
    blk: &'a [u8],
    strings: &'a [u8],
    patch: &'r Patch<'r>,
    /// Root (#address-cells, #size-cells), checked, when memory is patched.
    cells: Option<(u32, u32)>,
}

impl Rewriter<'_, '_, '_> {
    fn run(&mut self) -> Result<(), FdtError> {
        let bad = FdtError::BadStructure;
        let mut cur = Cursor::new(self.blk, self.strings, 0);
        let mut depth = 0usize;
        let mut child = Child::Other;
        // Whether the current root child's new properties are written: they
        // go before its first subnode or its end, whichever comes first.
        let mut flushed = false;
        let mut saw_chosen = false;
        let mut saw_memory = false;
        loop {
            let (token, raw) = cur.next()?;
            match token {
                Token::Nop => {}
                Token::Finish => return self.o.u32(FDT_END),
                Token::Begin(name) => {
                    if depth == 2 && !flushed {
                        self.flush(&mut child)?;
                        flushed = true;
                    }
                    if depth == 1 {
                        child = Child::Other;
                        flushed = false;
                        if name == NODE_CHOSEN {
                            child = Child::Chosen(ChosenDone::default());
                            saw_chosen = true;
                        } else if self.patch.memory.is_some() {
                            let (typed, end) = look_ahead(self.blk, self.strings, cur.pos)?;
                            if typed || memory_name(name) {
                                if saw_memory {
                                    // A further memory node: dropped whole.
                                    cur.pos = end;
                                    continue;
                                }
                                saw_memory = true;
                                child = Child::Memory(MemoryDone::default());
                            }
                        }
                    }
                    depth = depth.checked_add(1).ok_or(bad)?;
                    self.o.bytes(raw)?;
                }
                Token::End => {
                    if depth == 2 {
                        if !flushed {
                            self.flush(&mut child)?;
                        }
                        child = Child::Other;
                    } else if depth == 1 {
                        self.add_missing(saw_chosen, saw_memory)?;
                    }
                    depth = depth.checked_sub(1).ok_or(bad)?;
                    self.o.u32(FDT_END_NODE)?;
                }
                Token::Prop { name, value: _ } => {
                    if depth == 2 && self.replace(&mut child, name)? {
                        continue;
                    }
                    self.o.bytes(raw)?;
                }
            }
        }
    }

    /// Handles property `name` of the current root child: returns true if
    /// the input property is not to be copied (it is replaced or removed).
    fn replace(&mut self, child: &mut Child, name: &[u8]) -> Result<bool, FdtError> {
        let p = self.patch;
        match child {
            Child::Other => Ok(false),
            Child::Chosen(done) => {
                if name == PROP_BOOTARGS.as_bytes() && p.bootargs.is_some() {
                    if !done.bootargs {
                        self.bootargs()?;
                        done.bootargs = true;
                    }
                } else if name == PROP_INITRD_START.as_bytes() {
                    if let (Some((start, _)), false) = (p.initrd, done.initrd_start) {
                        self.u64_prop(PROP_INITRD_START, start)?;
                        done.initrd_start = true;
                    }
                } else if name == PROP_INITRD_END.as_bytes() {
                    if let (Some((_, end)), false) = (p.initrd, done.initrd_end) {
                        self.u64_prop(PROP_INITRD_END, end)?;
                        done.initrd_end = true;
                    }
                } else if name == PROP_RNG_SEED.as_bytes() && p.rng_seed.is_some() {
                    if !done.rng_seed {
                        self.rng_seed()?;
                        done.rng_seed = true;
                    }
                } else {
                    return Ok(false);
                }
                Ok(true)
            }
            Child::Memory(done) => {
                if name == PROP_REG.as_bytes() {
                    if !done.reg {
                        self.reg()?;
                        done.reg = true;
                    }
                    Ok(true)
                } else {
                    if name == PROP_DEVICE_TYPE.as_bytes() {
                        done.device_type = true;
                    }
                    Ok(false)
                }
            }
        }
    }

    /// Writes the current root child's patched properties it does not have
    /// yet.
    fn flush(&mut self, child: &mut Child) -> Result<(), FdtError> {
        match child {
            Child::Other => Ok(()),
            Child::Chosen(done) => self.chosen_props(done),
            Child::Memory(done) => {
                if !done.device_type {
                    self.device_type()?;
                    done.device_type = true;
                }
                if !done.reg {
                    self.reg()?;
                    done.reg = true;
                }
                Ok(())
            }
        }
    }

    /// Writes the patched `/chosen` properties not in `done`.
    fn chosen_props(&mut self, done: &mut ChosenDone) -> Result<(), FdtError> {
        let p = self.patch;
        if p.bootargs.is_some() && !done.bootargs {
            self.bootargs()?;
            done.bootargs = true;
        }
        if let Some((start, end)) = p.initrd {
            if !done.initrd_start {
                self.u64_prop(PROP_INITRD_START, start)?;
                done.initrd_start = true;
            }
            if !done.initrd_end {
                self.u64_prop(PROP_INITRD_END, end)?;
                done.initrd_end = true;
            }
        }
        if p.rng_seed.is_some() && !done.rng_seed {
            self.rng_seed()?;
            done.rng_seed = true;
        }
        Ok(())
    }

    /// Appends the nodes the root lacks, just before its end.
    fn add_missing(&mut self, saw_chosen: bool, saw_memory: bool) -> Result<(), FdtError> {
        if let (Some((base, _)), false) = (self.patch.memory, saw_memory) {
            // "memory@" and up to 16 hex digits.
            let mut name = [0u8; 23];
            let (prefix, digits) = name.split_at_mut(NODE_MEMORY.len() + 1);
            prefix.copy_from_slice(b"memory@");
            let n = hex(base, digits);
            let name = name.get(..NODE_MEMORY.len() + 1 + n).unwrap_or(b"memory");
            self.o.begin_node(name)?;
            self.device_type()?;
            self.reg()?;
            self.o.u32(FDT_END_NODE)?;
        }
        if !saw_chosen {
            self.o.begin_node(NODE_CHOSEN)?;
            self.chosen_props(&mut ChosenDone::default())?;
            self.o.u32(FDT_END_NODE)?;
        }
        Ok(())
    }

    fn bootargs(&mut self) -> Result<(), FdtError> {
        let args = self.patch.bootargs.unwrap_or("");
        let off = self.names.offset(PROP_BOOTARGS)?;
        self.o.prop(off, &[args.as_bytes(), &[0]])
    }

    fn rng_seed(&mut self) -> Result<(), FdtError> {
        let seed = self.patch.rng_seed.unwrap_or(&[]);
        let off = self.names.offset(PROP_RNG_SEED)?;
        self.o.prop(off, &[seed])
    }

    fn u64_prop(&mut self, name: &str, v: u64) -> Result<(), FdtError> {
        let off = self.names.offset(name)?;
        self.o.prop(off, &[&v.to_be_bytes()])
    }

    fn device_type(&mut self) -> Result<(), FdtError> {
        let off = self.names.offset(PROP_DEVICE_TYPE)?;
        self.o.prop(off, &[DEVICE_TYPE_MEMORY])
    }

    /// The memory node's `reg`: the patched region in the root's cells.
    fn reg(&mut self) -> Result<(), FdtError> {
        let (Some((base, size)), Some((ac, sc))) = (self.patch.memory, self.cells) else {
            return Ok(());
        };
        let mut value = [0u8; 16];
        let mut len = encode_cells(base, ac, &mut value)?;
        len += encode_cells(size, sc, value.get_mut(len..).unwrap_or(&mut []))?;
        let off = self.names.offset(PROP_REG)?;
        self.o.prop(off, &[value.get(..len).unwrap_or(&[])])
    }
}

/// Writes `v` as `cells` (1 or 2) big-endian 32-bit cells at the start of
/// `dst`; returns the number of bytes written.
fn encode_cells(v: u64, cells: u32, dst: &mut [u8]) -> Result<usize, FdtError> {
    let (bytes, len) = match cells {
        1 => {
            let v = u32::try_from(v).map_err(|_| FdtError::BadCells)?;
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&v.to_be_bytes());
            (b, 4)
        }
        2 => (v.to_be_bytes(), 8),
        _ => return Err(FdtError::BadCells),
    };
    let d = dst.get_mut(..len).ok_or(FdtError::BadCells)?;
    d.copy_from_slice(bytes.get(..len).ok_or(FdtError::BadCells)?);
    Ok(len)
}

/// Writes `v` in lower-case hex without leading zeros into `dst` (16 bytes
/// are enough); returns the number of digits.
fn hex(v: u64, dst: &mut [u8]) -> usize {
    let digits = if v == 0 { 1 } else { (64 - v.leading_zeros()).div_ceil(4) as usize };
    for (i, d) in dst.iter_mut().take(digits).enumerate() {
        let shift = 4 * (digits - 1 - i);
        let nibble = ((v >> shift) & 0xf) as u8;
        *d = match nibble {
            0..=9 => b'0' + nibble,
            _ => b'a' + nibble - 10,
        };
    }
    digits.min(dst.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_fdt::{FdtReserveEntry, FdtWriter};

    const PL011_COMPAT: &[u8] = b"arm,pl011\0arm,primecell\0";
    const PL011_REG: [u64; 2] = [0x900_0000, 0x1000];
    const PL011_IRQS: [u32; 3] = [0, 1, 4];

    /// A tree with root `compatible`, optional root cells, the pl011 and
    /// psci nodes, and whatever `body` adds as further root children.
    fn build(
        cells: Option<(u32, u32)>,
        rsv: &[(u64, u64)],
        body: impl FnOnce(&mut FdtWriter),
    ) -> Vec<u8> {
        let rsv: Vec<FdtReserveEntry> =
            rsv.iter().map(|&(a, s)| FdtReserveEntry::new(a, s).unwrap()).collect();
        let mut w = FdtWriter::new_with_mem_reserv(&rsv).unwrap();
        w.set_boot_cpuid_phys(0x1234);
        let root = w.begin_node("").unwrap();
        w.property_string("compatible", "linux,dummy-virt").unwrap();
        if let Some((ac, sc)) = cells {
            w.property_u32("#address-cells", ac).unwrap();
            w.property_u32("#size-cells", sc).unwrap();
        }
        let uart = w.begin_node("pl011@9000000").unwrap();
        w.property("compatible", PL011_COMPAT).unwrap();
        w.property_array_u64("reg", &PL011_REG).unwrap();
        w.property_array_u32("interrupts", &PL011_IRQS).unwrap();
        w.end_node(uart).unwrap();
        let psci = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci-1.0").unwrap();
        w.property_string("method", "hvc").unwrap();
        w.end_node(psci).unwrap();
        body(&mut w);
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn memory_node(w: &mut FdtWriter, name: &str, reg: &[u8], typed: bool) {
        let n = w.begin_node(name).unwrap();
        if typed {
            w.property_string("device_type", "memory").unwrap();
        }
        w.property("reg", reg).unwrap();
        w.end_node(n).unwrap();
    }

    fn run(input: &[u8], p: &Patch) -> Result<Vec<u8>, FdtError> {
        let mut out = vec![0u8; input.len() + 4096];
        let n = patch(input, &mut out, p)?;
        out.truncate(n);
        Ok(out)
    }

    fn run_ok(input: &[u8], p: &Patch) -> Vec<u8> {
        let out = run(input, p).unwrap();
        assert_valid_header(&out);
        out
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn set_u32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn assert_valid_header(out: &[u8]) {
        assert_eq!(u32_at(out, hdr::MAGIC), FDT_MAGIC);
        assert_eq!(u32_at(out, hdr::TOTALSIZE) as usize, out.len());
        assert_eq!(u32_at(out, hdr::VERSION), 17);
        assert_eq!(u32_at(out, hdr::LAST_COMP_VERSION), 16);
        assert_eq!(u32_at(out, hdr::OFF_MEM_RSVMAP), 40);
        let off_struct = u32_at(out, hdr::OFF_DT_STRUCT) as usize;
        let size_struct = u32_at(out, hdr::SIZE_DT_STRUCT) as usize;
        let off_strings = u32_at(out, hdr::OFF_DT_STRINGS) as usize;
        let size_strings = u32_at(out, hdr::SIZE_DT_STRINGS) as usize;
        assert_eq!(off_struct % 8, 0);
        assert_eq!(size_struct % 4, 0);
        assert_eq!(off_struct + size_struct, off_strings);
        assert_eq!(off_strings + size_strings, out.len());
        assert_eq!(u32_at(out, off_strings - 4), FDT_END);
        assert_eq!(check(out), Ok(out.len()));
    }

    fn parse(blob: &[u8]) -> fdt::Fdt<'_> {
        fdt::Fdt::new(blob).unwrap()
    }

    fn prop(blob: &[u8], path: &str, name: &str) -> Option<Vec<u8>> {
        let f = parse(blob);
        let node = f.find_node(path)?;
        node.property(name).map(|p| p.value.to_vec())
    }

    fn count_props(blob: &[u8], path: &str, name: &str) -> usize {
        let f = parse(blob);
        let node = f.find_node(path).unwrap();
        node.properties().filter(|p| p.name == name).count()
    }

    fn root_children(blob: &[u8]) -> Vec<String> {
        let f = parse(blob);
        let root = f.find_node("/").unwrap();
        root.children().map(|c| c.name.to_string()).collect()
    }

    fn reg2(base: u64, size: u64) -> Vec<u8> {
        [base.to_be_bytes(), size.to_be_bytes()].concat()
    }

    fn reg1(base: u32, size: u32) -> Vec<u8> {
        [base.to_be_bytes(), size.to_be_bytes()].concat()
    }

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    fn with_chosen(w: &mut FdtWriter) {
        let c = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "old args").unwrap();
        w.property_u32("linux,initrd-start", 0x4800_0000).unwrap();
        w.property_u32("linux,initrd-end", 0x4900_0000).unwrap();
        w.property_string("stdout-path", "/pl011@9000000").unwrap();
        w.property("rng-seed", &[1, 2, 3, 4]).unwrap();
        w.end_node(c).unwrap();
    }

    /// A structure block written by hand, for what vm-fdt refuses to make.
    #[derive(Default)]
    struct Raw {
        st: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Raw {
        fn word(&mut self, v: u32) -> &mut Self {
            self.st.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn begin(&mut self, name: &str) -> &mut Self {
            self.word(FDT_BEGIN_NODE);
            self.st.extend_from_slice(name.as_bytes());
            self.st.push(0);
            self.st.resize(self.st.len().next_multiple_of(4), 0);
            self
        }
        fn end(&mut self) -> &mut Self {
            self.word(FDT_END_NODE)
        }
        fn nop(&mut self) -> &mut Self {
            self.word(FDT_NOP)
        }
        fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let off = match Names::find(&self.strings, name.as_bytes()) {
                Some(i) => i,
                None => {
                    let i = self.strings.len();
                    self.strings.extend_from_slice(&cstr(name));
                    i
                }
            };
            self.word(FDT_PROP).word(value.len() as u32).word(off as u32);
            self.st.extend_from_slice(value);
            self.st.resize(self.st.len().next_multiple_of(4), 0);
            self
        }
        /// The blob: header, reservations, structure block (FDT_END
        /// appended), strings.
        fn blob(&self, rsv: &[(u64, u64)]) -> Vec<u8> {
            let mut b = vec![0u8; 40];
            for &(a, s) in rsv.iter().chain(&[(0, 0)]) {
                b.extend_from_slice(&a.to_be_bytes());
                b.extend_from_slice(&s.to_be_bytes());
            }
            let off_struct = b.len();
            b.extend_from_slice(&self.st);
            b.extend_from_slice(&FDT_END.to_be_bytes());
            let off_strings = b.len();
            b.extend_from_slice(&self.strings);
            let total = b.len() as u32;
            set_u32(&mut b, hdr::MAGIC, FDT_MAGIC);
            set_u32(&mut b, hdr::TOTALSIZE, total);
            set_u32(&mut b, hdr::OFF_DT_STRUCT, off_struct as u32);
            set_u32(&mut b, hdr::OFF_DT_STRINGS, off_strings as u32);
            set_u32(&mut b, hdr::OFF_MEM_RSVMAP, 40);
            set_u32(&mut b, hdr::VERSION, 17);
            set_u32(&mut b, hdr::LAST_COMP_VERSION, 16);
            set_u32(&mut b, hdr::SIZE_DT_STRINGS, self.strings.len() as u32);
            set_u32(&mut b, hdr::SIZE_DT_STRUCT, (off_strings - off_struct) as u32);
            b
        }
    }

    /// A blob exercising every patch: chosen with all properties, two
    /// memory nodes, reservations.
    fn full_tree() -> Vec<u8> {
        build(Some((2, 2)), &[(0x4000_0000, 0x1000)], |w| {
            with_chosen(w);
            memory_node(w, "memory@40000000", &reg2(0x4000_0000, 0x1000_0000), true);
            memory_node(w, "memory@80000000", &reg2(0x8000_0000, 0x1000_0000), true);
        })
    }

    fn full_patch() -> Patch<'static> {
        Patch {
            bootargs: Some("console=hvc0 earlycon"),
            initrd: Some((0x4c00_0000, 0x4d00_0000)),
            memory: Some((0x4000_0000, 0x2000_0000)),
            rng_seed: Some(&[9; 32]),
        }
    }

    #[test]
    fn check_returns_total_size() {
        let blob = full_tree();
        assert_eq!(check(&blob), Ok(blob.len()));
        let mut longer = blob.clone();
        longer.extend_from_slice(&[0xff; 64]);
        assert_eq!(check(&longer), Ok(blob.len()));
    }

    #[test]
    fn bootargs_creates_chosen_when_missing() {
        let blob = build(None, &[], |_| {});
        assert!(!root_children(&blob).contains(&"chosen".to_string()));
        let p = Patch { bootargs: Some("console=ttyAMA0"), ..Patch::default() };
        let out = run_ok(&blob, &p);
        assert_eq!(root_children(&out), ["pl011@9000000", "psci", "chosen"]);
        assert_eq!(parse(&out).chosen().bootargs(), Some("console=ttyAMA0"));
        assert_eq!(prop(&out, "/chosen", "bootargs"), Some(cstr("console=ttyAMA0")));
    }

    #[test]
    fn default_patch_adds_empty_chosen_only() {
        let blob = build(None, &[], |_| {});
        let out = run_ok(&blob, &Patch::default());
        assert_eq!(root_children(&out), ["pl011@9000000", "psci", "chosen"]);
        assert_eq!(parse(&out).find_node("/chosen").unwrap().properties().count(), 0);
    }

    #[test]
    fn bootargs_replaced_once_in_place() {
        let blob = build(None, &[], with_chosen);
        let p = Patch {
            bootargs: Some("root=/dev/vda"),
            initrd: Some((0x4800_0000, 0x4900_0000)),
            ..Patch::default()
        };
        let out = run_ok(&blob, &p);
        assert_eq!(count_props(&out, "/chosen", "bootargs"), 1);
        assert_eq!(prop(&out, "/chosen", "bootargs"), Some(cstr("root=/dev/vda")));
        let names: Vec<String> = parse(&out)
            .find_node("/chosen")
            .unwrap()
            .properties()
            .map(|p| p.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["bootargs", "linux,initrd-start", "linux,initrd-end", "stdout-path", "rng-seed"]
        );
        assert!(!out.windows(8).any(|w| w == b"old args"));
        // Only one chosen node.
        assert_eq!(root_children(&out).iter().filter(|c| *c == "chosen").count(), 1);
    }

    #[test]
    fn bootargs_none_keeps_existing() {
        let blob = build(None, &[], with_chosen);
        let out = run_ok(&blob, &Patch::default());
        assert_eq!(prop(&out, "/chosen", "bootargs"), Some(cstr("old args")));
        assert_eq!(prop(&out, "/chosen", "rng-seed"), Some(vec![1, 2, 3, 4]));
    }

    #[test]
    fn initrd_written_as_u64() {
        for blob in [build(None, &[], |_| {}), build(None, &[], with_chosen)] {
            let p = Patch { initrd: Some((0x1_2345_6000, 0x1_2355_6000)), ..Patch::default() };
            let out = run_ok(&blob, &p);
            let f = parse(&out);
            let chosen = f.find_node("/chosen").unwrap();
            let start = chosen.property("linux,initrd-start").unwrap();
            let end = chosen.property("linux,initrd-end").unwrap();
            assert_eq!(start.value, 0x1_2345_6000u64.to_be_bytes());
            assert_eq!(end.value, 0x1_2355_6000u64.to_be_bytes());
            assert_eq!(start.as_usize(), Some(0x1_2345_6000));
            assert_eq!(end.as_usize(), Some(0x1_2355_6000));
            assert_eq!(count_props(&out, "/chosen", "linux,initrd-start"), 1);
            assert_eq!(count_props(&out, "/chosen", "linux,initrd-end"), 1);
        }
    }

    #[test]
    fn initrd_none_removes_existing() {
        let blob = build(None, &[], with_chosen);
        let out = run_ok(&blob, &Patch::default());
        assert_eq!(prop(&out, "/chosen", "linux,initrd-start"), None);
        assert_eq!(prop(&out, "/chosen", "linux,initrd-end"), None);
        assert_eq!(prop(&out, "/chosen", "stdout-path"), Some(cstr("/pl011@9000000")));
    }

    #[test]
    fn memory_reg_replaced_2_2_cells() {
        let blob = build(Some((2, 2)), &[], |w| {
            memory_node(w, "memory@40000000", &reg2(0x4000_0000, 0x1000_0000), true);
        });
        let p = Patch { memory: Some((0x4000_0000, 0x1_0000_0000)), ..Patch::default() };
        let out = run_ok(&blob, &p);
        assert_eq!(prop(&out, "/memory@40000000", "reg"), Some(reg2(0x4000_0000, 0x1_0000_0000)));
        assert_eq!(count_props(&out, "/memory@40000000", "reg"), 1);
        let region = parse(&out).memory().regions().next().unwrap();
        assert_eq!(region.starting_address as usize, 0x4000_0000);
        assert_eq!(region.size, Some(0x1_0000_0000));
    }

    #[test]
    fn memory_reg_replaced_1_1_cells() {
        let blob = build(Some((1, 1)), &[], |w| {
            memory_node(w, "memory", &reg1(0x4000_0000, 0x1000_0000), true);
        });
        let p = Patch { memory: Some((0x4000_0000, 0x2000_0000)), ..Patch::default() };
        let out = run_ok(&blob, &p);
        assert_eq!(prop(&out, "/memory", "reg"), Some(reg1(0x4000_0000, 0x2000_0000)));
        let region = parse(&out).memory().regions().next().unwrap();
        assert_eq!(region.starting_address as usize, 0x4000_0000);
        assert_eq!(region.size, Some(0x2000_0000));
    }

    #[test]
    fn memory_default_cells_are_2_1() {
        let blob = build(None, &[], |_| {});
        let p = Patch { memory: Some((0x4000_0000, 0x2000_0000)), ..Patch::default() };
        let out = run_ok(&blob, &p);
        let mut want = 0x4000_0000u64.to_be_bytes().to_vec();
        want.extend_from_slice(&0x2000_0000u32.to_be_bytes());
        assert_eq!(prop(&out, "/memory@40000000", "reg"), Some(want));
    }

    #[test]
    fn memory_node_added_when_missing() {
        let blob = build(Some((2, 2)), &[], |_| {});
        let p = Patch { memory: Some((0x8_4000_0000, 0x1000_0000)), ..Patch::default() };
        let out = run_ok(&blob, &p);
        assert_eq!(root_children(&out), ["pl011@9000000", "psci", "memory@840000000", "chosen"]);
        assert_eq!(prop(&out, "/memory@840000000", "device_type"), Some(cstr("memory")));
        assert_eq!(prop(&out, "/memory@840000000", "reg"), Some(reg2(0x8_4000_0000, 0x1000_0000)));
        let zero = run_ok(&blob, &Patch { memory: Some((0, 0x1000)), ..Patch::default() });
        assert!(root_children(&zero).contains(&"memory@0".to_string()));
    }

    #[test]
    fn further_memory_nodes_dropped() {
        let blob = build(Some((2, 2)), &[], |w| {
            memory_node(w, "memory@40000000", &reg2(0x4000_0000, 0x1000_0000), true);
            memory_node(w, "memory@80000000", &reg2(0x8000_0000, 0x1000_0000), true);
            // Memory by device_type only, with a subnode.
            let n = w.begin_node("ram@c0000000").unwrap();
            w.property_string("device_type", "memory").unwrap();
            w.property("reg", &reg2(0xc000_0000, 0x1000)).unwrap();
            let sub = w.begin_node("sub").unwrap();
            w.end_node(sub).unwrap();
            w.end_node(n).unwrap();
            // Not a memory node: a property value happens to be "memory".
            let n = w.begin_node("other").unwrap();
            w.property_string("label", "memory").unwrap();
            w.end_node(n).unwrap();
        });
        let p = Patch { memory: Some((0x4000_0000, 0x8000_0000)), ..Patch::default() };
        let out = run_ok(&blob, &p);
        assert_eq!(
            root_children(&out),
            ["pl011@9000000", "psci", "memory@40000000", "other", "chosen"]
        );
        assert_eq!(prop(&out, "/memory@40000000", "reg"), Some(reg2(0x4000_0000, 0x8000_0000)));
    }

    #[test]
    fn memory_by_device_type_first_is_replaced() {
        let blob = build(Some((2, 2)), &[], |w| {
            memory_node(w, "ram@40000000", &reg2(0x4000_0000, 0x1000), true);
            memory_node(w, "memory@80000000", &reg2(0x8000_0000, 0x1000), false);
        });
        let p = Patch { memory: Some((0x4000_0000, 0x2000)), ..Patch::default() };
        let out = run_ok(&blob, &p);
        assert_eq!(root_children(&out), ["pl011@9000000", "psci", "ram@40000000", "chosen"]);
        assert_eq!(prop(&out, "/ram@40000000", "reg"), Some(reg2(0x4000_0000, 0x2000)));
    }

    #[test]
    fn memory_node_without_device_type_gets_one() {
        let blob = build(Some((2, 2)), &[], |w| {
            memory_node(w, "memory@40000000", &reg2(0x4000_0000, 0x1000), false);
        });
        let p = Patch { memory: Some((0x4000_0000, 0x2000)), ..Patch::default() };
        let out = run_ok(&blob, &p);
        assert_eq!(prop(&out, "/memory@40000000", "device_type"), Some(cstr("memory")));
        assert_eq!(prop(&out, "/memory@40000000", "reg"), Some(reg2(0x4000_0000, 0x2000)));
    }

    #[test]
    fn memory_none_leaves_memory_nodes() {
        let blob = full_tree();
        let out = run_ok(&blob, &Patch::default());
        assert_eq!(
            root_children(&out),
            ["pl011@9000000", "psci", "chosen", "memory@40000000", "memory@80000000"]
        );
        assert_eq!(prop(&out, "/memory@80000000", "reg"), Some(reg2(0x8000_0000, 0x1000_0000)));
    }

    #[test]
    fn memory_bad_cells() {
        let p = Patch { memory: Some((0x4000_0000, 0x1000)), ..Patch::default() };
        for cells in [(3, 2), (2, 0), (0, 1), (2, 3)] {
            let blob = build(Some(cells), &[], |_| {});
            assert_eq!(run(&blob, &p), Err(FdtError::BadCells), "{cells:?}");
            // Without a memory patch the cells do not matter.
            run_ok(&blob, &Patch::default());
        }
        let blob = build(Some((1, 1)), &[], |_| {});
        for region in [(0x1_0000_0000, 0x1000), (0x4000_0000, 0x1_0000_0000)] {
            let p = Patch { memory: Some(region), ..Patch::default() };
            assert_eq!(run(&blob, &p), Err(FdtError::BadCells));
        }
        let mut raw = Raw::default();
        raw.begin("").prop("#address-cells", &[0, 0, 0, 0, 0, 0, 0, 2]).end();
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadCells));
    }

    #[test]
    fn rng_seed_set_and_replaced() {
        let seed: Vec<u8> = (0..64).collect();
        let p = Patch { rng_seed: Some(&seed), ..Patch::default() };
        for blob in [build(None, &[], |_| {}), build(None, &[], with_chosen)] {
            let out = run_ok(&blob, &p);
            assert_eq!(prop(&out, "/chosen", "rng-seed"), Some(seed.clone()));
            assert_eq!(count_props(&out, "/chosen", "rng-seed"), 1);
        }
    }

    #[test]
    fn unrelated_nodes_preserved() {
        let blob = full_tree();
        let out = run_ok(&blob, &full_patch());
        for (path, name) in [
            ("/", "compatible"),
            ("/", "#address-cells"),
            ("/", "#size-cells"),
            ("/pl011@9000000", "compatible"),
            ("/pl011@9000000", "reg"),
            ("/pl011@9000000", "interrupts"),
            ("/psci", "compatible"),
            ("/psci", "method"),
            ("/chosen", "stdout-path"),
        ] {
            assert_eq!(prop(&out, path, name), prop(&blob, path, name), "{path} {name}");
            assert!(prop(&out, path, name).is_some());
        }
        let uart = parse(&out);
        let uart = uart.find_node("/pl011@9000000").unwrap();
        assert_eq!(uart.properties().count(), 3);
        assert_eq!(uart.property("compatible").unwrap().value, PL011_COMPAT);
        let irqs: Vec<u8> = PL011_IRQS.iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(uart.property("interrupts").unwrap().value, irqs);
        let reg: Vec<u8> = PL011_REG.iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(uart.property("reg").unwrap().value, reg);
    }

    #[test]
    fn reservations_and_boot_cpu_preserved() {
        let rsv = [(0x4000_0000, 0x1000), (0x4800_0000, 0x20_0000)];
        let blob = build(None, &rsv, |_| {});
        let out = run_ok(&blob, &full_patch());
        let got: Vec<(u64, u64)> = parse(&out)
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size() as u64))
            .collect();
        assert_eq!(got, rsv);
        assert_eq!(u32_at(&out, hdr::BOOT_CPUID_PHYS), 0x1234);
        assert_eq!(u32_at(&out, hdr::OFF_DT_STRUCT), 40 + 16 * 3);
    }

    #[test]
    fn existing_names_are_reused() {
        let blob = full_tree();
        let out = run_ok(&blob, &full_patch());
        assert_eq!(u32_at(&out, hdr::SIZE_DT_STRINGS), u32_at(&blob, hdr::SIZE_DT_STRINGS));
    }

    #[test]
    fn new_names_appended_once() {
        let blob = build(None, &[], |_| {});
        let p = Patch {
            bootargs: Some("a"),
            initrd: Some((1, 2)),
            rng_seed: Some(&[7]),
            memory: Some((0, 0x1000)),
        };
        let out = run_ok(&blob, &p);
        let strings = |b: &[u8]| {
            let off = u32_at(b, hdr::OFF_DT_STRINGS) as usize;
            let len = u32_at(b, hdr::SIZE_DT_STRINGS) as usize;
            b[off..off + len].to_vec()
        };
        let mut want = strings(&blob);
        // "reg" is already there (pl011).
        want.extend_from_slice(
            b"device_type\0bootargs\0linux,initrd-start\0linux,initrd-end\0rng-seed\0",
        );
        assert_eq!(strings(&out), want);
    }

    #[test]
    fn patching_is_idempotent() {
        let blob = full_tree();
        let once = run_ok(&blob, &full_patch());
        let twice = run_ok(&once, &full_patch());
        assert_eq!(once, twice);
    }

    #[test]
    fn new_props_go_before_subnodes() {
        let mut raw = Raw::default();
        raw.begin("")
            .begin("chosen")
            .prop("stdout-path", b"serial0\0")
            .begin("framebuffer@0")
            .prop("compatible", b"simple-framebuffer\0")
            .end()
            .end()
            .begin("memory@0")
            .begin("sub")
            .end()
            .end()
            .end();
        let p =
            Patch { bootargs: Some("quiet"), memory: Some((0x1000, 0x2000)), ..Patch::default() };
        let out = run_ok(&raw.blob(&[]), &p);
        let names: Vec<String> = parse(&out)
            .find_node("/chosen")
            .unwrap()
            .properties()
            .map(|p| p.name.to_string())
            .collect();
        assert_eq!(names, ["stdout-path", "bootargs"]);
        assert!(parse(&out).find_node("/chosen/framebuffer@0").is_some());
        let mem: Vec<String> = parse(&out)
            .find_node("/memory@0")
            .unwrap()
            .properties()
            .map(|p| p.name.to_string())
            .collect();
        assert_eq!(mem, ["device_type", "reg"]);
        assert!(parse(&out).find_node("/memory@0/sub").is_some());
    }

    #[test]
    fn duplicate_chosen_nodes_each_patched() {
        let mut raw = Raw::default();
        raw.begin("").begin("chosen").end().begin("chosen").prop("bootargs", b"x\0").end();
        // Not a root child: left alone.
        raw.begin("soc").begin("chosen").prop("bootargs", b"y\0").end().end().end();
        let p = Patch { bootargs: Some("z"), ..Patch::default() };
        let out = run_ok(&raw.blob(&[]), &p);
        let f = parse(&out);
        let root = f.find_node("/").unwrap();
        let chosen: Vec<_> = root.children().filter(|c| c.name == "chosen").collect();
        assert_eq!(chosen.len(), 2);
        for c in chosen {
            let args: Vec<_> = c.properties().filter(|p| p.name == "bootargs").collect();
            assert_eq!(args.len(), 1);
            assert_eq!(args[0].value, b"z\0");
        }
        assert_eq!(prop(&out, "/soc/chosen", "bootargs"), Some(cstr("y")));
    }

    #[test]
    fn nop_tokens_skipped() {
        let mut raw = Raw::default();
        raw.nop()
            .begin("")
            .nop()
            .prop("#address-cells", &2u32.to_be_bytes())
            .nop()
            .begin("chosen")
            .nop()
            .prop("bootargs", b"old\0")
            .nop()
            .end()
            .nop()
            .begin("memory@0")
            .nop()
            .prop("device_type", b"memory\0")
            .end()
            .nop()
            .end()
            .nop();
        let out = run_ok(&raw.blob(&[]), &full_patch());
        assert_eq!(prop(&out, "/chosen", "bootargs"), Some(cstr("console=hvc0 earlycon")));
        assert_eq!(count_props(&out, "/chosen", "bootargs"), 1);
        assert_eq!(root_children(&out), ["chosen", "memory@0"]);
        let off = u32_at(&out, hdr::OFF_DT_STRUCT) as usize;
        let len = u32_at(&out, hdr::SIZE_DT_STRUCT) as usize;
        let str_off = u32_at(&out, hdr::OFF_DT_STRINGS) as usize;
        let str_len = u32_at(&out, hdr::SIZE_DT_STRINGS) as usize;
        let mut cur = Cursor::new(&out[off..off + len], &out[str_off..str_off + str_len], 0);
        loop {
            match cur.next().unwrap().0 {
                Token::Nop => panic!("NOP copied to the output"),
                Token::Finish => break,
                _ => {}
            }
        }
        assert_eq!(cur.pos, len);
    }

    #[test]
    fn version_16_accepted() {
        let mut blob = full_tree();
        set_u32(&mut blob, hdr::VERSION, 16);
        set_u32(&mut blob, hdr::SIZE_DT_STRUCT, 0xdead_beef);
        let out = run_ok(&blob, &full_patch());
        assert_eq!(out, run_ok(&full_tree(), &full_patch()));
    }

    #[test]
    fn nesting_depth_bounded() {
        let deep = |depth: usize| {
            let mut raw = Raw::default();
            raw.begin("");
            for i in 1..depth {
                raw.begin(&format!("n{i}"));
            }
            for _ in 0..depth {
                raw.end();
            }
            raw.blob(&[])
        };
        run_ok(&deep(MAX_DEPTH), &full_patch());
        assert_eq!(run(&deep(MAX_DEPTH + 1), &full_patch()), Err(FdtError::BadStructure));
        assert_eq!(run(&deep(1000), &full_patch()), Err(FdtError::BadStructure));
    }

    #[test]
    fn bad_magic() {
        let mut blob = full_tree();
        blob[0] ^= 1;
        assert_eq!(check(&blob), Err(FdtError::BadMagic));
        assert_eq!(run(&blob, &full_patch()), Err(FdtError::BadMagic));
        assert_eq!(check(&[0; 64]), Err(FdtError::BadMagic));
        assert_eq!(check(&[]), Err(FdtError::Truncated));
    }

    #[test]
    fn bad_version() {
        let mut blob = full_tree();
        set_u32(&mut blob, hdr::VERSION, 15);
        assert_eq!(check(&blob), Err(FdtError::BadVersion));
        let mut blob = full_tree();
        set_u32(&mut blob, hdr::LAST_COMP_VERSION, 18);
        assert_eq!(run(&blob, &full_patch()), Err(FdtError::BadVersion));
    }

    #[test]
    fn blocks_outside_blob_rejected() {
        let base = full_tree();
        let len = base.len() as u32;
        for (field, value) in [
            (hdr::TOTALSIZE, len + 1),
            (hdr::TOTALSIZE, 39),
            (hdr::OFF_DT_STRUCT, len),
            (hdr::OFF_DT_STRUCT, u32::MAX),
            (hdr::SIZE_DT_STRUCT, len),
            (hdr::SIZE_DT_STRUCT, u32::MAX),
            (hdr::OFF_DT_STRINGS, len - 1),
            (hdr::SIZE_DT_STRINGS, u32::MAX),
            (hdr::OFF_MEM_RSVMAP, len - 8),
            (hdr::OFF_MEM_RSVMAP, u32::MAX - 3),
        ] {
            let mut blob = base.clone();
            set_u32(&mut blob, field, value);
            assert_eq!(check(&blob), Err(FdtError::Truncated), "{field} {value}");
            assert_eq!(run(&blob, &full_patch()), Err(FdtError::Truncated));
        }
        // A reservation block without its terminating entry.
        let mut blob = base.clone();
        let n = blob.len();
        set_u32(&mut blob, hdr::OFF_MEM_RSVMAP, (n - 32) as u32);
        blob[n - 32..].fill(0xff);
        assert_eq!(check(&blob), Err(FdtError::Truncated));
    }

    #[test]
    fn bad_structure_rejected() {
        let p = full_patch();
        // Bad token.
        let mut raw = Raw::default();
        raw.begin("").word(7).end();
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadStructure));
        // Unbalanced: missing end.
        let mut raw = Raw::default();
        raw.begin("").begin("a").end();
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadStructure));
        // Unbalanced: extra end.
        let mut raw = Raw::default();
        raw.begin("").end().end();
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadStructure));
        // Two roots.
        let mut raw = Raw::default();
        raw.begin("").end().begin("").end();
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadStructure));
        // No root.
        assert_eq!(run(&Raw::default().blob(&[]), &p), Err(FdtError::BadStructure));
        // Property outside any node.
        let mut raw = Raw::default();
        raw.prop("x", &[]).begin("").end();
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadStructure));
        // Name offset past the strings block.
        let mut raw = Raw::default();
        raw.begin("").word(FDT_PROP).word(0).word(1000).end();
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadStructure));
        // Name offset into a string without NUL.
        let mut raw = Raw::default();
        raw.begin("").word(FDT_PROP).word(0).word(0).end();
        raw.strings.extend_from_slice(b"abc");
        assert_eq!(run(&raw.blob(&[]), &p), Err(FdtError::BadStructure));
        // Property length past the structure block.
        let mut raw = Raw::default();
        raw.begin("").prop("x", &[]).end();
        let mut blob = raw.blob(&[]);
        let off = u32_at(&blob, hdr::OFF_DT_STRUCT) as usize;
        set_u32(&mut blob, off + 12, 0x100);
        assert_eq!(run(&blob, &p), Err(FdtError::BadStructure));
        set_u32(&mut blob, off + 12, u32::MAX);
        assert_eq!(run(&blob, &p), Err(FdtError::BadStructure));
        // Missing FDT_END: structure block cut short.
        let mut blob = full_tree();
        let size = u32_at(&blob, hdr::SIZE_DT_STRUCT);
        set_u32(&mut blob, hdr::SIZE_DT_STRUCT, size - 4);
        assert_eq!(run(&blob, &p), Err(FdtError::BadStructure));
        // Node name without NUL before the block ends.
        let mut raw = Raw::default();
        raw.word(FDT_BEGIN_NODE).word(0x6161_6161);
        let mut blob = raw.blob(&[]);
        let size = u32_at(&blob, hdr::SIZE_DT_STRUCT);
        set_u32(&mut blob, hdr::SIZE_DT_STRUCT, size - 4);
        assert_eq!(run(&blob, &p), Err(FdtError::BadStructure));
    }

    #[test]
    fn every_prefix_fails_cleanly() {
        let blob = full_tree();
        let p = full_patch();
        let mut out = vec![0u8; blob.len() + 4096];
        for len in 0..blob.len() {
            let prefix = &blob[..len];
            assert!(patch(prefix, &mut out, &p).is_err(), "{len}");
            assert!(check(prefix).is_err());
            // Also with the header claiming the prefix is the whole blob.
            if len >= 8 {
                let mut cut = prefix.to_vec();
                set_u32(&mut cut, hdr::TOTALSIZE, len as u32);
                let _ = patch(&cut, &mut out, &p);
                let _ = check(&cut);
            }
        }
        assert!(patch(&blob, &mut out, &p).is_ok());
    }

    #[test]
    fn every_short_output_is_too_small() {
        let p = full_patch();
        for blob in [full_tree(), build(None, &[(1, 1)], |_| {})] {
            let need = run_ok(&blob, &p).len();
            let mut out = vec![0u8; need];
            for len in 0..need {
                assert_eq!(
                    patch(&blob, &mut out[..len], &p),
                    Err(FdtError::OutputTooSmall),
                    "{len}"
                );
            }
            assert_eq!(patch(&blob, &mut out, &p), Ok(need));
        }
    }

    /// The shared seeded test PRNG (docs/dependencies.md).
    use fastrand::Rng;

    #[test]
    fn random_mutations_never_panic() {
        let bases = [
            full_tree(),
            build(Some((1, 1)), &[], |w| {
                memory_node(w, "memory", &reg1(0x4000_0000, 0x1000), false);
            }),
        ];
        let patches = [full_patch(), Patch::default()];
        let mut rng = Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        let mut out = vec![0u8; 8192];
        let mut again = vec![0u8; 8192];
        let mut accepted = 0;
        for i in 0..20_000 {
            let mut blob = bases[i % 2].clone();
            match rng.usize(..4) {
                0 => {
                    for _ in 0..1 + rng.usize(..4) {
                        let bit = rng.usize(..blob.len() * 8);
                        blob[bit / 8] ^= 1 << (bit % 8);
                    }
                }
                1 => {
                    // A header field set to a nearby or random value.
                    let field = 4 * (1 + rng.usize(..9));
                    let old = u32_at(&blob, field);
                    let new = match rng.usize(..3) {
                        0 => old.wrapping_add(rng.usize(..64) as u32).wrapping_sub(32),
                        1 => rng.u32(..),
                        _ => rng.usize(..blob.len() + 8) as u32,
                    };
                    set_u32(&mut blob, field, new);
                }
                2 => {
                    // A structure word set to a small value (token or length).
                    let off = u32_at(&blob, hdr::OFF_DT_STRUCT) as usize;
                    let size = u32_at(&blob, hdr::SIZE_DT_STRUCT) as usize;
                    let at = off + 4 * rng.usize(..size / 4);
                    set_u32(&mut blob, at, rng.usize(..16) as u32);
                }
                _ => {
                    let at = rng.usize(..blob.len());
                    blob[at] = rng.u8(..);
                }
            }
            let p = &patches[rng.usize(..2)];
            let out_len = if rng.usize(..8) == 0 { rng.usize(..out.len()) } else { out.len() };
            let _ = check(&blob);
            if let Ok(n) = patch(&blob, &mut out[..out_len], p) {
                accepted += 1;
                let new = &out[..n];
                assert_eq!(check(new), Ok(n));
                // Our output is itself a valid input.
                assert!(patch(new, &mut again, p).is_ok(), "iteration {i}");
            }
        }
        println!("{accepted} of 20000 mutated blobs accepted");
        assert!(accepted > 1000, "only {accepted} mutations accepted");
    }

    #[test]
    fn errors_display() {
        let all = [
            FdtError::BadMagic,
            FdtError::Truncated,
            FdtError::BadVersion,
            FdtError::BadStructure,
            FdtError::OutputTooSmall,
            FdtError::BadCells,
        ];
        let msgs: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), all.len());
        assert!(msgs.iter().all(|m| !m.is_empty()));
    }

    #[test]
    fn hex_names() {
        let mut d = [0u8; 16];
        for (v, s) in [
            (0u64, "0"),
            (0x4000_0000, "40000000"),
            (0xf, "f"),
            (0x10, "10"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            let n = hex(v, &mut d);
            assert_eq!(&d[..n], s.as_bytes());
        }
    }

    #[test]
    fn dtc_accepts_output() {
        let dtc = std::path::Path::new("/usr/bin/dtc");
        if !dtc.exists() {
            println!("note: /usr/bin/dtc not installed; skipping dtc check");
            return;
        }
        let bare = build(None, &[], |_| {});
        for (i, input) in [full_tree(), bare].iter().enumerate() {
            let out = run_ok(input, &full_patch());
            let name = format!("libvmm-fdt-test-{}-{i}.dtb", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, &out).unwrap();
            let res = std::process::Command::new(dtc)
                .args(["-I", "dtb", "-O", "dts", "-o", "-"])
                .arg(&path)
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&path);
            let dts = String::from_utf8_lossy(&res.stdout);
            println!("{dts}");
            let err = String::from_utf8_lossy(&res.stderr);
            assert!(res.status.success(), "dtc failed: {err}");
            assert!(dts.contains("bootargs = \"console=hvc0 earlycon\";"), "{dts}");
            assert!(dts.contains("linux,initrd-start = <"), "{dts}");
            assert!(dts.contains("rng-seed = <"), "{dts}");
            assert!(dts.contains("memory@40000000 {"), "{dts}");
            assert!(dts.contains("device_type = \"memory\";"), "{dts}");
            assert!(!dts.contains("memory@80000000"), "{dts}");
            assert_eq!(dts.contains("/memreserve/"), i == 0, "{dts}");
        }
    }
}
