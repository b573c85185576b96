//! The sDDF timer protocol (`include/sddf/timer/protocol.h`, sDDF 0.7): a
//! client asks the timer driver by protected call; the driver notifies the
//! client's channel when a timeout is due. No shared memory.
//!
//! - label [`GET_TIME`], no arguments: MR 0 of the reply is the time since
//!   start-up in nanoseconds.
//! - label [`SET_TIMEOUT`], MR 0 = a timeout in nanoseconds relative to now:
//!   the driver notifies the client once it has passed.

/// Protected-call label: read the time (MR 0 of the reply, nanoseconds).
pub const GET_TIME: u64 = 0;
/// Protected-call label: notify me in MR 0 nanoseconds.
pub const SET_TIMEOUT: u64 = 1;
/// Nanoseconds per second.
pub const NS_IN_S: u64 = 1_000_000_000;
