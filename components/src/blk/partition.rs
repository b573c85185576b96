//! MBR and GPT partition tables, read the way the block virtualiser reads
//! them: block 0, then (GPT) the blocks of the partition entry array.
//!
//! Logical sectors are 512 bytes: LBA `n` is bytes `512 n .. 512 n + 512`
//! of the disk. A disk whose storage info gives another sector size is
//! refused ([`Error::SectorSize`]); a table written for 4096-byte sectors
//! on a disk that reports 512 has no GPT header at LBA 1 and reads as
//! [`Error::GptSignature`].
//!
//! - MBR (sector 0): signature 0x55 0xAA at byte 510, four primary entries
//!   of 16 bytes at byte 446 (boot indicator, type, first LBA, sectors).
//!   Type 0 is an empty slot; an entry of 0 sectors is empty too (Linux
//!   skips it). A type 0xEE entry is a protective MBR: the disk is GPT and
//!   the MBR's other entries are ignored. Extended partitions (types 0x05,
//!   0x0F, 0x85) are listed as such, but their chains of logical
//!   partitions are **not** followed, and an extended partition is never
//!   given to a client.
//! - GPT (UEFI 2.10 §5.3): the primary header at LBA 1 and its entry array.
//!   The header's signature, revision (1.x), size (92..=512), CRC32,
//!   `my_lba` (1), usable area (inside the disk), entry size (128 or more,
//!   a multiple of 8) and array position (before or after the usable area,
//!   inside the disk) are checked, then the array's CRC32. An entry whose
//!   type GUID is all zero is unused; a used entry must lie in the usable
//!   area. The backup header at the disk's end is not read: a bad primary
//!   table is an error, not a fallback.
//!
//! Partition numbers are Linux's: MBR slot `k` and GPT entry `k` (from 1)
//! are partition `k` (`/dev/vda<k>`), whether or not earlier slots are used.
//! A table whose partitions overlap or end past the disk is refused whole;
//! a partition that does not start and end on a 4 KiB boundary is refused
//! only when asked for in 4 KiB blocks ([`PartitionTable::blocks`]).

use core::fmt;
use sddf_bindings::blk::BLK_TRANSFER_SIZE;

mod crc;
mod error;
#[cfg(any(test, feature = "test-utils"))]
pub mod image;

pub use crc::{crc32, Crc32};
pub use error::Error;

/// Bytes per logical sector: the only size supported.
pub const SECTOR_SIZE: usize = 512;
/// Sectors per sDDF block ([`BLK_TRANSFER_SIZE`]).
pub const SECTORS_PER_BLOCK: u64 = (BLK_TRANSFER_SIZE / SECTOR_SIZE) as u64;
/// Bytes of block 0 that the first step reads: the MBR (LBA 0) and the GPT
/// header (LBA 1).
pub const HEAD_BYTES: usize = 2 * SECTOR_SIZE;
/// Used partitions kept at most; a table with more is refused.
pub const MAX_PARTITIONS: usize = 128;

const MBR_ENTRIES: usize = 446;
const MBR_SIGNATURE: usize = 510;
const MBR_PROTECTIVE: u8 = 0xee;
const MBR_EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const GPT_HEADER_MIN: u32 = 92;
const GPT_ENTRY_MIN: u32 = 128;

/// Which kind of table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// An MBR's primary entries.
    Mbr,
    /// A GPT behind a protective MBR.
    Gpt,
}

/// A partition's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An MBR partition type byte.
    Mbr(u8),
    /// A GPT partition type GUID, as stored (mixed-endian).
    Gpt([u8; 16]),
}

impl fmt::Display for Kind {
    /// `type 0x83`, or the GUID as text (its first three fields are stored
    /// little-endian): `type 0FC63DAF-8483-4772-8E79-3D69D8477DE4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Mbr(t) => write!(f, "type {t:#04x}"),
            Kind::Gpt(g) => {
                f.write_str("type ")?;
                let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
                for (k, &i) in order.iter().enumerate() {
                    if matches!(k, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{:02X}", g[i])?;
                }
                Ok(())
            }
        }
    }
}

/// One used entry of the table, in 512-byte sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Partition number, from 1 (MBR slot or GPT entry index + 1).
    pub number: u32,
    /// First sector.
    pub first_lba: u64,
    /// Length in sectors (not 0).
    pub sectors: u64,
    /// Partition type.
    pub kind: Kind,
}

impl Entry {
    const EMPTY: Entry = Entry { number: 0, first_lba: 0, sectors: 0, kind: Kind::Mbr(0) };

    /// The sector after the last.
    pub fn end_lba(&self) -> u64 {
        self.first_lba + self.sectors
    }

    /// Whether this is an MBR extended partition (a container of logical
    /// partitions, which are not read).
    pub fn is_extended(&self) -> bool {
        matches!(self.kind, Kind::Mbr(t) if MBR_EXTENDED.contains(&t))
    }

    /// The partition in 4 KiB blocks: it must start and end on a block
    /// boundary and not be extended.
    pub fn blocks(&self) -> Result<BlockRange, Error> {
        if let Kind::Mbr(kind) = self.kind {
            if self.is_extended() {
                return Err(Error::Extended { number: self.number, kind });
            }
        }
        if self.first_lba % SECTORS_PER_BLOCK != 0 || self.sectors % SECTORS_PER_BLOCK != 0 {
            let (first, sectors) = (self.first_lba, self.sectors);
            return Err(Error::Unaligned { number: self.number, first, sectors });
        }
        Ok(BlockRange {
            start: self.first_lba / SECTORS_PER_BLOCK,
            blocks: self.sectors / SECTORS_PER_BLOCK,
        })
    }

    fn overlaps(&self, other: &Entry) -> bool {
        self.first_lba < other.end_lba() && other.first_lba < self.end_lba()
    }
}

/// A range of 4 KiB blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// First block.
    pub start: u64,
    /// Number of blocks.
    pub blocks: u64,
}

/// The used partitions of a table, in table order.
///
/// About 5 KiB: it is filled in place ([`PartitionTable::read_head`],
/// [`PartitionTable::read_gpt_entries`]) rather than returned by value.
/// After an error it is left empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    scheme: Scheme,
    entries: [Entry; MAX_PARTITIONS],
    len: usize,
}

impl Default for PartitionTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionTable {
    /// An empty table.
    pub const fn new() -> Self {
        PartitionTable { scheme: Scheme::Mbr, entries: [Entry::EMPTY; MAX_PARTITIONS], len: 0 }
    }

    /// Reads LBA 0 and 1 (the first [`HEAD_BYTES`] of block 0) of a disk of
    /// `disk_sectors` sectors. `Ok(None)`: an MBR, read into `self`;
    /// `Ok(Some(header))`: a GPT, whose entries are to be read next with
    /// [`PartitionTable::read_gpt_entries`].
    pub fn read_head(
        &mut self,
        head: &[u8; HEAD_BYTES],
        disk_sectors: u64,
    ) -> Result<Option<GptHeader>, Error> {
        self.len = 0;
        let r = self.parse_head(head, disk_sectors);
        self.clear_on_error(r)
    }

    /// Reads a GPT's entry array through `read(offset, bytes)` (offsets from
    /// the array's start; `false`: those bytes are not there), each byte once.
    pub fn read_gpt_entries(
        &mut self,
        header: &GptHeader,
        disk_sectors: u64,
        read: impl FnMut(usize, &mut [u8]) -> bool,
    ) -> Result<(), Error> {
        self.len = 0;
        self.scheme = Scheme::Gpt;
        let r = self.parse_entries(header, disk_sectors, read);
        self.clear_on_error(r)
    }

    fn clear_on_error<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        if r.is_err() {
            self.len = 0;
        }
        r
    }

    fn push(&mut self, e: Entry) -> Result<(), Error> {
        let slot = self.entries.get_mut(self.len).ok_or(Error::TooManyPartitions)?;
        *slot = e;
        self.len += 1;
        Ok(())
    }

    /// MBR or GPT.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The used partitions, by number.
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len]
    }

    /// Partition `number` (from 1), if used.
    pub fn get(&self, number: u32) -> Option<&Entry> {
        self.entries().iter().find(|e| e.number == number)
    }

    /// Partition `number` in 4 KiB blocks ([`Entry::blocks`]).
    pub fn blocks(&self, number: u32) -> Result<BlockRange, Error> {
        self.get(number).ok_or(Error::NoSuchPartition(number))?.blocks()
    }

    /// Refuses entries past the disk's end or overlapping each other.
    fn check(&self, disk_sectors: u64) -> Result<(), Error> {
        for (i, e) in self.entries().iter().enumerate() {
            if e.end_lba() > disk_sectors {
                let (number, end) = (e.number, e.end_lba());
                return Err(Error::PastDiskEnd { number, end, disk: disk_sectors });
            }
            if let Some(o) = self.entries()[..i].iter().find(|o| o.overlaps(e)) {
                return Err(Error::Overlap(o.number, e.number));
            }
        }
        Ok(())
    }

    fn parse_head(
        &mut self,
        head: &[u8; HEAD_BYTES],
        disk_sectors: u64,
    ) -> Result<Option<GptHeader>, Error> {
        let mbr = &head[..SECTOR_SIZE];
        let signature = [mbr[MBR_SIGNATURE], mbr[MBR_SIGNATURE + 1]];
        if signature != [0x55, 0xaa] {
            return Err(Error::NoMbrSignature(signature));
        }
        let slots = || (0..4).map(|i| &mbr[MBR_ENTRIES + 16 * i..MBR_ENTRIES + 16 * (i + 1)]);
        if let Some((i, e)) = slots().enumerate().find(|(_, e)| e[0] & 0x7f != 0) {
            return Err(Error::BadBootIndicator { slot: i as u8 + 1, value: e[0] });
        }
        if slots().any(|e| e[4] == MBR_PROTECTIVE) {
            return parse_gpt_header(&head[SECTOR_SIZE..], disk_sectors).map(Some);
        }
        self.scheme = Scheme::Mbr;
        for (i, e) in slots().enumerate() {
            let (kind, first_lba, sectors) = (e[4], le32(e, 8), le32(e, 12));
            if kind == 0 || sectors == 0 {
                continue;
            }
            let number = i as u32 + 1;
            if first_lba == 0 {
                return Err(Error::OnTheMbr(number));
            }
            let (first_lba, sectors) = (u64::from(first_lba), u64::from(sectors));
            self.push(Entry { number, first_lba, sectors, kind: Kind::Mbr(kind) })?;
        }
        self.check(disk_sectors).map(|()| None)
    }

    fn parse_entries(
        &mut self,
        h: &GptHeader,
        disk_sectors: u64,
        mut read: impl FnMut(usize, &mut [u8]) -> bool,
    ) -> Result<(), Error> {
        let mut crc = Crc32::new();
        let mut first_error = None;
        let mut chunk = [0u8; GPT_ENTRY_MIN as usize];
        let size = h.entry_size as usize;
        let failed = Error::ReadFailed { block: h.entries_lba / SECTORS_PER_BLOCK };
        for i in 0..h.entries as usize {
            let at = i * size; // the array fits a buffer: no overflow
            if !read(at, &mut chunk) {
                return Err(failed);
            }
            crc.update(&chunk);
            if let Err(e) = h.entry(i as u32 + 1, &chunk).and_then(|e| match e {
                Some(e) => self.push(e),
                None => Ok(()),
            }) {
                first_error.get_or_insert(e);
            }
            let mut done = chunk.len();
            while done < size {
                let n = (size - done).min(chunk.len());
                if !read(at + done, &mut chunk[..n]) {
                    return Err(failed);
                }
                crc.update(&chunk[..n]);
                done += n;
            }
        }
        let computed = crc.finish();
        if computed != h.entries_crc {
            return Err(Error::GptEntriesCrc { stored: h.entries_crc, computed });
        }
        match first_error {
            Some(e) => Err(e),
            None => self.check(disk_sectors),
        }
    }
}

/// The fields of a checked primary GPT header that reading the entries needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptHeader {
    /// First usable LBA.
    pub first_usable: u64,
    /// Last usable LBA (inclusive).
    pub last_usable: u64,
    /// First LBA of the entry array.
    pub entries_lba: u64,
    /// Number of entries.
    pub entries: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// CRC32 of the entry array.
    pub entries_crc: u32,
}

/// A read of whole blocks into the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRead {
    /// First block.
    pub block: u64,
    /// Number of blocks.
    pub count: u16,
    /// Where in the buffer the wanted bytes start.
    pub offset: usize,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | u64::from(le32(b, at + 4)) << 32
}

/// Checks that the disk's logical sector size is 512 (0: not reported,
/// taken as 512).
pub fn check_sector_size(sector_size: u16) -> Result<(), Error> {
    match sector_size {
        0 | 512 => Ok(()),
        s => Err(Error::SectorSize(s)),
    }
}

fn parse_gpt_header(h: &[u8], disk_sectors: u64) -> Result<GptHeader, Error> {
    if &h[..8] != GPT_SIGNATURE {
        return Err(Error::GptSignature);
    }
    let revision = le32(h, 8);
    if revision >> 16 != 1 {
        return Err(Error::GptRevision(revision));
    }
    let size = le32(h, 12);
    if !(GPT_HEADER_MIN..=SECTOR_SIZE as u32).contains(&size) {
        return Err(Error::GptHeaderSize(size));
    }
    let stored = le32(h, 16);
    let mut crc = Crc32::new();
    crc.update(&h[..16]);
    crc.update(&[0; 4]);
    crc.update(&h[20..size as usize]);
    let computed = crc.finish();
    if computed != stored {
        return Err(Error::GptHeaderCrc { stored, computed });
    }
    let my_lba = le64(h, 24);
    if my_lba != 1 {
        return Err(Error::GptMyLba(my_lba));
    }
    let (first, last) = (le64(h, 40), le64(h, 48));
    if first < 2 || first > last || last >= disk_sectors {
        return Err(Error::GptUsableArea { first, last, disk: disk_sectors });
    }
    let header = GptHeader {
        first_usable: first,
        last_usable: last,
        entries_lba: le64(h, 72),
        entries: le32(h, 80),
        entry_size: le32(h, 84),
        entries_crc: le32(h, 88),
    };
    if header.entry_size < GPT_ENTRY_MIN || header.entry_size % 8 != 0 {
        return Err(Error::GptEntrySize(header.entry_size));
    }
    let (lba, bytes) = (header.entries_lba, header.entries_bytes());
    let end = lba.checked_add(bytes.div_ceil(SECTOR_SIZE as u64));
    let placed = end.is_some_and(|end| {
        // Inside the disk, after the header, and [lba, end) misses [first, last].
        lba >= 2 && end <= disk_sectors && (end <= first || lba > last)
    });
    if !placed {
        return Err(Error::GptEntriesPlace { lba, bytes });
    }
    Ok(header)
}

impl GptHeader {
    /// Size of the entry array in bytes.
    pub fn entries_bytes(&self) -> u64 {
        u64::from(self.entries) * u64::from(self.entry_size)
    }

    /// The blocks to read so the whole entry array lands in a buffer of
    /// `buffer` bytes (whole blocks, all inside the buffer).
    pub fn entries_read(&self, buffer: usize) -> Result<BlockRead, Error> {
        let start = self.entries_lba * SECTOR_SIZE as u64; // < disk end: no overflow
        let block = start / BLK_TRANSFER_SIZE as u64;
        let offset = (start % BLK_TRANSFER_SIZE as u64) as usize;
        let too_big =
            Error::GptEntriesTooBig { entries: self.entries, entry_size: self.entry_size, buffer };
        let bytes = usize::try_from(self.entries_bytes()).map_err(|_| too_big)?;
        // Whole blocks are read: all of them must fit.
        let span = offset.checked_add(bytes).ok_or(too_big)?;
        let count = span.div_ceil(BLK_TRANSFER_SIZE).max(1);
        if count.checked_mul(BLK_TRANSFER_SIZE).is_none_or(|read| read > buffer) {
            return Err(too_big);
        }
        let count = u16::try_from(count).map_err(|_| too_big)?;
        Ok(BlockRead { block, count, offset })
    }

    /// A used entry (`None`: unused), in the usable area.
    fn entry(&self, number: u32, e: &[u8]) -> Result<Option<Entry>, Error> {
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&e[..16]);
        if guid == [0; 16] {
            return Ok(None);
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if first > last || first < self.first_usable || last > self.last_usable {
            return Err(Error::GptEntryRange { number, first, last });
        }
        Ok(Some(Entry {
            number,
            first_lba: first,
            sectors: last - first + 1,
            kind: Kind::Gpt(guid),
        }))
    }
}

/// Reads a disk's table into `table` through `read_blocks(block, count,
/// buffer)` as the virtualiser does: block 0, then the GPT entry array's
/// blocks, each into the start of `buffer` (at least 4 KiB). The disk has
/// `disk_blocks` 4 KiB blocks.
pub fn read_table(
    table: &mut PartitionTable,
    disk_blocks: u64,
    buffer: &mut [u8],
    mut read_blocks: impl FnMut(u64, u16, &mut [u8]) -> bool,
) -> Result<(), Error> {
    table.len = 0;
    if buffer.len() < BLK_TRANSFER_SIZE {
        return Err(Error::BufferTooSmall(buffer.len()));
    }
    let disk_sectors = disk_blocks.saturating_mul(SECTORS_PER_BLOCK);
    if !read_blocks(0, 1, &mut buffer[..BLK_TRANSFER_SIZE]) {
        return Err(Error::ReadFailed { block: 0 });
    }
    let mut head = [0u8; HEAD_BYTES];
    head.copy_from_slice(&buffer[..HEAD_BYTES]);
    let Some(header) = table.read_head(&head, disk_sectors)? else { return Ok(()) };
    let r = header.entries_read(buffer.len())?;
    let bytes = usize::from(r.count) * BLK_TRANSFER_SIZE;
    if !read_blocks(r.block, r.count, &mut buffer[..bytes]) {
        return Err(Error::ReadFailed { block: r.block });
    }
    let array = &buffer[r.offset..];
    table.read_gpt_entries(&header, disk_sectors, |at, out| {
        array.get(at..at + out.len()).map(|src| out.copy_from_slice(src)).is_some()
    })
}

#[cfg(test)]
mod tests;
