//! Target `partition_table`: the block virtualiser's MBR/GPT reader
//! (`sddf_components::blk::partition::read_table`) on arbitrary disks.
//!
//! Input: the disk's size in 4 KiB blocks (8 bytes, little-endian), the table
//! buffer's size (1 byte `n`: 4096 + 240 n bytes, not always whole blocks),
//! then the disk's first bytes;
//! the rest of the disk reads as zeros, and a read past the disk's end fails
//! (as the driver answers it).
//!
//! Checks: no panic; reads stay inside the disk and the buffer; an accepted
//! table's partitions are non-empty, inside the disk (never over LBA 0),
//! numbered 1..=128 MBR-style or by GPT entry without repeats, do not
//! overlap, and their 4 KiB ranges (when given) cover exactly their sectors;
//! a refused table is left empty.

use sddf_components::blk::partition::{
    read_table, Entry, PartitionTable, Scheme, MAX_PARTITIONS, SECTORS_PER_BLOCK,
};

const BLOCK: usize = 4096;

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    let disk_blocks = u64::from_le_bytes(word);
    let buffer_len = BLOCK + 240 * usize::from(data.get(8).copied().unwrap_or(0));
    let image = data.get(9..).unwrap_or(&[]);
    let mut buffer = vec![0u8; buffer_len];
    let mut table = PartitionTable::new();
    let result = read_table(&mut table, disk_blocks, &mut buffer, |block, count, out| {
        assert!(count > 0 && usize::from(count) * BLOCK == out.len(), "read of {count} blocks");
        assert!(out.len() <= buffer_len, "read past the buffer");
        if block.checked_add(u64::from(count)).is_none_or(|end| end > disk_blocks) {
            return false;
        }
        out.fill(0);
        let at = usize::try_from(block).ok().and_then(|b| b.checked_mul(BLOCK));
        if let Some(src) = at.and_then(|at| image.get(at..)) {
            let n = src.len().min(out.len());
            out[..n].copy_from_slice(&src[..n]);
        }
        true
    });
    if result.is_err() {
        assert!(table.entries().is_empty(), "a refused table keeps entries");
        return;
    }
    let disk_sectors = disk_blocks.saturating_mul(SECTORS_PER_BLOCK);
    let entries = table.entries();
    assert!(entries.len() <= MAX_PARTITIONS);
    if table.scheme() == Scheme::Mbr {
        assert!(entries.len() <= 4 && entries.iter().all(|e| (1..=4).contains(&e.number)));
    }
    for (i, e) in entries.iter().enumerate() {
        check_entry(e, disk_sectors);
        for o in &entries[..i] {
            assert!(o.number < e.number, "numbers repeat or go backwards: {o:?} {e:?}");
            let apart = o.end_lba() <= e.first_lba || e.end_lba() <= o.first_lba;
            assert!(apart, "overlap: {o:?} {e:?}");
        }
    }
}

fn check_entry(e: &Entry, disk_sectors: u64) {
    assert!(e.sectors > 0 && e.first_lba > 0, "{e:?}");
    let end = e.first_lba.checked_add(e.sectors).expect("the end wraps");
    assert!(end <= disk_sectors, "{e:?} past the disk's {disk_sectors} sectors");
    if let Ok(r) = e.blocks() {
        assert_eq!(r.start * SECTORS_PER_BLOCK, e.first_lba, "{e:?}");
        assert_eq!(r.blocks * SECTORS_PER_BLOCK, e.sectors, "{e:?}");
        assert!(!e.is_extended());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run() {
        for seed in crate::seeds::partition_table() {
            run(&seed);
        }
    }

    #[test]
    fn seeds_hold_valid_tables() {
        // The seeds are worth their bytes only if the reader accepts them.
        for seed in crate::seeds::partition_table().iter().take(3) {
            let blocks = u64::from_le_bytes(seed[..8].try_into().unwrap());
            let mut table = PartitionTable::new();
            let mut buf = vec![0u8; 16 * BLOCK];
            read_table(&mut table, blocks, &mut buf, |block, count, out| {
                out.fill(0);
                let at = block as usize * BLOCK + 9;
                let n = (usize::from(count) * BLOCK).min(seed.len().saturating_sub(at));
                out[..n].copy_from_slice(&seed[at..at + n]);
                true
            })
            .unwrap();
            assert!(!table.entries().is_empty());
        }
    }
}
