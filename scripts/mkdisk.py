#!/usr/bin/env python3
"""Makes a raw disk image with a partition table (standard library only).

    scripts/mkdisk.py PATH [--size 128M] [--table mbr|gpt] [--parts 60M,60M]

Partitions start at 1 MiB and follow each other, each aligned to 1 MiB
(so to the 4 KiB blocks of sDDF); 512-byte sectors. The MBR variant has
primary partitions of type 0x83; the GPT variant has a protective MBR, the
primary header and entries (128 of 128 bytes) and the backup ones at the
end of the disk, with their CRC32s, Linux filesystem type GUID.
Prints each partition's first and last byte, which the multi_vm system
test uses to check where each guest's writes landed.
"""
import argparse
import os
import struct
import sys
import uuid
import zlib

SECTOR = 512
MIB = 1 << 20
LINUX_FS = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")


def size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def layout(disk, parts):
    """[(first_lba, last_lba)] of each partition."""
    out, at = [], MIB
    for p in parts:
        if p % MIB:
            sys.exit(f"mkdisk: partition size {p} is not a multiple of 1 MiB")
        out.append((at // SECTOR, (at + p) // SECTOR - 1))
        at += p
    # GPT keeps 33 sectors for its backup at the end.
    if at > disk - 33 * SECTOR:
        sys.exit(f"mkdisk: partitions of {at - MIB} bytes do not fit a {disk}-byte disk")
    return out


def mbr(entries):
    """A 512-byte MBR with up to four (type, first_lba, sectors) entries."""
    b = bytearray(SECTOR)
    for i, (kind, first, count) in enumerate(entries):
        # status, CHS first (unused: 0xfe 0xff 0xff), type, CHS last, LBA, count
        b[446 + 16 * i: 446 + 16 * (i + 1)] = struct.pack(
            "<B3sB3sII", 0, b"\xfe\xff\xff", kind, b"\xfe\xff\xff", first, count)
    b[510:512] = b"\x55\xaa"
    return bytes(b)


def gpt(disk_sectors, parts, disk_guid):
    """(primary header + entries at LBA 1.., backup entries + header at the end)."""
    entries = bytearray(128 * 128)
    for i, (first, last) in enumerate(parts):
        entries[128 * i: 128 * i + 56] = (LINUX_FS.bytes_le + uuid.uuid5(disk_guid, str(i)).bytes_le
                                          + struct.pack("<QQQ", first, last, 0))
        name = f"guest{i + 1}".encode("utf-16-le")
        entries[128 * i + 56: 128 * i + 56 + len(name)] = name
    entries = bytes(entries)
    entries_crc = zlib.crc32(entries)

    def header(my_lba, other_lba, entries_lba):
        h = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x00010000, 92, 0, 0, my_lba, other_lba,
                        34, disk_sectors - 34, disk_guid.bytes_le, entries_lba, 128, 128, entries_crc)
        h = h[:16] + struct.pack("<I", zlib.crc32(h)) + h[20:]
        return h + bytes(SECTOR - len(h))

    primary = header(1, disk_sectors - 1, 2) + entries
    backup = entries + header(disk_sectors - 1, 1, disk_sectors - 33)
    return primary, backup


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--size", default="128M")
    ap.add_argument("--table", choices=["mbr", "gpt"], default="mbr")
    ap.add_argument("--parts", default="60M,60M", help="partition sizes, comma-separated")
    a = ap.parse_args()
    disk = size(a.size)
    if disk % MIB:
        sys.exit("mkdisk: the disk size must be a multiple of 1 MiB")
    parts = layout(disk, [size(p) for p in a.parts.split(",") if p])
    if a.table == "mbr" and len(parts) > 4:
        sys.exit("mkdisk: an MBR holds four primary partitions")
    with open(a.path, "wb") as f:
        f.truncate(disk)
        if a.table == "mbr":
            f.write(mbr([(0x83, first, last - first + 1) for first, last in parts]))
        else:
            sectors = disk // SECTOR
            f.write(mbr([(0xEE, 1, min(sectors - 1, 0xFFFFFFFF))]))
            primary, backup = gpt(sectors, parts, uuid.uuid5(uuid.NAMESPACE_URL, a.path))
            f.write(primary)
            f.seek(disk - len(backup))
            f.write(backup)
    for i, (first, last) in enumerate(parts):
        print(f"partition {i + 1}: bytes {first * SECTOR:#x}..{(last + 1) * SECTOR - 1:#x}")


if __name__ == "__main__":
    main()
