//! Target `virtqueue`: the virtio-MMIO transport and split virtqueues, with a device that
//! takes every chain it is given, checks what `Queue::pop` promises (head below the queue
//! size, non-empty segments inside guest RAM, readable before writable, lengths adding up),
//! reads and writes the buffers and completes chains later, in any order.

use arbitrary::Arbitrary;
use virtio::device::ActivateError;
use virtio::{DescriptorChain, DeviceContext, GuestMemory, Queue, VirtioDevice};

use crate::virtio_ops;

/// A device with two queues that holds chains until told to complete them.
pub struct Echo {
    held: Vec<(u16, DescriptorChain)>,
    /// Completions the backend asked for, done on the next poll.
    complete: Vec<(u8, u16)>,
    sizes: [u16; 2],
}

/// The backend's moves: complete held chains (on the next poll, the guest's `Process`).
#[derive(Arbitrary, Debug)]
pub enum EchoOp {
    /// Completes held chain `i` (modulo), writing `len` bytes at most.
    Complete { i: u8, len: u16 },
}

impl VirtioDevice for Echo {
    fn device_id(&self) -> u32 {
        0x7f
    }
    fn features(&self) -> u64 {
        0
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        virtio::device::read_config_bytes(&[1, 2, 3, 4, 5, 6, 7, 8], offset, data);
    }
    fn activate(&mut self, _: u64, queues: &[Queue]) -> Result<(), ActivateError> {
        assert_eq!(queues.len(), 2);
        Ok(())
    }
    fn reset(&mut self) {
        self.held.clear();
        self.complete.clear();
    }
    fn queue_notify<M: GuestMemory + ?Sized>(
        &mut self,
        queue: u16,
        ctx: &mut DeviceContext<'_, M>,
    ) {
        let Some((q, mem)) = ctx.queue(queue) else { return };
        assert!(q.ready(), "notify of a queue that is not ready");
        for _ in 0..4 {
            let Some(chain) = q.pop(mem) else { break };
            check_chain(&chain, q, &*mem);
            let mut buf = [0u8; 64];
            let n = chain.read_at(&*mem, 0, &mut buf).expect("validated chain unreadable");
            assert!(n as u64 <= chain.readable_len());
            if self.held.len() < 64 {
                self.held.push((queue, chain));
            } else {
                q.add_used(mem, chain.head(), 0);
            }
        }
        let _ = q.needs_interrupt(&*mem);
    }
    fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        for (i, len) in core::mem::take(&mut self.complete) {
            if self.held.is_empty() {
                break;
            }
            let (queue, chain) = self.held.swap_remove(usize::from(i) % self.held.len());
            let Some((q, mem)) = ctx.queue(queue) else { continue };
            let data = [0xa5u8; 512];
            let want = usize::from(len).min(data.len());
            let n = chain.write_at(mem, 0, &data[..want]).expect("validated chain unwritable");
            assert!(n as u64 <= chain.writable_len() && n <= want);
            q.add_used(mem, chain.head(), n as u32);
            let _ = q.needs_interrupt(&*mem);
        }
    }
}

fn check_chain<M: GuestMemory + ?Sized>(c: &DescriptorChain, q: &Queue, mem: &M) {
    assert!(u32::from(c.head()) < q.size(), "head {} of {}", c.head(), q.size());
    let (mut r, mut w) = (0u64, 0u64);
    for (i, s) in c.segments().iter().enumerate() {
        assert!(s.len > 0, "empty segment");
        assert!(mem.check_range(s.addr, u64::from(s.len)).is_ok(), "segment outside RAM: {s:?}");
        assert_eq!(s.writable, i >= c.readable().len(), "readable after writable");
        if s.writable {
            w += u64::from(s.len)
        } else {
            r += u64::from(s.len)
        }
    }
    assert_eq!((r, w), (c.readable_len(), c.writable_len()));
    assert!(r + w <= u64::from(u32::MAX));
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let sizes = [8, 256];
    virtio_ops::run(
        data,
        Echo { held: Vec::new(), complete: Vec::new(), sizes },
        |d: &mut Echo, EchoOp::Complete { i, len }| d.complete.push((i, len)),
        |_| {},
        |_, _| {},
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run() {
        for seed in crate::seeds::noise(3, 8, 600) {
            super::run(&seed);
        }
    }
}
