//! Helpers shared by the host tests.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A Microkit notification between two test threads: a sticky binary
/// semaphore, so a signal sent before the wait is not lost.
#[derive(Default)]
pub(crate) struct Notification {
    pending: Mutex<bool>,
    wakeup: Condvar,
}

impl Notification {
    /// Marks the notification pending and wakes the waiter.
    pub(crate) fn notify(&self) {
        *self.pending.lock().unwrap() = true;
        self.wakeup.notify_one();
    }

    /// Waits until pending, then clears it; panics after 10 s (a lost wakeup).
    pub(crate) fn wait(&self, who: &str) {
        let pending = self.pending.lock().unwrap();
        let timeout = Duration::from_secs(10);
        let (mut pending, result) =
            self.wakeup.wait_timeout_while(pending, timeout, |p| !*p).unwrap();
        assert!(!result.timed_out(), "{who}: lost wakeup");
        *pending = false;
    }
}
