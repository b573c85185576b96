//! Shared by `virtqueue`, `virtio_console`, `virtio_blk`, `virtio_vsock` and `virtio_snd`: a
//! hostile driver as a sequence of operations on one virtio-MMIO transport over 16 KiB of
//! guest RAM (register accesses, queue set-up, descriptors, available-ring entries, raw
//! memory pokes, notifications), interleaved with the target's own backend operations.
//!
//! Checks after every operation: identification registers never change, Status and
//! InterruptStatus read back what the transport reports, InterruptStatus only holds the two
//! defined bits, every ready queue lies inside guest RAM.

use arbitrary::{Arbitrary, Unstructured};
use virtio::mmio::*;
use virtio::{GuestMemory, MmioTransport, SliceMemory, VirtioDevice};

/// Guest RAM base.
pub const BASE: u64 = 0x4000_0000;
/// Guest RAM size.
pub const RAM: usize = 0x4000;

/// Registers a write can aim at.
const REGS: [u64; 18] = virtio::testing::WRITABLE_REGISTERS;

/// What the driver does.
#[derive(Arbitrary, Debug)]
pub enum GuestOp {
    /// A register read anywhere in the window, any width.
    Read { offset: u16, width: u8 },
    /// A register write anywhere.
    Write { offset: u16, width: u8, value: u64 },
    /// A 4-byte write to a register.
    WriteReg { reg: u8, value: u32 },
    /// Status ACKNOWLEDGE | DRIVER, features, FEATURES_OK.
    Negotiate { features: u64 },
    /// Queue `q` of 2^`size_log` entries at RAM offsets, then QueueReady = 1.
    SetupQueue { q: u8, size_log: u8, desc: u16, avail: u16, used: u16 },
    /// DRIVER_OK.
    DriverOk,
    /// Descriptor `index` of queue `q` (as last set up): address in RAM unless `wild`.
    Desc { q: u8, index: u8, addr: u16, wild: Option<u64>, len: u16, flags: u8, next: u8 },
    /// Puts `head` in the available ring of `q` and moves the index by `bump` (1 mostly).
    Avail { q: u8, head: u16, bump: u8 },
    /// Writes bytes anywhere in RAM (offset wraps).
    Poke { offset: u16, bytes: Vec<u8> },
    /// QueueNotify.
    Notify { q: u8 },
    /// The VMM polls the device (its backend signalled).
    Process,
    /// Status 0.
    Reset,
}

/// One step: the guest's or the backend's.
#[derive(Arbitrary, Debug)]
pub enum Op<B> {
    /// The driver.
    Guest(GuestOp),
    /// The backend.
    Backend(B),
}

/// Where the driver put its queues.
#[derive(Default, Clone, Copy)]
pub struct QueueLayout {
    size: u16,
    desc: u64,
    avail: u64,
    avail_idx: u16,
}

/// Runs `data` against `device`; `backend` applies a backend operation; `check` looks at the
/// device after every step. Returns the transport and RAM for a final check.
pub fn run<D: VirtioDevice, B: for<'a> Arbitrary<'a>>(
    data: &[u8],
    device: D,
    mut backend: impl FnMut(&mut D, B),
    check: impl FnMut(&MmioTransport<D>),
    finish: impl FnOnce(&mut MmioTransport<D>, &mut SliceMemory<'_>),
) {
    run_with_memory(data, device, |t, _, b| backend(t.device_mut(), b), check, finish);
}

/// [`run`], with the target's own operations given the transport and guest RAM too (to act
/// as a driver that writes well-formed requests, say).
pub fn run_with_memory<D: VirtioDevice, B: for<'a> Arbitrary<'a>>(
    data: &[u8],
    device: D,
    mut backend: impl FnMut(&mut MmioTransport<D>, &mut SliceMemory<'_>, B),
    mut check: impl FnMut(&MmioTransport<D>),
    finish: impl FnOnce(&mut MmioTransport<D>, &mut SliceMemory<'_>),
) {
    let mut u = Unstructured::new(data);
    let mut ram = vec![0u8; RAM];
    let mut mem = SliceMemory::new(BASE, &mut ram);
    let mut t = MmioTransport::new(device);
    let mut layout = [QueueLayout::default(); 8];
    let ident = ident(&t);
    assert_eq!(ident[0], u64::from(MAGIC));
    let mut page = virtio::testing::RegisterBuf::new(0);
    t.sync_registers(&mut page);
    let mut steps = 0;
    while !u.is_empty() {
        let Ok(op) = Op::<B>::arbitrary(&mut u) else { break };
        steps += 1;
        if steps > 200 {
            break;
        }
        match op {
            Op::Guest(g) => guest(&mut t, &mut mem, &mut layout, g),
            Op::Backend(b) => backend(&mut t, &mut mem, b),
        }
        check_transport(&t, &mem, ident);
        check(&t);
        // A VMM's register page, synced after the step, reads like the registers. (The
        // configuration space may change under a backend before the device signals it, so
        // only the registers below it are compared.)
        t.sync_registers(&mut page);
        for off in (0..CONFIG).step_by(4) {
            assert_eq!(u64::from(page.at(off)), t.read(off, 4), "register page at {off:#x}");
        }
    }
    finish(&mut t, &mut mem);
}

/// The identification registers, read once at the start.
pub fn ident<D: VirtioDevice>(t: &MmioTransport<D>) -> [u64; 4] {
    [t.read(MAGIC_VALUE, 4), t.read(VERSION, 4), t.read(DEVICE_ID, 4), t.read(VENDOR_ID, 4)]
}

/// The checks made after every step: identification unchanged, Status and InterruptStatus
/// consistent, ready queues inside RAM.
pub fn check_transport<D: VirtioDevice, M: GuestMemory>(
    t: &MmioTransport<D>,
    mem: &M,
    ident: [u64; 4],
) {
    assert_eq!(self::ident(t), ident, "identification registers changed");
    assert_eq!(t.read(STATUS, 4), u64::from(t.status()));
    let isr = t.interrupt_status().bits();
    assert_eq!(t.read(INTERRUPT_STATUS, 4), u64::from(isr));
    assert_eq!(isr & !3, 0, "undefined InterruptStatus bits {isr:#x}");
    for q in (0..8).filter_map(|i| t.queue(i)) {
        if q.ready() {
            let size = u64::from(q.size() as u16);
            assert!(mem.check_range(q.desc_table(), 16 * size).is_ok(), "ready queue outside RAM");
            assert!(mem.check_range(q.avail_ring(), 6 + 2 * size).is_ok());
            assert!(mem.check_range(q.used_ring(), 6 + 8 * size).is_ok());
        }
    }
}

fn w<D: VirtioDevice, M: GuestMemory>(t: &mut MmioTransport<D>, mem: &mut M, reg: u64, v: u64) {
    t.write(mem, reg, 4, v);
}

/// Whether `op` only writes guest memory as the driver (no register access, no device run).
pub fn is_memory_write(op: &GuestOp) -> bool {
    matches!(op, GuestOp::Desc { .. } | GuestOp::Avail { .. } | GuestOp::Poke { .. })
}

/// Applies one driver operation.
pub fn guest<D: VirtioDevice, M: GuestMemory>(
    t: &mut MmioTransport<D>,
    mem: &mut M,
    layout: &mut [QueueLayout; 8],
    op: GuestOp,
) {
    use virtio::status::*;
    match op {
        GuestOp::Read { offset, width } => {
            t.read(u64::from(offset) % 0x300, width);
        }
        GuestOp::Write { offset, width, value } => {
            t.write(mem, u64::from(offset) % 0x300, width, value);
        }
        GuestOp::WriteReg { reg, value } => {
            let reg = REGS[usize::from(reg) % REGS.len()];
            let value = match reg {
                QUEUE_DESC_LOW | QUEUE_DRIVER_LOW | QUEUE_DEVICE_LOW => {
                    BASE + u64::from(value) % RAM as u64
                }
                _ => u64::from(value),
            };
            w(t, mem, reg, value);
        }
        GuestOp::Negotiate { features } => {
            w(t, mem, STATUS, u64::from(ACKNOWLEDGE | DRIVER));
            for sel in 0..2 {
                w(t, mem, DRIVER_FEATURES_SEL, sel);
                w(t, mem, DRIVER_FEATURES, (features >> (32 * sel)) & 0xffff_ffff);
            }
            w(t, mem, STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK));
        }
        GuestOp::SetupQueue { q, size_log, desc, avail, used } => {
            let q = usize::from(q % 8);
            let size = 1u16 << (size_log % 9);
            let off = |o: u16, align: u16| BASE + u64::from(o & !(align - 1)) % RAM as u64;
            let l = QueueLayout { size, desc: off(desc, 16), avail: off(avail, 2), avail_idx: 0 };
            w(t, mem, QUEUE_SEL, q as u64);
            w(t, mem, QUEUE_NUM, u64::from(size));
            w(t, mem, QUEUE_DESC_LOW, l.desc);
            w(t, mem, QUEUE_DESC_HIGH, 0);
            w(t, mem, QUEUE_DRIVER_LOW, l.avail);
            w(t, mem, QUEUE_DRIVER_HIGH, 0);
            w(t, mem, QUEUE_DEVICE_LOW, off(used, 4));
            w(t, mem, QUEUE_DEVICE_HIGH, 0);
            w(t, mem, QUEUE_READY, 1);
            layout[q] = l;
        }
        GuestOp::DriverOk => {
            let s = t.status();
            w(t, mem, STATUS, u64::from(s | DRIVER_OK));
        }
        GuestOp::Desc { q, index, addr, wild, len, flags, next } => {
            let l = layout[usize::from(q % 8)];
            if l.size == 0 {
                return;
            }
            let addr = wild.unwrap_or(BASE + u64::from(addr) % RAM as u64);
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&u32::from(len).to_le_bytes());
            d[12..14].copy_from_slice(&u16::from(flags & 7).to_le_bytes());
            d[14..].copy_from_slice(&u16::from(next).to_le_bytes());
            let at = l.desc + 16 * (u64::from(index) % u64::from(l.size));
            let _ = mem.write(at, &d);
        }
        GuestOp::Avail { q, head, bump } => {
            let l = &mut layout[usize::from(q % 8)];
            if l.size == 0 {
                return;
            }
            let slot = u64::from(l.avail_idx % l.size);
            let _ = mem.write(l.avail + 4 + 2 * slot, &head.to_le_bytes());
            l.avail_idx = l.avail_idx.wrapping_add(if bump < 240 { 1 } else { u16::from(bump) });
            let _ = mem.write(l.avail + 2, &l.avail_idx.to_le_bytes());
        }
        GuestOp::Poke { offset, bytes } => {
            let at = u64::from(offset) % RAM as u64;
            let n = bytes.len().min(RAM - at as usize);
            let _ = mem.write(BASE + at, &bytes[..n]);
        }
        GuestOp::Notify { q } => w(t, mem, QUEUE_NOTIFY, u64::from(q % 9)),
        GuestOp::Process => {
            t.process(mem);
        }
        GuestOp::Reset => {
            w(t, mem, STATUS, 0);
            *layout = [QueueLayout::default(); 8];
        }
    }
}
