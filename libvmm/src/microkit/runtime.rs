//! The PD's entry and event loop (libmicrokit's `main` and `handler_loop`,
//! rewritten), and the panic handler.

use super::channel::{Channel, ChannelSet};
use super::handler::{Event, Handler};
use super::slots::{INPUT_CAP, MONITOR_EP, REPLY_CAP};
use super::symbols::{microkit_ioports, microkit_irqs, microkit_passive};
use crate::sel4::config::label;
use crate::sel4::{syscall, Fault, IrqHandler, MessageInfo, Notification, Vcpu};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the PD's next wait also does (libmicrokit's deferred signal,
/// extended), encoded: the capability + 1, with [`IRQ_ACK`] set for an IRQ
/// acknowledgement or [`INJECT`] for a VCPU InjectIRQ (its word in
/// [`DEFERRED_WORD`]); 0: nothing. A PD is one thread, so `Relaxed` is all
/// the ordering needed.
static DEFERRED: AtomicU64 = AtomicU64::new(0);
/// The message word of a held InjectIRQ.
static DEFERRED_WORD: AtomicU64 = AtomicU64::new(0);

/// Marks a held capability as an IRQ handler to acknowledge, not a
/// notification to signal.
const IRQ_ACK: u64 = 1 << 63;
/// Marks a held capability as a VCPU to inject into.
const INJECT: u64 = 1 << 62;

/// Holds a notification to `cap` for the next wait; one held already for
/// another capability is sent now.
pub(super) fn defer_notify(cap: u64) {
    hold(cap + 1, 0);
}

/// Holds the acknowledgement of IRQ handler `cap` for the next wait
/// (`microkit_deferred_irq_ack`): an NBSend of IRQAckIRQ to the handler
/// acknowledges it, so the wait does both; something else held is done now.
pub(super) fn defer_irq_ack(cap: u64) {
    hold((cap + 1) | IRQ_ACK, 0);
}

/// Holds an InjectIRQ of `word` ([`crate::sel4::inject_irq_word`]) into VCPU
/// `cap` for the next wait, which sends it (NBSendRecv invokes the VCPU).
/// Its answer is lost, so only an injection that cannot be refused may be
/// held: into a list register the guest cannot hold (see
/// `Child::inject_irq_deferred`).
pub(super) fn defer_inject(cap: u64, word: u64) {
    hold((cap + 1) | INJECT, word);
}

fn hold(held: u64, word: u64) {
    let old = DEFERRED.swap(held, Relaxed);
    let old_word = DEFERRED_WORD.swap(word, Relaxed);
    if old != held || old_word != word {
        if let Some(action) = decode(old, old_word) {
            perform(action);
        }
    }
}

/// A held action: the capability, the message that does it when sent, and
/// its first message register.
type Action = (u64, MessageInfo, u64);

/// Does the held action now, if any: before an invocation whose effect
/// must follow it (a list register written after a held InjectIRQ).
pub fn perform_held() {
    if let Some(action) = take_deferred() {
        perform(action);
    }
}

/// Takes the held action, if any.
fn take_deferred() -> Option<Action> {
    decode(DEFERRED.swap(0, Relaxed), DEFERRED_WORD.swap(0, Relaxed))
}

/// A held action as the capability and the message that does it when sent
/// (a signal, IRQAckIRQ to an IRQ handler, or InjectIRQ to a VCPU).
fn decode(held: u64, word: u64) -> Option<Action> {
    let cap = (held & !(IRQ_ACK | INJECT)).checked_sub(1)?;
    Some(match held {
        held if held & IRQ_ACK != 0 => (cap, MessageInfo::new(label::IRQ_ACK_IRQ, 0), 0),
        held if held & INJECT != 0 => (cap, MessageInfo::new(label::ARM_VCPU_INJECT_IRQ, 1), word),
        _ => (cap, MessageInfo::new(0, 0), 0),
    })
}

/// Does a held action now, not with a wait.
fn perform((cap, msg, word): Action) {
    let failed = match msg.label() {
        label::IRQ_ACK_IRQ => IrqHandler(cap).ack().is_err(),
        label::ARM_VCPU_INJECT_IRQ => Vcpu(cap).inject_irq_word(word).is_err(),
        _ => {
            Notification(cap).signal();
            false
        }
    };
    if failed {
        log::error!(target: "core", "deferred {} of capability {cap} failed",
            if msg.label() == label::IRQ_ACK_IRQ { "irq_ack" } else { "InjectIRQ" });
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

    // What `init` held goes out before the first wait, which fuses nothing.
    perform_held();
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
                if let Some(action) = held {
                    perform(action);
                }
                syscall::reply_recv(INPUT_CAP, r, REPLY_CAP)
            }
            // A signal or IRQ acknowledgement fused with the wait
            // (libmicrokit's deferred notify and deferred irq_ack).
            (None, Some((cap, msg, word))) => {
                if msg.length() > 0 {
                    syscall::set_mr(0, word);
                }
                syscall::nb_send_recv(cap, msg, INPUT_CAP, REPLY_CAP)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the next wait sends: a signal (label 0) to a notification, or
    /// IRQAckIRQ to an IRQ handler; taking it leaves nothing held. (Holding
    /// a second action performs the first, a system call: not on the host.)
    #[test]
    fn a_held_action_is_the_message_the_wait_sends() {
        let irq = super::super::slots::BASE_IRQ_CAP + 3;
        defer_irq_ack(irq);
        assert_eq!(take_deferred(), Some((irq, MessageInfo::new(label::IRQ_ACK_IRQ, 0), 0)));
        assert_eq!(take_deferred(), None);
        defer_notify(10);
        defer_notify(10); // the same one again: still one signal
        assert_eq!(take_deferred(), Some((10, MessageInfo::new(0, 0), 0)));
        assert_eq!(take_deferred(), None);
        // InjectIRQ: one message register, the word.
        let vcpu = super::super::slots::BASE_VCPU_CAP;
        let word = crate::sel4::inject_irq_word(48, 0, 1, 2);
        defer_inject(vcpu, word);
        let inject = MessageInfo::new(label::ARM_VCPU_INJECT_IRQ, 1);
        assert_eq!(take_deferred(), Some((vcpu, inject, word)));
        assert_eq!(take_deferred(), None);
        // Capability 0 is representable too (held as 1).
        defer_notify(0);
        assert_eq!(take_deferred(), Some((0, MessageInfo::new(0, 0), 0)));
    }
}
