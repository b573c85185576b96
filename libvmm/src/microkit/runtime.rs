//! The PD's entry and event loop (libmicrokit's `main` and `handler_loop`,
//! rewritten), and the panic handler.

use super::channel::{Channel, ChannelSet};
use super::handler::{Event, Handler};
use super::slots::{INPUT_CAP, MONITOR_EP, REPLY_CAP};
use super::symbols::{microkit_ioports, microkit_irqs, microkit_passive};
use crate::sel4::{syscall, Fault, MessageInfo};

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
        (info, badge) = match reply.take() {
            Some(r) => syscall::reply_recv(INPUT_CAP, r, REPLY_CAP),
            None => syscall::recv(INPUT_CAP, REPLY_CAP),
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
