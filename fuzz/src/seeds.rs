//! Seed inputs for each target, written to `corpus/<target>/` by
//! `cargo test --release -- --ignored write_seed_corpus` (run from `fuzz/`); the fuzz smoke
//! script does this before fuzzing. Each `run`'s own test replays them.

use libvmm::linux::image::IMAGE_MAGIC;

/// An Image header: text_offset, image_size, flags, then `len` bytes in all.
fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len.max(64)];
    b[8..16].copy_from_slice(&text_offset.to_le_bytes());
    b[16..24].copy_from_slice(&image_size.to_le_bytes());
    b[24..32].copy_from_slice(&flags.to_le_bytes());
    b[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    b
}

/// `image_header`: RAM base and size, then an Image.
pub fn image_header() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (base, size, text, isize, flags) in [
        (0x4000_0000u64, 256u64 << 20, 0u64, 40u64 << 20, 0xau64),
        (0x4010_0000, 64 << 20, 0x8_0000, 20 << 20, 0x2),
        (0x4000_0000, 4 << 20, 0, 0, 0),
        (u64::MAX - (1 << 20), 4 << 20, 0, 1 << 20, 0x8),
    ] {
        let mut s = base.to_le_bytes().to_vec();
        s.extend_from_slice(&size.to_le_bytes());
        s.extend(image(text, isize, flags, 128));
        seeds.push(s);
    }
    seeds
}

/// A device tree like a board's: root cells, a memory node, /chosen, a reservation.
pub fn dtb(with_chosen: bool, address_cells: u32, memory_nodes: usize) -> Vec<u8> {
    let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&[vm_fdt::FdtReserveEntry::new(
        0x4800_0000,
        0x1000,
    )
    .unwrap()])
    .unwrap();
    let root = w.begin_node("").unwrap();
    w.property_string("compatible", "linux,dummy-virt").unwrap();
    w.property_u32("#address-cells", address_cells).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    if with_chosen {
        let c = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "console=ttyAMA0 earlycon").unwrap();
        w.property_u64("linux,initrd-start", 0x4800_0000).unwrap();
        w.property_u64("linux,initrd-end", 0x4810_0000).unwrap();
        w.property_string("stdout-path", "/pl011@9000000").unwrap();
        w.end_node(c).unwrap();
    }
    for i in 0..memory_nodes {
        let m = w.begin_node(&format!("memory@{:x}", 0x4000_0000 + i * 0x1000_0000)).unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x1000_0000]).unwrap();
        w.end_node(m).unwrap();
    }
    let u = w.begin_node("pl011@9000000").unwrap();
    w.property_string("compatible", "arm,pl011").unwrap();
    w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
    w.property_null("dma-coherent").unwrap();
    let n = w.begin_node("nested").unwrap();
    w.property_u32("x", 1).unwrap();
    w.end_node(n).unwrap();
    w.end_node(u).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

/// `fdt_patch`: patch parameters (arbitrary-encoded, so a few byte patterns) then a DTB.
pub fn fdt_patch() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    // Each prefix picks different Option branches and a bootargs string.
    let prefixes: [&[u8]; 3] = [
        &[
            1, 5, b'q', b'u', b'i', b'e', b't', 1, 0, 0, 0, 0x48, 0, 0, 0, 0, 0, 0, 0, 0x49, 0, 0,
            0, 0, 1, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 4, 1, 2, 3, 4, 0,
            0x10,
        ],
        &[0, 0, 0, 0, 0x10, 0],
        &[1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x20, 0],
    ];
    for (i, tree) in [dtb(true, 2, 1), dtb(false, 1, 0), dtb(true, 2, 3), dtb(false, 2, 2)]
        .into_iter()
        .enumerate()
    {
        for p in prefixes {
            let mut s = p.to_vec();
            s.extend_from_slice(&tree);
            seeds.push(s);
            let _ = i;
        }
    }
    seeds
}

/// `n` pseudo-random inputs of `len` bytes (for the operation-list targets, whose inputs
/// are `arbitrary` encodings that are not worth writing by hand).
pub fn noise(seed: u64, n: usize, len: usize) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|_| {
            let mut v = vec![0u8; len];
            rng.fill(&mut v);
            v
        })
        .collect()
}

/// `vgic_mmio`.
pub fn vgic_mmio() -> Vec<Vec<u8>> {
    noise(1, 8, 512)
}

/// `partition_table`: disk blocks, buffer blocks, then the start of a disk with a GPT (the
/// standard one; 256-byte entries with a gap), an MBR, and a blank disk.
pub fn partition_table() -> Vec<Vec<u8>> {
    use sddf_components::blk::partition::image::{self, Gpt};
    let seed = |blocks: u64, buffer: u8, disk: &[u8]| {
        let mut s = blocks.to_le_bytes().to_vec();
        s.push(buffer);
        s.extend_from_slice(disk);
        s
    };
    let mut d = vec![0u8; 40 * 1024];
    image::gpt(&mut d, &Gpt::standard(2048), &[Some((64, 575)), Some((576, 1087))]);
    let gpt = seed(256, 255, &d);
    let wide = Gpt { entry_size: 256, first_usable: 66, ..Gpt::standard(2048) };
    image::gpt(&mut d, &wide, &[Some((128, 255)), None, Some((2000, 2007))]);
    let gpt_wide = seed(256, 255, &d);
    let mut m = vec![0u8; 512];
    image::mbr(&mut m, &[(0x83, 2048, 32768), (0x05, 34816, 16384), (0, 0, 0), (0x83, 63, 8)]);
    let mbr = seed(1 << 14, 0, &m);
    vec![gpt, gpt_wide, mbr, seed(256, 0, &[])]
}

/// The bytes `arbitrary` decodes as variant `i` of an enum of `count` variants (it takes a
/// `u32` and keeps the high part of `u32 * count`).
fn variant(i: u32, count: u32) -> [u8; 4] {
    let x = ((2 * u64::from(i) + 1) << 32) / (2 * u64::from(count));
    (x as u32).to_le_bytes()
}

/// One `virtio_snd` step: `Op::Backend` (variant 1 of 2), then the `SndOp` variant (of 8)
/// and its fields.
fn snd_step(op: u32, fields: &[u8]) -> Vec<u8> {
    [&variant(1, 2)[..], &variant(op, 8), fields].concat()
}

/// A control request of `virtio_snd` (`SndOp::Control`, `Control` variant `kind` of 4) at
/// RAM offset `at`, its 4-byte response at `at + 64`.
fn snd_control(kind: u32, fields: &[u8], at: u16) -> Vec<u8> {
    let head = [&variant(kind, 4)[..], fields, &at.to_le_bytes(), &4u16.to_le_bytes()].concat();
    snd_step(6, &head)
}

/// Two well-formed sessions for `virtio_snd`, as a driver and a backend would run them:
/// set up, SET_PARAMS, PREPARE, two periods of playback (stream 0) or capture (stream 1),
/// START, every piece answered, STOP, RELEASE. `snd::tests` checks they get that far.
pub fn snd_sessions() -> [Vec<u8>; 2] {
    let answer = snd_step(1, &[0]);
    let process = [&variant(0, 2)[..], &variant(10, 12)].concat();
    [false, true].map(|capture| {
        let stream = u8::from(capture);
        let pcm =
            |code: u8, at: u16| [snd_control(2, &[code, stream], at), answer.clone()].concat();
        // SET_PARAMS: stream, periods, period (le16), channels, format, rate, features.
        let p = [stream, 4, 0xa0, 0x0f, 2, 0, 0, 0];
        let mut seed = snd_step(0, &[1, 3]); // Init: ring features, queues of 8
        seed.extend(snd_control(1, &p, 0x100));
        seed.extend(&answer);
        seed.extend(pcm(0, 0x180)); // PREPARE
        for at in [0x400u16, 0x1400] {
            // Pcm { input, stream, len 3000, at }
            seed.extend(snd_step(
                7,
                &[&[u8::from(capture), stream][..], &3000u16.to_le_bytes(), &at.to_le_bytes()]
                    .concat(),
            ));
        }
        seed.extend(pcm(2, 0x200)); // START
        seed.extend(&process);
        seed.extend(snd_step(3, &[])); // PlayAll
        seed.extend(&process);
        seed.extend(pcm(3, 0x280)); // STOP
        seed.extend(pcm(1, 0x300)); // RELEASE
        seed.extend(&process);
        seed
    })
}

/// `virtio_snd`: the two sessions and noise.
pub fn virtio_snd() -> Vec<Vec<u8>> {
    let mut seeds = snd_sessions().to_vec();
    seeds.extend(noise(15, 6, 1000));
    seeds
}

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("image_header", image_header()),
        ("fdt_patch", fdt_patch()),
        ("vgic_mmio", vgic_mmio()),
        ("vgic_v3", noise(13, 8, 512)),
        ("virtqueue", noise(3, 8, 600)),
        ("virtio_console", noise(5, 8, 800)),
        ("virtio_blk", noise(6, 8, 800)),
        ("virtio_vsock", noise(21, 16, 1500)),
        ("virtio_snd", virtio_snd()),
        ("exit_decode", noise(9, 8, 1000)),
        ("sddf_queues", noise(11, 8, 1000)),
        ("partition_table", partition_table()),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Writes `corpus/<target>/seed-<n>` for every target (run from `fuzz/`).
    #[test]
    #[ignore]
    fn write_seed_corpus() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for (target, seeds) in super::all() {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
            }
        }
    }
}
