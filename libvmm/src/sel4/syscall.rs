//! The aarch64 MCS system calls and the IPC buffer.
//!
//! Register use (`svc #0`): x0 destination or source cap, and the badge on
//! return; x1 the `MessageInfo`; x2-x5 message registers 0-3; x6 the MCS
//! reply cap; x7 the syscall number; x8 the destination of `NBSendRecv`.
//!
//! Message registers 0-3 travel only in registers, the rest in the IPC
//! buffer. Like libsel4, these wrappers keep all message registers in the IPC
//! buffer: they load `msg[0..4]` into x2-x5 before the call and store x2-x5
//! back after it, so `get_mr`/`set_mr` work for every index.
//!
//! On any target other than aarch64 bare metal (`aarch64-unknown-none` and
//! its `-softfloat` variant, which the PDs use) the calls exist but panic:
//! the crate's logic is tested on the host, never its syscalls.

use super::config::VSPACE_USER_TOP;
use super::message::{MessageInfo, MSG_MAX_LENGTH};

/// A capability address in the PD's CSpace (`seL4_CPtr`).
pub type Cptr = u64;

/// Syscall numbers of the MCS kernel (`syscall.xml`, counted from -1).
mod nr {
    pub const CALL: i64 = -1;
    pub const REPLY_RECV: i64 = -2;
    pub const NB_SEND_RECV: i64 = -3;
    pub const SEND: i64 = -5;
    pub const NB_SEND: i64 = -6;
    pub const RECV: i64 = -7;
    pub const NB_RECV: i64 = -8;
    pub const YIELD: i64 = -11;
    pub const DEBUG_PUT_CHAR: i64 = -12;
}

/// Corresponds to `seL4_IPCBuffer` (1024 bytes, 1024-aligned).
#[repr(C, align(1024))]
pub struct IpcBuffer {
    tag: u64,
    msg: [u64; MSG_MAX_LENGTH],
    user_data: u64,
    caps_or_badges: [u64; 3],
    receive_cnode: u64,
    receive_index: u64,
    receive_depth: u64,
}

const _: () = assert!(core::mem::size_of::<IpcBuffer>() == 1024);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, msg) == 8);

/// Where the Microkit tool maps the IPC buffer: the page below the top of
/// the user address space.
pub const IPC_BUFFER_ADDR: u64 = VSPACE_USER_TOP & !0xfff;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
fn ipc_buffer() -> *mut IpcBuffer {
    IPC_BUFFER_ADDR as *mut IpcBuffer
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn ipc_buffer() -> *mut IpcBuffer {
    // Off target there is no kernel; give the accessors a private buffer so
    // `get_mr`/`set_mr` stay memory-safe if host code ever reaches them.
    struct HostBuffer(core::cell::UnsafeCell<IpcBuffer>);
    // SAFETY: host code is single-threaded with respect to this buffer; it
    // exists only so that the accessors have a valid address off target.
    unsafe impl Sync for HostBuffer {}
    static HOST: HostBuffer = HostBuffer(core::cell::UnsafeCell::new(IpcBuffer {
        tag: 0,
        msg: [0; MSG_MAX_LENGTH],
        user_data: 0,
        caps_or_badges: [0; 3],
        receive_cnode: 0,
        receive_index: 0,
        receive_depth: 0,
    }));
    HOST.0.get()
}

/// Reads message register `i` (0 for an index past the end).
#[inline(always)]
pub fn get_mr(i: usize) -> u64 {
    if i >= MSG_MAX_LENGTH {
        return 0;
    }
    // SAFETY: the IPC buffer is mapped for the PD's whole life (the Microkit
    // tool maps it before the PD starts); `i` is in bounds; a PD is
    // single-threaded, so no other reference to the buffer is live.
    unsafe { (*ipc_buffer()).msg[i] }
}

/// Writes message register `i` (ignored past the end).
#[inline(always)]
pub fn set_mr(i: usize, value: u64) {
    if i >= MSG_MAX_LENGTH {
        return;
    }
    // SAFETY: as in `get_mr`.
    unsafe { (*ipc_buffer()).msg[i] = value }
}

#[inline(always)]
fn load_fast() -> [u64; 4] {
    [get_mr(0), get_mr(1), get_mr(2), get_mr(3)]
}

#[inline(always)]
fn store_fast(mrs: [u64; 4]) {
    for (i, v) in mrs.into_iter().enumerate() {
        set_mr(i, v);
    }
}

/// One trap into the kernel: returns (x0, x1, x2..x5).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[inline(always)]
fn raw(number: i64, x0: u64, x1: u64, mrs: [u64; 4], x6: u64, x8: u64) -> (u64, u64, [u64; 4]) {
    let (mut r0, mut r1) = (x0, x1);
    let [mut r2, mut r3, mut r4, mut r5] = mrs;
    // SAFETY: `svc #0` enters the seL4 kernel, which validates every
    // argument (an invalid cap is an error reply, not undefined behaviour).
    // The kernel preserves all registers but x0-x5, which are declared as
    // outputs. It may write the IPC buffer, so memory is not `nomem`.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inout("x0") r0,
            inout("x1") r1,
            inout("x2") r2,
            inout("x3") r3,
            inout("x4") r4,
            inout("x5") r5,
            in("x6") x6,
            in("x7") number,
            in("x8") x8,
            options(nostack),
        );
    }
    (r0, r1, [r2, r3, r4, r5])
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn raw(
    number: i64,
    _x0: u64,
    _x1: u64,
    _mrs: [u64; 4],
    _x6: u64,
    _x8: u64,
) -> (u64, u64, [u64; 4]) {
    panic!("seL4 syscall {number} called off target: syscalls exist only on aarch64 bare metal (target_os = \"none\")")
}

/// Corresponds to `seL4_Send`: blocking send of `info` and the MRs.
pub fn send(dest: Cptr, info: MessageInfo) {
    raw(nr::SEND, dest, info.word(), load_fast(), 0, 0);
}

/// Corresponds to `seL4_NBSend`: send that never blocks (dropped if the
/// receiver is not waiting).
pub fn nb_send(dest: Cptr, info: MessageInfo) {
    raw(nr::NB_SEND, dest, info.word(), load_fast(), 0, 0);
}

/// Corresponds to `seL4_Signal`: `Send` with an empty message.
pub fn signal(dest: Cptr) {
    raw(nr::SEND, dest, 0, [0; 4], 0, 0);
}

/// Corresponds to `seL4_Call`: send and wait for the reply. Returns the
/// reply's `MessageInfo`; its MRs are in the IPC buffer.
pub fn call(dest: Cptr, info: MessageInfo) -> MessageInfo {
    let (_, tag, mrs) = raw(nr::CALL, dest, info.word(), load_fast(), 0, 0);
    store_fast(mrs);
    MessageInfo::from_word(tag)
}

/// Corresponds to `seL4_Recv`: wait on `src`; returns the message and badge.
pub fn recv(src: Cptr, reply: Cptr) -> (MessageInfo, u64) {
    let (badge, tag, mrs) = raw(nr::RECV, src, 0, [0; 4], reply, 0);
    store_fast(mrs);
    (MessageInfo::from_word(tag), badge)
}

/// Corresponds to `seL4_NBRecv`: poll `src`.
pub fn nb_recv(src: Cptr, reply: Cptr) -> (MessageInfo, u64) {
    let (badge, tag, mrs) = raw(nr::NB_RECV, src, 0, [0; 4], reply, 0);
    store_fast(mrs);
    (MessageInfo::from_word(tag), badge)
}

/// Corresponds to `seL4_ReplyRecv`: reply with `info` through `reply`, then
/// wait on `src`.
pub fn reply_recv(src: Cptr, info: MessageInfo, reply: Cptr) -> (MessageInfo, u64) {
    let (badge, tag, mrs) = raw(nr::REPLY_RECV, src, info.word(), load_fast(), reply, 0);
    store_fast(mrs);
    (MessageInfo::from_word(tag), badge)
}

/// Corresponds to `seL4_NBSendRecv`: non-blocking send to `dest`, then wait
/// on `src`.
pub fn nb_send_recv(dest: Cptr, info: MessageInfo, src: Cptr, reply: Cptr) -> (MessageInfo, u64) {
    let (badge, tag, mrs) = raw(nr::NB_SEND_RECV, src, info.word(), load_fast(), reply, dest);
    store_fast(mrs);
    (MessageInfo::from_word(tag), badge)
}

/// Corresponds to `seL4_Yield`.
pub fn yield_now() {
    raw(nr::YIELD, 0, 0, [0; 4], 0, 0);
}

/// Corresponds to `seL4_DebugPutChar`. Does nothing unless the kernel was
/// built with `CONFIG_PRINTING` (the syscall does not exist otherwise).
pub fn debug_put_char(c: u8) {
    if super::config::PRINTING {
        raw(nr::DEBUG_PUT_CHAR, c as u64, 0, [0; 4], 0, 0);
    }
}
