//! The PD's entry and event loop (libmicrokit's `main` and `handler_loop`,
//! rewritten), and the panic handler.

use super::channel::{Channel, ChannelSet};
use super::handler::{Event, Handler};
use super::slots::{INPUT_CAP, MONITOR_EP, REPLY_CAP};
use super::symbols::{microkit_ioports, microkit_irqs, microkit_passive};
use crate::sel4::{syscall, Fault, MessageInfo, Notification};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The notification capability held by [`Channel::notify_deferred`] + 1;
/// 0: none. A PD is one thread, so `Relaxed` is all the ordering needed.
static DEFERRED: AtomicU64 = AtomicU64::new(0);

/// Holds a notification to `cap` for the next wait; one held already for
/// another capability is sent now.
pub(super) fn defer_notify(cap: u64) {
    let held = DEFERRED.swap(cap + 1, Relaxed);
    if held != 0 && held != cap + 1 {
        Notification(held - 1).signal();
    }
}

/// Takes the held notification's capability, if any.
fn take_deferred() -> Option<u64> {
    match DEFERRED.swap(0, Relaxed) {
        0 => None,
        held => Some(held - 1),
    }
}

/// Declares the PD's entry point, running `$handler` (a [`Handler`]).
///
/// ```ignore
/// struct Hello;
/// impl libvmm::microkit::Handler for Hello { fn init() -> Self { Hello } }
/// libvmm::protection_domain!(Hello);
/// ```
#[macro_export]
macro_rules! protection_domain {
    ($handler:ty) => {
        /// Entry point: the kernel starts the PD here with SP set.
        #[unsafe(no_mangle)]
        pub extern "C" fn _start() -> ! {
            $crate::microkit::run::<$handler>()
        }
    };
}

/// Runs a PD: `init`, then the event loop. Never returns.
pub fn run<H: Handler>() -> ! {
    let mut handler = H::init();
    // Work around seL4 issue #1536 as libmicrokit does: ack every IRQ once.
    for ch in ChannelSet(microkit_irqs.get()).iter() {
        let _ = ch.irq_ack();
    }
    // Referenced so the linker keeps it; the tool requires the symbol.
    let _ = microkit_ioports.get();

    let mut reply: Option<MessageInfo> = None;
    // A passive PD tells the monitor it is ready, fused with its first wait,
    // so the monitor can take its scheduling context.
    let (mut info, mut badge) = if microkit_passive.get() != 0 {
        syscall::nb_send_recv(MONITOR_EP, MessageInfo::new(0, 0), INPUT_CAP, REPLY_CAP)
    } else {
        syscall::recv(INPUT_CAP, REPLY_CAP)
    };
    loop {
        match Event::decode(badge, info) {
            Event::Notified(set) => handler.notified(set),
            Event::Protected(ch, msg) => reply = Some(handler.protected(ch, msg)),
            Event::Fault(child, msg) => {
                let fault = read_fault(msg);
                reply = handler.fault(child, fault);
            }
        }
        (info, badge) = match (reply.take(), take_deferred()) {
            (Some(r), held) => {
                if let Some(cap) = held {
                    Notification(cap).signal();
                }
                syscall::reply_recv(INPUT_CAP, r, REPLY_CAP)
            }
            // A signal fused with the wait (libmicrokit's deferred notify).
            (None, Some(cap)) => {
                syscall::nb_send_recv(cap, MessageInfo::new(0, 0), INPUT_CAP, REPLY_CAP)
            }
            (None, None) => syscall::recv(INPUT_CAP, REPLY_CAP),
        };
    }
}

/// Reads the fault's message registers out of the IPC buffer and decodes.
fn read_fault(msg: MessageInfo) -> Fault {
    let len = Fault::length(msg.label()).min(msg.length());
    let mut mrs = [0u64; 13];
    for (i, mr) in mrs.iter_mut().enumerate().take(len) {
        *mr = syscall::get_mr(i);
    }
    Fault::decode(msg.label(), &mrs[..len])
}

/// Notifies `ch` (shorthand kept for symmetry with libmicrokit).
pub fn notify(ch: Channel) {
    ch.notify()
}

#[cfg(all(target_os = "none", not(test)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let _ = writeln!(crate::logging::DebugConsole, "{}|PANIC: {}", super::pd_name(), info);
    // An undefined instruction faults to the monitor, which reports the PD.
    loop {
        // SAFETY: `udf` only raises an exception; it touches no memory.
        unsafe { core::arch::asm!("udf #0") }
    }
}
