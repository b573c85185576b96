//! Writes MBR and GPT tables into disk images, for tests and fuzz seeds
//! (feature `test-utils`). Panics if the image is too short for the table.

use super::{crc32, SECTOR_SIZE};

/// The "Linux filesystem data" type GUID 0FC63DAF-8483-4772-8E79-3D69D8477DE4,
/// as GPT stores it (the first three fields little-endian).
pub const LINUX_FS: [u8; 16] = [
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
];

/// Writes an MBR: slot `i` of `slots` is `(type, first LBA, sectors)`.
pub fn mbr(disk: &mut [u8], slots: &[(u8, u32, u32)]) {
    disk[..SECTOR_SIZE].fill(0);
    for (i, &(kind, first, sectors)) in slots.iter().take(4).enumerate() {
        let e = &mut disk[446 + 16 * i..446 + 16 * (i + 1)];
        e[4] = kind;
        e[8..12].copy_from_slice(&first.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
    }
    disk[510] = 0x55;
    disk[511] = 0xaa;
}

/// The layout of a GPT to write.
#[derive(Debug, Clone, Copy)]
pub struct Gpt {
    /// First LBA of the entry array.
    pub entries_lba: u64,
    /// Number of entries.
    pub entries: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// First usable LBA.
    pub first_usable: u64,
    /// Last usable LBA.
    pub last_usable: u64,
}

impl Gpt {
    /// What partitioning tools write on a disk of `disk_sectors`: 128
    /// entries of 128 bytes at LBA 2, usable LBAs 34 to the end less 34.
    pub fn standard(disk_sectors: u64) -> Self {
        Gpt {
            entries_lba: 2,
            entries: 128,
            entry_size: 128,
            first_usable: 34,
            last_usable: disk_sectors - 34,
        }
    }
}

/// Writes a protective MBR, the primary GPT header and its entry array:
/// entry `i` is `parts[i]`, `(first LBA, last LBA)` of a Linux partition,
/// or unused (`None`).
pub fn gpt(disk: &mut [u8], g: &Gpt, parts: &[Option<(u64, u64)>]) {
    mbr(disk, &[(0xee, 1, u32::MAX)]);
    let h = &mut disk[SECTOR_SIZE..2 * SECTOR_SIZE];
    h.fill(0);
    h[..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&1u64.to_le_bytes());
    h[32..40].copy_from_slice(&(g.last_usable + 33).to_le_bytes());
    h[40..48].copy_from_slice(&g.first_usable.to_le_bytes());
    h[48..56].copy_from_slice(&g.last_usable.to_le_bytes());
    h[56..72].copy_from_slice(b"disk-guid-rust!!");
    h[72..80].copy_from_slice(&g.entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&g.entries.to_le_bytes());
    h[84..88].copy_from_slice(&g.entry_size.to_le_bytes());
    let at = g.entries_lba as usize * SECTOR_SIZE;
    let size = g.entry_size as usize;
    let array = &mut disk[at..at + g.entries as usize * size];
    array.fill(0);
    for (i, p) in parts.iter().enumerate() {
        let Some((first, last)) = *p else { continue };
        let e = &mut array[i * size..(i + 1) * size];
        e[..16].copy_from_slice(&LINUX_FS);
        e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
    }
    seal(disk);
}

/// Recomputes the GPT header's two CRCs from its fields (after a test
/// changed a field and wants only that change to count).
pub fn seal(disk: &mut [u8]) {
    let h = &disk[SECTOR_SIZE..2 * SECTOR_SIZE];
    let field = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
    let lba = u64::from_le_bytes(h[72..80].try_into().unwrap()) as usize;
    let (n, size, header_size) = (field(80) as usize, field(84) as usize, field(12) as usize);
    // An array that does not fit the image (a test's bad count) gets the CRC of what does.
    let at = (lba * SECTOR_SIZE).min(disk.len());
    let crc = crc32(&disk[at..at.saturating_add(n * size).min(disk.len())]);
    let h = &mut disk[SECTOR_SIZE..2 * SECTOR_SIZE];
    h[88..92].copy_from_slice(&crc.to_le_bytes());
    h[16..20].fill(0);
    let crc = crc32(&h[..header_size]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
}
