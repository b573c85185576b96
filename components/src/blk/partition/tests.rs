//! Tables built by `image` and by util-linux's sfdisk (fixtures below),
//! read through `read_table` as the virtualiser reads them.

use super::image::{self, Gpt, LINUX_FS};
use super::*;
use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

const DISK: usize = 1 << 20; // 2048 sectors, 256 blocks
const SECTORS: u64 = (DISK / SECTOR_SIZE) as u64;

fn read_with(disk: &[u8], buffer: usize) -> Result<PartitionTable, Error> {
    let mut buf = vec![0u8; buffer];
    let mut table = PartitionTable::new();
    let blocks = (disk.len() / BLK_TRANSFER_SIZE) as u64;
    let r = read_table(&mut table, blocks, &mut buf, |block, count, out| {
        let at = block as usize * BLK_TRANSFER_SIZE;
        match disk.get(at..at + usize::from(count) * BLK_TRANSFER_SIZE) {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    });
    r.map(|()| table)
}

fn read(disk: &[u8]) -> Result<PartitionTable, Error> {
    read_with(disk, 64 * 1024)
}

fn numbers(t: &PartitionTable) -> Vec<u32> {
    t.entries().iter().map(|e| e.number).collect()
}

fn mbr(slots: &[(u8, u32, u32)]) -> Vec<u8> {
    let mut d = vec![0u8; DISK];
    image::mbr(&mut d, slots);
    d
}

fn gpt_with(g: &Gpt, parts: &[Option<(u64, u64)>]) -> Vec<u8> {
    let mut d = vec![0u8; DISK];
    image::gpt(&mut d, g, parts);
    d
}

fn gpt(parts: &[Option<(u64, u64)>]) -> Vec<u8> {
    gpt_with(&Gpt::standard(SECTORS), parts)
}

/// Applies `f` to the GPT header and re-seals its CRCs.
fn edit_header(d: &mut [u8], f: impl FnOnce(&mut [u8])) {
    f(&mut d[512..1024]);
    image::seal(d);
}

#[test]
fn crc32_matches_the_ieee_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    let mut c = Crc32::new();
    c.update(b"1234");
    c.update(b"56789");
    assert_eq!(c.finish(), 0xcbf4_3926);
}

#[test]
fn mbr_with_one_to_four_partitions() {
    let all = [(0x83, 64, 64), (0x83, 128, 256), (0x0c, 384, 8), (0x83, 392, 1656)];
    for n in 1..=4 {
        let t = read(&mbr(&all[..n])).unwrap();
        assert_eq!(t.scheme(), Scheme::Mbr);
        assert_eq!(numbers(&t), (1..=n as u32).collect::<Vec<_>>());
        for (e, &(kind, first, sectors)) in t.entries().iter().zip(&all) {
            assert_eq!(e.kind, Kind::Mbr(kind));
            assert_eq!((e.first_lba, e.sectors), (u64::from(first), u64::from(sectors)));
        }
    }
    let t = read(&mbr(&all)).unwrap();
    assert_eq!(t.blocks(2), Ok(BlockRange { start: 16, blocks: 32 }));
    assert_eq!(t.blocks(4), Ok(BlockRange { start: 49, blocks: 207 }));
}

#[test]
fn empty_mbr_slots_keep_their_numbers() {
    let t = read(&mbr(&[(0, 64, 64), (0x83, 128, 64), (0x83, 0, 0), (0x83, 256, 64)])).unwrap();
    assert_eq!(numbers(&t), [2, 4], "type 0 and 0 sectors are empty");
    assert_eq!(t.blocks(1), Err(Error::NoSuchPartition(1)));
    assert_eq!(t.blocks(3), Err(Error::NoSuchPartition(3)));
    assert_eq!(t.blocks(2), Ok(BlockRange { start: 16, blocks: 8 }));
    assert!(read(&mbr(&[])).unwrap().entries().is_empty(), "a signed, empty MBR");
}

#[test]
fn extended_partitions_are_listed_but_not_followed_or_given() {
    let t = read(&mbr(&[(0x83, 64, 64), (0x05, 128, 512), (0x0f, 640, 512)])).unwrap();
    assert_eq!(numbers(&t), [1, 2, 3]);
    assert!(t.get(2).unwrap().is_extended() && !t.get(1).unwrap().is_extended());
    assert_eq!(t.blocks(2), Err(Error::Extended { number: 2, kind: 0x05 }));
    assert_eq!(t.blocks(3), Err(Error::Extended { number: 3, kind: 0x0f }));
    assert!(t.blocks(3).unwrap_err().to_string().contains("logical partitions are not supported"));
}

#[test]
fn blank_disks_and_boot_sectors_are_not_tables() {
    let blank = vec![0u8; DISK];
    assert_eq!(read(&blank).err(), Some(Error::NoMbrSignature([0, 0])));
    let mut boot = mbr(&[(0x83, 64, 64)]);
    boot[446 + 16] = 0x3c; // slot 2's boot indicator: boot code there
    assert_eq!(read(&boot).err(), Some(Error::BadBootIndicator { slot: 2, value: 0x3c }));
    let mut active = mbr(&[(0x83, 64, 64)]);
    active[446] = 0x80;
    assert!(read(&active).is_ok(), "0x80 marks the active partition");
}

#[test]
fn bad_mbr_partitions_refuse_the_table() {
    assert_eq!(read(&mbr(&[(0x83, 0, 64)])).err(), Some(Error::OnTheMbr(1)));
    let past = mbr(&[(0x83, 64, 64), (0x83, 2000, 49)]);
    assert_eq!(read(&past).err(), Some(Error::PastDiskEnd { number: 2, end: 2049, disk: 2048 }));
    let huge = mbr(&[(0x83, u32::MAX, u32::MAX)]);
    assert!(matches!(read(&huge), Err(Error::PastDiskEnd { number: 1, .. })));
    let overlap = mbr(&[(0x83, 64, 64), (0x83, 256, 64), (0x83, 127, 8)]);
    assert_eq!(read(&overlap).err(), Some(Error::Overlap(1, 3)));
    assert!(read(&mbr(&[(0x83, 64, 64), (0x83, 128, 64)])).is_ok(), "touching is not overlapping");
}

#[test]
fn unaligned_partitions_are_refused_by_number() {
    // An old fdisk's first partition at sector 63, and one of 12 sectors.
    let t = read(&mbr(&[(0x83, 63, 1000), (0x83, 1064, 12)])).unwrap();
    assert_eq!(t.blocks(1), Err(Error::Unaligned { number: 1, first: 63, sectors: 1000 }));
    assert_eq!(t.blocks(2), Err(Error::Unaligned { number: 2, first: 1064, sectors: 12 }));
    let msg = t.blocks(2).unwrap_err().to_string();
    assert!(msg.contains("partition 2") && msg.contains("4 KiB boundary"), "{msg}");
}

#[test]
fn gpt_with_two_partitions_and_a_gap() {
    let t = read(&gpt(&[Some((64, 575)), None, Some((576, 1087))])).unwrap();
    assert_eq!(t.scheme(), Scheme::Gpt);
    assert_eq!(numbers(&t), [1, 3], "entry 2 is unused");
    assert_eq!(t.get(1).unwrap().kind, Kind::Gpt(LINUX_FS));
    let kind = t.get(1).unwrap().kind.to_string();
    assert_eq!(kind, "type 0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    assert_eq!(Kind::Mbr(0x83).to_string(), "type 0x83");
    assert_eq!(t.blocks(1), Ok(BlockRange { start: 8, blocks: 64 }));
    assert_eq!(t.blocks(3), Ok(BlockRange { start: 72, blocks: 64 }));
    assert_eq!(t.blocks(2), Err(Error::NoSuchPartition(2)));
}

#[test]
fn gpt_header_crc_and_fields_are_checked() {
    let good = gpt(&[Some((64, 575))]);
    let mut d = good.clone();
    d[512 + 60] ^= 1; // the disk GUID, under the header CRC
    assert!(matches!(read(&d), Err(Error::GptHeaderCrc { .. })));
    let mut d = good.clone();
    d[512] = b'X';
    assert_eq!(read(&d).err(), Some(Error::GptSignature));
    let cases: [(usize, u32, Error); 5] = [
        (8, 0x0002_0000, Error::GptRevision(0x0002_0000)),
        (12, 91, Error::GptHeaderSize(91)),
        (12, 513, Error::GptHeaderSize(513)),
        (84, 120, Error::GptEntrySize(120)),
        (84, 132, Error::GptEntrySize(132)),
    ];
    for (at, value, want) in cases {
        let mut d = good.clone();
        if at == 12 {
            d[512 + 12..512 + 16].copy_from_slice(&value.to_le_bytes()); // no re-seal: size first
        } else {
            edit_header(&mut d, |h| h[at..at + 4].copy_from_slice(&value.to_le_bytes()));
        }
        assert_eq!(read(&d).err(), Some(want));
    }
    let mut d = good.clone();
    edit_header(&mut d, |h| h[24..32].copy_from_slice(&2u64.to_le_bytes()));
    assert_eq!(read(&d).err(), Some(Error::GptMyLba(2)));
    let mut d = good;
    edit_header(&mut d, |h| h[8..12].copy_from_slice(&0x0001_0002u32.to_le_bytes()));
    assert!(read(&d).is_ok(), "revision 1.2 is still 1.x");
}

#[test]
fn gpt_entry_array_crc_is_checked() {
    let mut d = gpt(&[Some((64, 575)), Some((576, 1087))]);
    d[1024 + 128 + 60] ^= 0x20; // partition 2's name
    let err = read(&d).unwrap_err();
    assert!(matches!(err, Error::GptEntriesCrc { .. }), "{err:?}");
    assert!(err.to_string().contains("CRC32"));
}

#[test]
fn gpt_with_256_byte_entries() {
    let g = Gpt { entry_size: 256, first_usable: 66, ..Gpt::standard(SECTORS) };
    let mut d = gpt_with(&g, &[Some((2000, 2007)), Some((128, 255))]);
    d[1024 + 200] = 0xaa; // bytes past the first 128 of an entry count in the CRC
    image::seal(&mut d);
    let t = read(&d).unwrap();
    assert_eq!(t.blocks(1), Ok(BlockRange { start: 250, blocks: 1 }));
    assert_eq!(t.blocks(2), Ok(BlockRange { start: 16, blocks: 16 }));
    // 32 KiB + 1 KiB from block 0's start: not in a 32 KiB buffer.
    let small = read_with(&d, 32 * 1024).unwrap_err();
    let want = Error::GptEntriesTooBig { entries: 128, entry_size: 256, buffer: 32 * 1024 };
    assert_eq!(small, want);
}

#[test]
fn gpt_with_all_128_entries_used_and_one_too_many() {
    let parts: Vec<_> = (0..128u64).map(|i| Some((64 + 8 * i, 71 + 8 * i))).collect();
    let t = read(&gpt(&parts)).unwrap();
    assert_eq!(t.entries().len(), 128);
    assert_eq!(t.blocks(128), Ok(BlockRange { start: 8 + 127, blocks: 1 }));
    let g = Gpt { entries: 129, first_usable: 35, ..Gpt::standard(SECTORS) };
    let mut parts = parts;
    parts.push(Some((1088, 1095)));
    assert_eq!(read(&gpt_with(&g, &parts)).err(), Some(Error::TooManyPartitions));
}

#[test]
fn gpt_unaligned_partition_is_refused_by_number() {
    let t = read(&gpt(&[Some((64, 575)), Some((34, 63)), Some((580, 1000))])).unwrap();
    assert_eq!(t.blocks(2), Err(Error::Unaligned { number: 2, first: 34, sectors: 30 }));
    assert_eq!(t.blocks(3), Err(Error::Unaligned { number: 3, first: 580, sectors: 421 }));
    assert!(t.blocks(1).is_ok());
}

#[test]
fn gpt_overlapping_and_misplaced_partitions_refuse_the_table() {
    let overlap = gpt(&[Some((64, 575)), Some((576, 1087)), Some((1000, 1100))]);
    assert_eq!(read(&overlap).err(), Some(Error::Overlap(2, 3)));
    let backwards = gpt(&[Some((64, 575)), Some((700, 699))]);
    assert_eq!(
        read(&backwards).err(),
        Some(Error::GptEntryRange { number: 2, first: 700, last: 699 })
    );
    let on_header = gpt(&[Some((1, 63))]);
    assert_eq!(
        read(&on_header).err(),
        Some(Error::GptEntryRange { number: 1, first: 1, last: 63 })
    );
    let past_usable = gpt(&[Some((1024, 2047))]);
    assert_eq!(
        read(&past_usable).err(),
        Some(Error::GptEntryRange { number: 1, first: 1024, last: 2047 })
    );
}

#[test]
fn gpt_of_a_larger_disk_is_refused() {
    // Written for a 2 MiB disk, found on a 1 MiB one.
    let g = Gpt::standard(2 * SECTORS);
    let d = gpt_with(&g, &[Some((64, 575)), Some((2048, 4000))]);
    let want = Error::GptUsableArea { first: 34, last: 2 * SECTORS - 34, disk: SECTORS };
    assert_eq!(read(&d).err(), Some(want));
    assert!(want.to_string().contains("2048 sectors"));
}

#[test]
fn gpt_entry_array_must_fit_and_stay_out_of_the_usable_area() {
    let good = gpt(&[Some((64, 575))]);
    let mut d = good.clone();
    edit_header(&mut d, |h| h[72..80].copy_from_slice(&40u64.to_le_bytes()));
    assert_eq!(read(&d).err(), Some(Error::GptEntriesPlace { lba: 40, bytes: 16384 }));
    let mut d = good.clone();
    edit_header(&mut d, |h| h[72..80].copy_from_slice(&1u64.to_le_bytes()));
    assert_eq!(read(&d).err(), Some(Error::GptEntriesPlace { lba: 1, bytes: 16384 }));
    let mut d = good.clone();
    edit_header(&mut d, |h| h[80..84].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(matches!(read(&d), Err(Error::GptEntriesPlace { .. })), "past the disk");
    let mut d = good;
    edit_header(&mut d, |h| h[80..84].copy_from_slice(&1000u32.to_le_bytes()));
    d[512 + 40..512 + 48].copy_from_slice(&260u64.to_le_bytes()); // room for the array
    image::seal(&mut d);
    let want = Error::GptEntriesTooBig { entries: 1000, entry_size: 128, buffer: 64 * 1024 };
    assert_eq!(read(&d).err(), Some(want));
}

#[test]
fn entry_array_is_read_from_its_block() {
    let g = GptHeader {
        first_usable: 34,
        last_usable: 2014,
        entries_lba: 2,
        entries: 128,
        entry_size: 128,
        entries_crc: 0,
    };
    assert_eq!(g.entries_read(20 * 1024), Ok(BlockRead { block: 0, count: 5, offset: 1024 }));
    let odd = g.entries_read(20 * 1024 - 1).unwrap_err();
    assert!(matches!(odd, Error::GptEntriesTooBig { .. }), "17 KiB fit, 5 blocks do not");
    let far = GptHeader { entries_lba: 1981, entries: 4, ..g };
    assert_eq!(far.entries_read(4096), Ok(BlockRead { block: 247, count: 1, offset: 2560 }));
    let none = GptHeader { entries: 0, ..g };
    assert_eq!(none.entries_read(4096), Ok(BlockRead { block: 0, count: 1, offset: 1024 }));
}

#[test]
fn failed_reads_and_small_buffers_and_sector_sizes() {
    let d = gpt(&[Some((64, 575))]);
    let mut buf = vec![0u8; 64 * 1024];
    let mut t = PartitionTable::new();
    let fail = read_table(&mut t, 256, &mut buf, |_, _, _| false);
    assert_eq!(fail, Err(Error::ReadFailed { block: 0 }));
    let entries_fail = read_table(&mut t, 256, &mut buf, |block, _, out| {
        out[..4096].copy_from_slice(&d[..4096]);
        block == 0 && out.len() == 4096
    });
    assert_eq!(entries_fail, Err(Error::ReadFailed { block: 0 }));
    assert_eq!(read_with(&d, 4095).err(), Some(Error::BufferTooSmall(4095)));
    assert_eq!(check_sector_size(512), Ok(()));
    assert_eq!(check_sector_size(4096), Err(Error::SectorSize(4096)));
    assert!(Error::SectorSize(4096).to_string().contains("512-byte sectors"));
}

/// Non-zero byte runs of the first 34 sectors of a 64 MiB image after
/// `printf 'label: gpt\nsize=16MiB, name=one\nsize=+, name=two\n' | sfdisk disk.img`
/// (util-linux 2.38.1): partitions at 2048 (32768 sectors) and 34816 (94208).
const SFDISK_GPT: &[(usize, &str)] = &[
    (448, "0200eeffffff01000000ffff01"),
    (510, "55aa4546492050415254000001005c000000cdb465b6000000000100000000000000ffff0100000000000008000000000000deff010000000000de485d1f2ded42d4b1d1bc551f706a8802000000000000008000000080000000ef23997a"),
    (1024, "af3dc60f838472478e793d69d8477de41cf70b85afec4e24a4e6fa6ad0bcfe8f0008000000000000ff87"),
    (1080, "6f006e0065"),
    (1152, "af3dc60f838472478e793d69d8477de43b30ceae0b934047986284a72f22f6020088000000000000fff701"),
    (1208, "740077006f"),
];

/// As above, `printf 'label: dos\nsize=16MiB\nsize=8MiB\ntype=5\n' | sfdisk disk.img`:
/// two Linux partitions (2048, 32768 and 34816, 16384) and an extended one.
const SFDISK_MBR: &[(usize, &str)] = &[
    (440, "efd9c8f4000000202100832a28020008000000800000002a2902832f2c030088000000400000002f2d030528200800c80000003801"),
    (510, "55aa"),
];

fn sfdisk_image(runs: &[(usize, &str)]) -> Vec<u8> {
    let mut d = vec![0u8; 64 << 20];
    for &(at, hex) in runs {
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            d[at + i] = u8::from_str_radix(core::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
    }
    d
}

#[test]
fn reads_what_sfdisk_writes() {
    let t = read(&sfdisk_image(SFDISK_GPT)).unwrap();
    assert_eq!(t.scheme(), Scheme::Gpt);
    assert_eq!(numbers(&t), [1, 2]);
    assert_eq!(t.blocks(1), Ok(BlockRange { start: 256, blocks: 4096 }));
    assert_eq!(t.blocks(2), Ok(BlockRange { start: 4352, blocks: 11776 }));
    let kind = t.get(2).unwrap().kind.to_string(); // as `sfdisk -d` prints it
    assert_eq!(kind, "type 0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    let t = read(&sfdisk_image(SFDISK_MBR)).unwrap();
    assert_eq!(t.scheme(), Scheme::Mbr);
    assert_eq!(t.blocks(1), Ok(BlockRange { start: 256, blocks: 4096 }));
    assert_eq!(t.blocks(2), Ok(BlockRange { start: 4352, blocks: 2048 }));
    assert_eq!(t.blocks(3), Err(Error::Extended { number: 3, kind: 5 }));
}

#[test]
fn every_error_says_something() {
    let all = [
        Error::ReadFailed { block: 3 },
        Error::NoMbrSignature([1, 2]),
        Error::PastDiskEnd { number: 4, end: 10, disk: 8 },
        Error::Overlap(1, 2),
        Error::GptHeaderCrc { stored: 1, computed: 2 },
        Error::GptEntriesTooBig { entries: 9, entry_size: 128, buffer: 4096 },
        Error::NoSuchPartition(7),
    ];
    for e in all {
        let s = format!("{e}");
        assert!(s.len() > 20, "{s}");
    }
    assert!(Error::Overlap(1, 2).to_string().contains("partitions 1 and 2"));
}
