//! The serial TX virtualiser: several clients' output onto one driver queue.
//!
//! On any notification it moves each client's pending bytes to the driver
//! as far as they fit: first the client whose line is unfinished on the
//! console (if it has bytes queued), then the others round-robin, starting
//! one further each time. A client's queued bytes go out whole, so two
//! clients' bytes mix only when the driver queue fills; and when it fills in
//! the middle of a client's line, that client keeps the console when room
//! comes back, until its line ends or its queue is empty. When the driver
//! queue is full, the virtualiser asks the driver for a signal and carries
//! on when it comes; a client that asked for a signal (its queue was full)
//! gets one once bytes left its queue.
//!
//! **Labels.** A client may have a [`Label`]: it is written before the first
//! byte of each of the client's lines (its first byte, and each byte after
//! a `\n`), so a person (or a harness) can tell the clients apart. A label
//! is written whole or not at all (it waits for room like any byte), and it
//! is written only when a byte of the line follows. When a client takes the
//! console from another whose line is unfinished, and either of them is
//! labelled, the virtualiser ends the cut line with `\r\n`; the first
//! client's continuation later starts on a new line with its label again,
//! so no output is unlabelled. A client without a label passes its bytes
//! unchanged: with one such client the console carries exactly its bytes.

use super::label::{Header, Label, MAX_HEADER};
use super::CHUNK;
use crate::Notify;
use sddf_bindings::serial::SerialQueueHandle;

/// Most passes over the clients per notification.
const ROUNDS: usize = 16;

/// One client: its TX queue (we consume), its channel and its label.
pub struct Client {
    /// The client's TX queue.
    pub queue: SerialQueueHandle,
    /// Our channel to the client.
    pub channel: u8,
    /// Written before each of the client's lines; `None`: none.
    pub label: Option<Label>,
}

/// A client and where its output stands on the console.
struct Slot {
    client: Client,
    /// The client's last byte on the console was not a `\n`, and no other
    /// client has written since (so its next byte continues that line).
    mid_line: bool,
}

/// How serving one client ended.
enum Served {
    /// Its queue is empty.
    Empty,
    /// The driver queue needs this many free bytes before it can go on.
    Blocked(u32),
}

/// The TX virtualiser for up to `N` clients.
pub struct VirtTx<const N: usize> {
    driver: SerialQueueHandle,
    driver_channel: u8,
    slots: [Option<Slot>; N],
    /// The client that wrote last to the driver queue.
    last: Option<usize>,
    next: usize,
}

impl<const N: usize> VirtTx<N> {
    /// A virtualiser over the driver's TX queue (we produce).
    ///
    /// If the driver queue is too small to ever hold a label (fewer than
    /// [`MAX_HEADER`](super::label::MAX_HEADER) bytes), labels are dropped
    /// (logged) rather than waited for forever.
    pub fn new(
        driver: SerialQueueHandle,
        driver_channel: u8,
        mut clients: [Option<Client>; N],
    ) -> Self {
        if (driver.capacity() as usize) < MAX_HEADER {
            for c in clients.iter_mut().flatten() {
                if c.label.take().is_some() {
                    log::error!(target: "serial", "driver TX queue too small for labels: client on channel {} unlabelled", c.channel);
                }
            }
        }
        let slots = clients.map(|c| c.map(|client| Slot { client, mid_line: false }));
        VirtTx { driver, driver_channel, slots, last: None, next: 0 }
    }

    /// Moves what can be moved; call it on every notification (a client's
    /// data or the driver's "space again").
    pub fn handle(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let mut moved_any = false;
        // Bounded: a driver whose index flips could otherwise keep us here.
        'again: for _ in 0..ROUNDS {
            let owner = self.owner();
            // The owner of an unfinished line first, then everyone else.
            let next = self.next;
            let order = owner.into_iter().chain((0..N).map(|k| (next + k) % N));
            for (k, i) in order.enumerate() {
                if k > 0 && Some(i) == owner {
                    continue;
                }
                let (moved, served) = self.serve(i);
                moved_any |= moved;
                let Some(slot) = self.slots[i].as_mut() else { continue };
                let queue = &slot.client.queue;
                if moved && queue.require_producer_signal() {
                    queue.cancel_producer_signal();
                    notify.add(slot.client.channel);
                }
                if let Served::Blocked(need) = served {
                    if !slot.mid_line {
                        // At a line boundary: the others go first next time.
                        self.next = (i + 1) % N;
                    }
                    // Wait for the driver's signal, unless it drained meanwhile.
                    if self.driver.request_consumer_signal() && self.driver.free_space() >= need {
                        continue 'again;
                    }
                    break 'again;
                }
            }
            self.next = (self.next + 1) % N.max(1);
            break;
        }
        if moved_any {
            notify.add(self.driver_channel);
        }
        notify
    }

    /// The client whose line is unfinished on the console, if any.
    fn owner(&self) -> Option<usize> {
        self.last.filter(|&i| self.slots[i].as_ref().is_some_and(|s| s.mid_line))
    }

    /// Moves client `i`'s bytes (with their labels) to the driver queue until
    /// its queue is empty or the driver's is full. Returns whether any byte
    /// moved, and how it ended.
    fn serve(&mut self, i: usize) -> (bool, Served) {
        let mut buf = [0u8; CHUNK];
        let mut moved = false;
        loop {
            let Some(slot) = self.slots[i].as_ref() else { return (moved, Served::Empty) };
            let avail = slot.client.queue.len() as usize;
            if avail == 0 {
                return (moved, Served::Empty);
            }
            let labelled = slot.client.label.is_some();
            if !slot.mid_line {
                match self.start_line(i) {
                    Ok(wrote) => moved |= wrote,
                    Err(need) => return (moved, Served::Blocked(need)),
                }
            }
            let n = avail.min(self.driver.free_space() as usize).min(CHUNK);
            if n == 0 {
                return (moved, Served::Blocked(1));
            }
            let Some(slot) = self.slots[i].as_mut() else { return (moved, Served::Empty) };
            let got = slot.client.queue.peek_batch(&mut buf[..n]);
            if got == 0 {
                return (moved, Served::Empty);
            }
            // A labelled client's line ends at its `\n`: the next needs a label.
            let take = match labelled {
                true => buf[..got].iter().position(|&b| b == b'\n').map_or(got, |p| p + 1),
                false => got,
            };
            // Bytes leave the client's queue only once they are in the driver's.
            let put = self.driver.enqueue_batch(&buf[..take]);
            slot.client.queue.skip(put);
            if put > 0 {
                moved = true;
                slot.mid_line = buf[put - 1] != b'\n';
                self.took_over(i);
            }
            if put < take {
                corrupt_driver(put, take);
                return (moved, Served::Blocked(1));
            }
        }
    }

    /// Client `i` has a byte that starts a line: writes its header (a break
    /// if the line cuts another client's, and the label), whole. `Ok`: done
    /// (whether bytes were written); `Err(n)`: the header needs `n` free bytes.
    fn start_line(&mut self, i: usize) -> Result<bool, u32> {
        let labelled = |s: Option<&Slot>| s.is_some_and(|s| s.client.label.is_some());
        let cut = self.owner().filter(|&o| o != i);
        let line_break = cut
            .is_some_and(|o| labelled(self.slots[i].as_ref()) || labelled(self.slots[o].as_ref()));
        let label = self.slots[i].as_ref().and_then(|s| s.client.label.as_ref());
        let header = Header::new(line_break, label);
        let header = header.as_bytes();
        if header.is_empty() {
            return Ok(false);
        }
        let need = header.len() as u32;
        if self.driver.free_space() < need {
            return Err(need);
        }
        let put = self.driver.enqueue_batch(header);
        if put < header.len() {
            corrupt_driver(put, header.len());
            return Err(need);
        }
        self.took_over(i);
        if let Some(s) = self.slots[i].as_mut() {
            s.mid_line = true;
        }
        Ok(true)
    }

    /// Client `i` wrote to the driver queue: a line another client left
    /// unfinished is over (its next byte starts a new one).
    fn took_over(&mut self, i: usize) {
        if let Some(last) = self.last.filter(|&l| l != i) {
            if let Some(s) = self.slots[last].as_mut() {
                s.mid_line = false;
            }
        }
        self.last = Some(i);
    }
}

/// We are the driver queue's only producer and it had room: the driver moved
/// its index backwards. Its queue is not trusted further this round.
fn corrupt_driver(put: usize, wanted: usize) {
    log::warn!(target: "serial", "TX driver queue shrank under us ({put} of {wanted} bytes fit): corrupt driver index");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sddf_bindings::SharedRegion;
    use std::vec;
    use std::vec::Vec;

    pub(crate) fn queue(cap: u32) -> (SerialQueueHandle, SerialQueueHandle) {
        let q = SharedRegion::leak_zeroed(64);
        let d = SharedRegion::leak_zeroed(cap as usize);
        (
            SerialQueueHandle::new(q.clone(), d.clone(), cap).unwrap(),
            SerialQueueHandle::new(q, d, cap).unwrap(),
        )
    }

    fn drain(q: &mut SerialQueueHandle) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = q.dequeue_batch(&mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn clients_output_reaches_the_driver_whole_and_in_order() {
        let (drv_side, mut drv) = queue(1024);
        let (a, mut a_client) = queue(128);
        let (b, mut b_client) = queue(128);
        let mut virt = VirtTx::new(
            drv_side,
            0,
            [
                Some(Client { queue: a, channel: 1, label: None }),
                None,
                Some(Client { queue: b, channel: 2, label: None }),
            ],
        );
        a_client.enqueue_batch(b"hello from a\n");
        b_client.enqueue_batch(b"hello from b\n");
        let n = virt.handle();
        assert!(n.contains(0));
        let out = drain(&mut drv);
        assert_eq!(out, b"hello from a\nhello from b\n");
        assert!(virt.handle().is_empty(), "nothing to do, nobody notified");
    }

    #[test]
    fn a_full_driver_queue_loses_nothing_and_every_side_is_signalled() {
        let (drv_side, mut drv) = queue(64);
        let (a, mut a_client) = queue(256);
        let (b, mut b_client) = queue(256);
        let mut virt = VirtTx::new(
            drv_side,
            0,
            [
                Some(Client { queue: a, channel: 1, label: None }),
                Some(Client { queue: b, channel: 2, label: None }),
            ],
        );
        let a_data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let b_data: Vec<u8> = (0..1000u32).map(|i| b'A' + (i % 26) as u8).collect();
        let (mut a_sent, mut b_sent) = (0, 0);
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        for _ in 0..10_000 {
            if a_sent < a_data.len() {
                a_sent += a_client.enqueue_batch(&a_data[a_sent..]);
                a_client.request_consumer_signal();
            }
            if b_sent < b_data.len() {
                b_sent += b_client.enqueue_batch(&b_data[b_sent..]);
                b_client.request_consumer_signal();
            }
            virt.handle();
            // The driver drains; when the virtualiser asked, it signals.
            for byte in drain(&mut drv) {
                if byte.is_ascii_lowercase() {
                    got_a.push(byte)
                } else {
                    got_b.push(byte)
                }
            }
            if got_a.len() == a_data.len() && got_b.len() == b_data.len() {
                break;
            }
        }
        assert_eq!(got_a, a_data);
        assert_eq!(got_b, b_data);
    }

    #[test]
    fn the_driver_is_asked_for_a_signal_when_full() {
        let (drv_side, mut drv) = queue(16);
        let (a, mut a_client) = queue(64);
        let mut virt =
            VirtTx::new(drv_side, 0, [Some(Client { queue: a, channel: 1, label: None })]);
        a_client.enqueue_batch(&[b'x'; 40]);
        virt.handle();
        assert!(drv.require_producer_signal(), "virt_tx waits for the driver");
        drv.cancel_producer_signal();
        assert_eq!(drain(&mut drv).len(), 16);
        virt.handle();
        assert_eq!(drain(&mut drv).len(), 16);
    }

    #[test]
    fn a_driver_queue_that_fills_under_us_loses_no_byte() {
        use core::sync::atomic::Ordering::Relaxed;
        let (dq, dd) = (SharedRegion::leak_zeroed(64), SharedRegion::leak_zeroed(64));
        let driver = SerialQueueHandle::new(dq.clone(), dd, 64).unwrap();
        let (cq, cd) = (SharedRegion::leak_zeroed(64), SharedRegion::leak_zeroed(256));
        let mut client = SerialQueueHandle::new(cq.clone(), cd.clone(), 256).unwrap();
        let theirs = SerialQueueHandle::new(cq.clone(), cd, 256).unwrap();
        let (c_tail, c_head) = (cq.atomic_u32(0).unwrap(), cq.atomic_u32(4).unwrap());
        let mut virt =
            VirtTx::new(driver, 0, [Some(Client { queue: theirs, channel: 1, label: None })]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = crate::blk::virt::tests::flip_head(dq.clone(), 4, 0, 64, stop.clone());
        let driver_tail = dq.atomic_u32(0).unwrap();
        let (mut sent, mut lost) = (0usize, 0usize);
        for round in 0..50_000u32 {
            sent += client.enqueue_batch(&[round as u8; 7]);
            virt.handle();
            let published = driver_tail.load(Relaxed) as usize;
            let waiting = c_tail.load(Relaxed).wrapping_sub(c_head.load(Relaxed)) as usize;
            lost = sent - waiting - published;
            if lost != 0 {
                break;
            }
        }
        stop.store(true, Relaxed);
        flipper.join().unwrap();
        assert_eq!(lost, 0, "bytes left the client's queue but never reached the driver's");
    }

    // Labelled output. Clients "A" and "B" are labelled `[A] ` and `[B] `.

    fn label(text: &[u8]) -> Option<Label> {
        Label::new(text, None)
    }

    /// A virtualiser over a driver queue of `cap`, clients with these labels
    /// (client i on channel i + 1); the driver's end and the clients' ends.
    fn labelled<const N: usize>(
        cap: u32,
        labels: [Option<Label>; N],
    ) -> (VirtTx<N>, SerialQueueHandle, [SerialQueueHandle; N]) {
        let (drv_side, drv) = queue(cap);
        let mut ends = Vec::new();
        let mut ch = 0;
        let clients = labels.map(|label| {
            let (ours, theirs) = queue(256);
            ends.push(theirs);
            ch += 1;
            Some(Client { queue: ours, channel: ch, label })
        });
        let ends = ends.try_into().unwrap_or_else(|_| unreachable!());
        (VirtTx::new(drv_side, 0, clients), drv, ends)
    }

    #[test]
    fn a_labelled_and_a_plain_client_cut_each_other_cleanly() {
        let (mut v, mut drv, [mut a, mut b]) = labelled(1024, [label(b"[A] "), None]);
        for (end, bytes) in [(0, &b"x"[..]), (1, b"y\np"), (0, b"z\n"), (1, b"q\n")] {
            [&mut a, &mut b][end].enqueue_batch(bytes);
            v.handle();
        }
        // Each cut line ends before the other client's bytes; the plain client gets no label.
        assert_eq!(drain(&mut drv), b"[A] x\r\ny\np\r\n[A] z\nq\n");
    }

    #[test]
    fn a_label_starts_every_line_and_only_lines() {
        let (mut v, mut drv, [mut a]) = labelled(1024, [label(b"[A] ")]);
        a.enqueue_batch(b"one\ntwo\n\nthr");
        v.handle();
        a.enqueue_batch(b"ee\nfour");
        v.handle();
        assert_eq!(drain(&mut drv), b"[A] one\n[A] two\n[A] \n[A] three\n[A] four");
        assert!(v.handle().is_empty(), "a line start with nothing after it writes no label");
    }

    #[test]
    fn a_coloured_label_leaves_the_line_untouched() {
        let green = Label::new(b"[vm0] ", Some(super::super::label::Colour::Green));
        let (mut v, mut drv, [mut a]) = labelled(1024, [green]);
        a.enqueue_batch(b"login: \x1b[1mbold\x1b[0m\n");
        v.handle();
        assert_eq!(drain(&mut drv), b"\x1b[32m[vm0] \x1b[0mlogin: \x1b[1mbold\x1b[0m\n");
    }

    #[test]
    fn one_unlabelled_client_passes_every_byte_unchanged() {
        let (mut v, mut drv, [mut a]) = labelled(64, [None]);
        // Every byte value, newlines and escapes included, through a small queue.
        let data: Vec<u8> =
            (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let (mut sent, mut out) = (0, Vec::new());
        while out.len() < data.len() {
            sent += a.enqueue_batch(&data[sent..(sent + 100).min(data.len())]);
            v.handle();
            let mut buf = [0u8; 48];
            let n = drv.dequeue_batch(&mut buf);
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
    }

    #[test]
    fn a_client_mid_line_keeps_the_console_when_the_driver_fills() {
        // Client 0 (B) comes first in the round-robin, but A's line is unfinished.
        let (mut v, mut drv, [mut b, mut a]) = labelled(32, [label(b"[B] "), label(b"[A] ")]);
        let line = [&[b'a'; 39][..], b"\n"].concat();
        a.enqueue_batch(&line);
        v.handle();
        assert!(drv.require_producer_signal(), "waits for the driver");
        b.enqueue_batch(b"bb\n");
        let mut out = drain(&mut drv);
        while out.len() < 4 + 40 + 7 {
            v.handle();
            out.extend(drain(&mut drv));
        }
        assert_eq!(out, [&b"[A] "[..], &line, b"[B] bb\n"].concat());
    }

    #[test]
    fn an_unlabelled_client_mid_line_keeps_the_console_too() {
        let (mut v, mut drv, [mut b, mut a]) = labelled(32, [None, None]);
        a.enqueue_batch(&[b'a'; 40]);
        v.handle();
        b.enqueue_batch(b"bb\n");
        assert_eq!(drain(&mut drv), [b'a'; 32]);
        v.handle();
        assert_eq!(drain(&mut drv), b"aaaaaaaabb\n", "no break without labels: bytes only");
    }

    #[test]
    fn a_cut_line_ends_and_its_continuation_is_labelled_again() {
        let (mut v, mut drv, [mut a, mut b]) = labelled(1024, [label(b"[A] "), label(b"[B] ")]);
        a.enqueue_batch(b"login: ");
        v.handle();
        b.enqueue_batch(b"[ 1.0] eth0 up\nhalf");
        v.handle();
        a.enqueue_batch(b"root\n");
        v.handle();
        b.enqueue_batch(b" done\n");
        v.handle();
        assert_eq!(
            drain(&mut drv),
            b"[A] login: \r\n[B] [ 1.0] eth0 up\n[B] half\r\n[A] root\n[B]  done\n"
        );
    }

    /// The driver consumes `n` bytes.
    fn consume(drv: &mut SerialQueueHandle, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        let got = drv.dequeue_batch(&mut buf);
        buf.truncate(got);
        buf
    }

    #[test]
    fn a_label_is_never_half_written_into_a_full_driver_queue() {
        let (mut v, mut drv, [mut a, mut b]) = labelled(32, [label(b"[A] "), label(b"[B] ")]);
        a.enqueue_batch(&[b'x'; 28]); // 4 + 28: exactly full, A's line unfinished
        v.handle();
        b.enqueue_batch(b"y\n"); // needs "\r\n[B] " first: 6 bytes
        v.handle();
        let mut out = consume(&mut drv, 5);
        v.handle();
        assert_eq!(drv.len(), 27, "5 free bytes, no part of the 6-byte header written");
        assert!(drv.require_producer_signal(), "it waits for the driver instead");
        drv.cancel_producer_signal();
        out.extend(consume(&mut drv, 1));
        v.handle();
        out.extend(drain(&mut drv));
        v.handle();
        out.extend(drain(&mut drv));
        assert_eq!(out, [&b"[A] "[..], &[b'x'; 28], b"\r\n[B] y\n"].concat());
    }

    #[test]
    fn a_driver_queue_too_small_for_a_label_gets_plain_bytes() {
        let (mut v, mut drv, [mut a]) = labelled(16, [label(b"[A] ")]);
        a.enqueue_batch(b"hi\n");
        v.handle();
        assert_eq!(drain(&mut drv), b"hi\n");
    }

    /// A tiny deterministic generator (xorshift32) for the stress test.
    fn next_rand(x: &mut u32) -> u32 {
        *x ^= *x << 13;
        *x ^= *x >> 17;
        *x ^= *x << 5;
        *x
    }

    /// Splits labelled console output back into each client's bytes,
    /// checking that every line starts with a label and holds one client's
    /// bytes only (clients write disjoint alphabets and never `\r`).
    fn unlabel(out: &[u8], labels: &[&[u8]], alphabet: fn(usize, u8) -> bool) -> Vec<Vec<u8>> {
        let mut got = vec![Vec::new(); labels.len()];
        let mut rest = out;
        while !rest.is_empty() {
            let who = labels.iter().position(|l| rest.starts_with(l));
            let who =
                who.unwrap_or_else(|| panic!("unlabelled line: {:?}", &rest[..rest.len().min(20)]));
            rest = &rest[labels[who].len()..];
            loop {
                match rest {
                    [] => break,
                    [b'\r', b'\n', tail @ ..] => {
                        rest = tail; // a line cut by another client
                        break;
                    }
                    [b, tail @ ..] => {
                        assert!(*b == b'\n' || alphabet(who, *b), "client {who} line holds {b:#x}");
                        got[who].push(*b);
                        rest = tail;
                        if *b == b'\n' {
                            break;
                        }
                    }
                }
            }
        }
        got
    }

    #[test]
    fn three_clients_at_random_keep_every_byte_labelled_and_in_order() {
        let names: [&[u8]; 3] = [b"[A] ", b"[B] ", b"[C] "];
        let (mut v, mut drv, mut ends) = labelled(32, names.map(label));
        let bases = [b'a', b'A', b'0'];
        let alphabet = |who: usize, b: u8| b.wrapping_sub([b'a', b'A', b'0'][who]) < 10;
        let mut rng = 0x1234_5678u32;
        let data: Vec<Vec<u8>> = bases
            .iter()
            .map(|&base| {
                (0..3000)
                    .map(|_| match next_rand(&mut rng) % 8 {
                        0 => b'\n',
                        r => base + (r as u8),
                    })
                    .collect()
            })
            .collect();
        let mut sent = [0usize; 3];
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let who = next_rand(&mut rng) as usize % 3;
            let len = next_rand(&mut rng) as usize % 40;
            let end = (sent[who] + len).min(data[who].len());
            sent[who] += ends[who].enqueue_batch(&data[who][sent[who]..end]);
            v.handle();
            out.extend(consume(&mut drv, next_rand(&mut rng) as usize % 40));
            let queued = |e: &SerialQueueHandle| e.free_space() < e.capacity();
            if sent.iter().zip(&data).all(|(s, d)| *s == d.len()) && !ends.iter().any(queued) {
                v.handle();
                out.extend(drain(&mut drv));
                break;
            }
        }
        assert!(out.len() > 9000, "the run completed: {} bytes out", out.len());
        assert_eq!(unlabel(&out, &names, alphabet), data);
    }
}
