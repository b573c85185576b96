//! What every PD of this example does alike: notify a component's
//! [`Notify`] set, and open queues over mapped regions. Included by each
//! binary (`#[path]`).

#![allow(dead_code)]

use libvmm::microkit::{shared_region, Channel, Patched};
use sddf_bindings::blk::{capacity_for, BlkQueueHandle, StorageInfoHandle};
use sddf_bindings::serial::SerialQueueHandle;
use sddf_bindings::SharedRegion;
use sddf_components::Notify;

/// A region from its `setvar_vaddr` and `setvar_size` symbols.
pub type Symbols = (&'static Patched<u64>, &'static Patched<u64>);

/// Sends the notifications a component asked for, the last one with the
/// PD's next wait (`Channel::notify_deferred`: one system call fewer, and
/// no switch back to this PD before it waits).
pub fn send(n: Notify) {
    for ch in n.channels() {
        if let Some(c) = Channel::new(ch) {
            c.notify_deferred();
        }
    }
}

/// A channel id from its `setvar_id` symbol.
pub fn channel(id: &'static Patched<u64>) -> u8 {
    id.get() as u8
}

/// The mapped region, or `None` (logged) if the system file maps none.
pub fn region(what: &str, (vaddr, size): Symbols) -> Option<SharedRegion> {
    let r = shared_region(vaddr, size);
    if r.is_none() {
        log::debug!(target: "core", "{what}: not mapped");
    }
    r
}

/// A serial queue over a header region and a data region (capacity: the
/// data region's size).
pub fn serial_queue(what: &str, queue: Symbols, data: Symbols) -> Option<SerialQueueHandle> {
    let (q, d) = (region(what, queue)?, region(what, data)?);
    let capacity = u32::try_from(d.len()).unwrap_or(0);
    SerialQueueHandle::new(q, d, capacity)
        .map_err(|e| log::error!(target: "core", "{what}: {e}"))
        .ok()
}

/// A block queue over a request and a response region.
pub fn blk_queue(what: &str, req: Symbols, resp: Symbols) -> Option<BlkQueueHandle> {
    let (req, resp) = (region(what, req)?, region(what, resp)?);
    let capacity = capacity_for(req.len(), resp.len());
    BlkQueueHandle::new(req, resp, capacity)
        .map_err(|e| log::error!(target: "core", "{what}: {e}"))
        .ok()
}

/// A storage-info handle.
pub fn storage_info(what: &str, info: Symbols) -> Option<StorageInfoHandle> {
    StorageInfoHandle::new(region(what, info)?)
        .map_err(|e| log::error!(target: "core", "{what}: {e}"))
        .ok()
}
