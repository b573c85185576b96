//! Thin seL4 bindings for aarch64 MCS kernels: syscalls, the invocations a
//! VMM needs, and fault decoding. The only place besides guest memory where
//! this crate uses `unsafe`.

pub mod config;
pub mod fault;
pub mod generic_timer;
pub mod invocation;
pub mod message;
pub mod syscall;
pub mod user_context;

pub use fault::Fault;
pub use invocation::{
    inject_irq_word, ArmSmc, Endpoint, IrqHandler, Notification, Tcb, Vcpu, VcpuReg,
};
pub use message::{Error, MessageInfo};
pub use syscall::Cptr;
pub use user_context::UserContext;
