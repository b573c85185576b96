//! The Microkit PD runtime: entry, event loop, `Handler`, channels and the
//! symbols the `microkit` tool patches.

mod channel;
mod handler;
mod runtime;
pub mod slots;
mod symbols;

pub use channel::{Channel, ChannelSet, Child};
pub use handler::{Event, Handler};
pub use runtime::{notify, perform_held, run};
pub use symbols::{
    microkit_ioports, microkit_irqs, microkit_name, microkit_notifications, microkit_passive,
    microkit_pps,
};
pub use symbols::{pd_name, shared_region, Patched, PdName};
