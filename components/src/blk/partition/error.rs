//! Why a partition table, or one partition of it, cannot be used.

use super::MAX_PARTITIONS;
use core::fmt;

/// Why a table, or one partition of it, cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The disk's logical sectors are not 512 bytes (the size it reports).
    SectorSize(u16),
    /// The buffer for the table is smaller than one 4 KiB block.
    BufferTooSmall(usize),
    /// A block of the table could not be read.
    ReadFailed {
        /// First block of the read.
        block: u64,
    },
    /// Sector 0 does not end in 0x55 0xAA: no partition table (a blank or
    /// unpartitioned disk).
    NoMbrSignature([u8; 2]),
    /// An MBR slot's boot indicator is neither 0x00 nor 0x80: sector 0 is
    /// not an MBR (a file system's boot sector?).
    BadBootIndicator {
        /// Slot, from 1.
        slot: u8,
        /// The byte found.
        value: u8,
    },
    /// An MBR partition starts at LBA 0, on the MBR itself.
    OnTheMbr(u32),
    /// A partition ends past the end of the disk.
    PastDiskEnd {
        /// Partition number.
        number: u32,
        /// Its end (exclusive LBA).
        end: u64,
        /// Sectors on the disk.
        disk: u64,
    },
    /// Two partitions share sectors.
    Overlap(u32, u32),
    /// Protective MBR, but LBA 1 does not start with "EFI PART".
    GptSignature,
    /// A GPT revision other than 1.x.
    GptRevision(u32),
    /// A GPT header size outside 92..=512.
    GptHeaderSize(u32),
    /// The GPT header's CRC32 does not match its bytes.
    GptHeaderCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the header's bytes.
        computed: u32,
    },
    /// The primary GPT header does not say it is at LBA 1.
    GptMyLba(u64),
    /// The usable area is empty or ends past the disk.
    GptUsableArea {
        /// First usable LBA.
        first: u64,
        /// Last usable LBA.
        last: u64,
        /// Sectors on the disk.
        disk: u64,
    },
    /// An entry size under 128 or not a multiple of 8.
    GptEntrySize(u32),
    /// The entry array is not between the header and the usable area (or
    /// after it), inside the disk.
    GptEntriesPlace {
        /// First LBA of the array.
        lba: u64,
        /// Its size in bytes.
        bytes: u64,
    },
    /// The entry array does not fit the buffer.
    GptEntriesTooBig {
        /// Number of entries.
        entries: u32,
        /// Bytes per entry.
        entry_size: u32,
        /// Bytes of buffer.
        buffer: usize,
    },
    /// The entry array's CRC32 does not match its bytes.
    GptEntriesCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the array's bytes.
        computed: u32,
    },
    /// A used GPT entry ends before it starts or lies outside the usable area.
    GptEntryRange {
        /// Partition number.
        number: u32,
        /// Its first LBA.
        first: u64,
        /// Its last LBA (inclusive).
        last: u64,
    },
    /// More than [`MAX_PARTITIONS`] used entries.
    TooManyPartitions,
    /// No partition with that number in the table.
    NoSuchPartition(u32),
    /// The partition is an MBR extended partition (its type).
    Extended {
        /// Partition number.
        number: u32,
        /// Its MBR type.
        kind: u8,
    },
    /// The partition does not start and end on a 4 KiB boundary.
    Unaligned {
        /// Partition number.
        number: u32,
        /// Its first LBA.
        first: u64,
        /// Its length in sectors.
        sectors: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            SectorSize(s) => write!(
                f,
                "the disk has {s}-byte sectors; partition tables are only read with 512-byte \
                 sectors"
            ),
            BufferTooSmall(0) => f.write_str("no buffer for the partition table is mapped"),
            BufferTooSmall(n) => {
                write!(f, "the partition-table buffer has {n} bytes; it needs at least 4096")
            }
            ReadFailed { block } => {
                write!(f, "reading block {block} of the partition table failed")
            }
            NoMbrSignature([a, b]) => {
                write!(f, "no partition table: sector 0 ends in {a:#04x} {b:#04x}, not 0x55 0xaa")
            }
            BadBootIndicator { slot, value } => write!(
                f,
                "sector 0 is not an MBR: slot {slot} has boot indicator {value:#04x} (0x00 or \
                 0x80 expected)"
            ),
            OnTheMbr(n) => write!(f, "MBR partition {n} starts at LBA 0, on the MBR itself"),
            PastDiskEnd { number, end, disk } => {
                write!(f, "partition {number} ends at LBA {end}, past the disk's {disk} sectors")
            }
            Overlap(a, b) => write!(f, "partitions {a} and {b} overlap"),
            GptSignature => {
                f.write_str("protective MBR, but no GPT header (\"EFI PART\") at LBA 1")
            }
            GptRevision(r) => {
                write!(f, "GPT revision {:#x}.{:#x} is not 1.x", r >> 16, r & 0xffff)
            }
            GptHeaderSize(s) => write!(f, "GPT header size {s} is outside 92..=512"),
            GptHeaderCrc { stored, computed } => {
                write!(f, "GPT header CRC32 is {stored:#010x}, its bytes give {computed:#010x}")
            }
            GptMyLba(l) => write!(f, "the primary GPT header says it is at LBA {l}, not 1"),
            GptUsableArea { first, last, disk } => {
                write!(f, "GPT usable LBAs {first}..={last} do not fit a disk of {disk} sectors")
            }
            GptEntrySize(s) => {
                write!(f, "GPT entry size {s} is under 128 or not a multiple of 8")
            }
            GptEntriesPlace { lba, bytes } => write!(
                f,
                "the GPT entry array ({bytes} bytes at LBA {lba}) is not outside the usable \
                 area and inside the disk"
            ),
            GptEntriesTooBig { entries, entry_size, buffer } => write!(
                f,
                "the GPT entry array ({entries} entries of {entry_size} bytes) does not fit \
                 the {buffer}-byte buffer"
            ),
            GptEntriesCrc { stored, computed } => write!(
                f,
                "GPT entry array CRC32 is {stored:#010x}, its bytes give {computed:#010x}"
            ),
            GptEntryRange { number, first, last } => write!(
                f,
                "GPT partition {number} (LBAs {first}..={last}) is not inside the usable area"
            ),
            TooManyPartitions => write!(f, "more than {MAX_PARTITIONS} partitions"),
            NoSuchPartition(n) => write!(f, "the table has no partition {n}"),
            Extended { number, kind } => write!(
                f,
                "partition {number} is an MBR extended partition (type {kind:#04x}); logical \
                 partitions are not supported"
            ),
            Unaligned { number, first, sectors } => write!(
                f,
                "partition {number} (LBA {first}, {sectors} sectors) does not start and end on \
                 a 4 KiB boundary (multiples of 8 sectors)"
            ),
        }
    }
}
