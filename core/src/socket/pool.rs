//! A small pool of large buffers (sends' payloads and write buffers, received messages'
//! payloads), and small payload buffers kept by the thread that frees them.
//!
//! A send copies the caller's bytes into a `Vec` (the caller may reuse its buffer at once,
//! as ws allows). Above glibc's mmap threshold (128 KiB) every fresh allocation is a new
//! mapping whose pages fault in on first write and are unmapped on free: for 1 MiB
//! messages that costs more than the copy itself. Buffers written out come back here and
//! are reused instead. So do received messages' buffers, once JavaScript lets go of them
//! (see `src/bindings/flat.rs`): at 1 MiB one way, the listener took 110 page faults per
//! message, about 12 % of its CPU.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Buffers smaller than this are not pooled (the allocator handles them well).
const MIN_POOLED: usize = 64 * 1024;
/// Largest buffer kept: 8 MiB, and room for a frame's header (see `copy_with_room`).
const MAX_POOLED: usize = 8 * 1024 * 1024 + crate::socket::frame::MAX_CLIENT_HEADER;
/// Most bytes kept in the pool.
const MAX_TOTAL: usize = 32 * 1024 * 1024;

/// Large buffers given back, for reuse, oldest first.
struct Pool {
    buffers: VecDeque<Vec<u8>>,
    /// Their capacities' sum.
    total: usize,
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            buffers: VecDeque::new(),
            total: 0,
        }
    }

    /// The smallest buffer whose capacity `fits`, emptied, if `len` is large and there is
    /// one (the smallest: a large one stays for a large message).
    fn take(&mut self, len: usize, fits: impl Fn(usize) -> bool) -> Option<Vec<u8>> {
        if len < MIN_POOLED {
            return None;
        }
        let (i, _) = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| fits(b.capacity()))
            .min_by_key(|(_, b)| b.capacity())?;
        let mut buf = self.buffers.remove(i)?;
        self.total -= buf.capacity();
        buf.clear();
        Some(buf)
    }

    /// Keeps `buf` (large, see [`pooled_size`]); the oldest buffers make room for it when the
    /// pool is full, so that what it holds follows the sizes in use now (a buffer that fits
    /// no message any more does not stay for good). Returns the buffers let go, for the
    /// caller to free once it has unlocked the pool.
    fn put(&mut self, buf: Vec<u8>) -> Vec<Vec<u8>> {
        let cap = buf.capacity();
        let mut gone = Vec::new();
        while self.total + cap > MAX_TOTAL {
            match self.buffers.pop_front() {
                Some(old) => {
                    self.total -= old.capacity();
                    gone.push(old);
                }
                None => return gone,
            }
        }
        self.total += cap;
        self.buffers.push_back(buf);
        gone
    }
}

/// Whether a buffer of `cap` bytes is worth keeping: large (small ones the allocator handles
/// well) and not huge.
fn pooled_size(cap: usize) -> bool {
    (MIN_POOLED..=MAX_POOLED).contains(&cap)
}

/// The process's pool (the tests use pools of their own: tests run at the same time).
static POOL: Mutex<Pool> = Mutex::new(Pool::new());

/// A buffer from the process's pool (see [`Pool::take`]).
fn take(len: usize, fits: impl Fn(usize) -> bool) -> Option<Vec<u8>> {
    POOL.lock().ok()?.take(len, fits)
}

/// A copy of `data`, in a pooled buffer when it is large.
pub fn copy_of(data: &[u8]) -> Vec<u8> {
    match take(data.len(), |cap| cap >= data.len()) {
        Some(mut buf) => {
            buf.extend_from_slice(data);
            buf
        }
        None => data.to_vec(),
    }
}

/// `room` zero bytes then a copy of `data`, in a pooled buffer when it is large: a send the
/// connection frames in place (its header goes into the room, see
/// `frame::frame_in_room`), so that the bytes are copied once, here, and not again when
/// framed.
pub fn copy_with_room(room: usize, data: &[u8]) -> Vec<u8> {
    let mut buf = with_capacity(room + data.len());
    buf.resize(room, 0);
    buf.extend_from_slice(data);
    buf
}

/// An empty buffer with room for `capacity` bytes: a pooled one when that is large and the
/// pool has one.
pub fn with_capacity(capacity: usize) -> Vec<u8> {
    take(capacity, |cap| cap >= capacity).unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Whether a buffer of `cap` bytes may hold a received message's `len` bytes: at most an
/// eighth more (JavaScript gets the buffer itself, which should not hold much more than the
/// message).
fn fits_message(len: usize, cap: usize) -> bool {
    cap >= len && cap - len <= len / 8
}

/// An empty buffer for `len` bytes of a received message (its first part, at most 1 MiB, for
/// a large frame: the decoder grows the buffer as bytes arrive, so that a frame that stalls
/// holds no more): a pooled one when `len` is large and the pool has one that fits it
/// ([`fits_message`]), or a fresh one.
pub fn for_message(len: usize) -> Vec<u8> {
    if len > MAX_POOLED {
        return Vec::with_capacity(len);
    }
    take(len, |cap| fits_message(len, cap)).unwrap_or_else(|| Vec::with_capacity(len))
}

/// Bytes of buffers the pool holds now.
pub fn pooled() -> usize {
    POOL.lock().map(|p| p.total).unwrap_or(0)
}

/// Gives a buffer back for reuse: dropped if small or huge; in a full pool, it takes the
/// place of the oldest.
pub fn recycle(buf: Vec<u8>) {
    if !pooled_size(buf.capacity()) {
        return;
    }
    let gone = match POOL.lock() {
        Ok(mut pool) => pool.put(buf),
        Err(_) => return,
    };
    // Freed with the pool unlocked.
    drop(gone);
}

/// Whole messages below this size are decoded into buffers of exactly this capacity on a
/// thread that hands them back ([`give_back_small`]).
pub const SMALL: usize = 512;
/// Most small buffers a thread keeps.
const SMALL_KEPT: usize = 256;

thread_local! {
    /// The small buffers this thread was given back, or `None` while it never was: a
    /// socket read on the JavaScript thread decodes its messages there and the hub frees
    /// them there once copied out, so the allocator need not see each message twice. Other
    /// threads allocate exactly what a payload needs, as before.
    static SMALL_BUFFERS: RefCell<Option<Vec<Vec<u8>>>> = const { RefCell::new(None) };
}

/// An empty buffer for a whole message's payload of `len` bytes: a kept one when this
/// thread keeps small buffers and `len` is small.
pub fn for_payload(len: usize) -> Vec<u8> {
    if len == 0 || len >= SMALL {
        return Vec::with_capacity(len);
    }
    SMALL_BUFFERS
        .try_with(|s| match s.try_borrow_mut().as_deref_mut() {
            Ok(Some(kept)) => kept.pop().unwrap_or_else(|| Vec::with_capacity(SMALL)),
            _ => Vec::with_capacity(len),
        })
        .unwrap_or_else(|_| Vec::with_capacity(len))
}

/// Takes back a payload whose bytes were copied out on the thread that delivers payloads to
/// their consumer (from then on, this thread keeps small buffers): one of
/// [`for_payload`]'s small buffers is kept for the next, anything else freed.
pub fn give_back_small(buf: Vec<u8>) {
    keep_small(buf, true);
}

/// As [`give_back_small`], but only on a thread that already keeps small buffers: a thread
/// that reads (a tokio thread) must not start to, or each small message it queues for a
/// consumer that is behind would hold a whole small buffer.
pub fn give_back_small_if_kept(buf: Vec<u8>) {
    keep_small(buf, false);
}

/// Keeps `buf` if it is one of the small buffers and this thread keeps them (or starts to,
/// with `start`).
fn keep_small(mut buf: Vec<u8>, start: bool) {
    let _ = SMALL_BUFFERS.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            let kept = match s.as_mut() {
                Some(kept) => kept,
                None if start => s.insert(Vec::new()),
                None => return,
            };
            if buf.capacity() == SMALL && kept.len() < SMALL_KEPT {
                buf.clear();
                kept.push(buf);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_the_smallest_large_buffer_that_fits() {
        let mut pool = Pool::new();
        let mut a = Vec::with_capacity(300_000);
        a.extend_from_slice(&[1; 10]);
        let ptr = a.as_ptr();
        assert!(pool.put(Vec::with_capacity(2_000_000)).is_empty());
        assert!(pool.put(a).is_empty());
        assert!(pool.put(Vec::with_capacity(400_000)).is_empty());
        assert_eq!(pool.total, 2_700_000);
        assert!(
            pool.take(3_000_000, |cap| cap >= 3_000_000).is_none(),
            "too small"
        );
        assert!(
            pool.take(60_000, |_| true).is_none(),
            "small requests are not lent"
        );
        let b = pool.take(250_000, |cap| cap >= 250_000).expect("lent");
        assert_eq!(
            (b.as_ptr(), b.len(), b.capacity()),
            (ptr, 0, 300_000),
            "the smallest"
        );
        assert_eq!(pool.total, 2_400_000);
        // Only large buffers, and not huge ones, are worth keeping.
        assert!(!pooled_size(MIN_POOLED - 1) && pooled_size(MIN_POOLED));
        assert!(pooled_size(MAX_POOLED) && !pooled_size(MAX_POOLED + 1));
        // Full, the oldest make room for the newest, and are handed back to be freed.
        let mut pool = Pool::new();
        let mut newest = Vec::new();
        let mut gone = 0;
        for _ in 0..5 {
            let b = Vec::with_capacity(MAX_POOLED);
            newest.push(b.as_ptr() as usize);
            gone += pool.put(b).len();
        }
        let kept: Vec<usize> = pool.buffers.iter().map(|b| b.as_ptr() as usize).collect();
        let room = MAX_TOTAL / MAX_POOLED;
        assert_eq!(kept, newest[5 - room..]);
        assert_eq!(gone, 5 - room);
        assert_eq!(pool.total, room * MAX_POOLED);
    }

    #[test]
    fn a_received_message_takes_a_buffer_at_most_an_eighth_larger() {
        let mut pool = Pool::new();
        pool.put(Vec::with_capacity(1_200_000));
        let fits = |len: usize| move |cap: usize| fits_message(len, cap);
        assert!(
            pool.take(1_000_000, fits(1_000_000)).is_none(),
            "a fifth larger"
        );
        let b = pool
            .take(1_100_000, fits(1_100_000))
            .expect("a twelfth larger");
        assert_eq!(b.capacity(), 1_200_000);
        assert!(fits_message(
            1 << 20,
            (1 << 20) + crate::socket::frame::MAX_CLIENT_HEADER
        ));
        assert!(!fits_message(1 << 20, (1 << 20) - 1));
        // Past the largest pooled size: a fresh buffer of the exact size.
        assert_eq!(for_message(MAX_POOLED + 1).capacity(), MAX_POOLED + 1);
    }

    #[test]
    fn the_process_pool_serves_the_helpers() {
        // Checks that hold whichever buffer is lent (the process's pool is shared by tests
        // that run at the same time).
        let data = vec![7u8; 3_000_017];
        let a = copy_of(&data);
        assert_eq!(a, data);
        recycle(a);
        let b = copy_of(&data[..2_900_000]);
        assert_eq!(b, data[..2_900_000]);
        let c = copy_with_room(14, &data[..100_000]);
        assert_eq!((&c[..14], &c[14..]), (&[0u8; 14][..], &data[..100_000]));
        let d = for_message(1_000_001);
        assert!(d.is_empty() && d.capacity() >= 1_000_001);
        assert_eq!(copy_of(b"small"), b"small");
        assert!(with_capacity(100).capacity() >= 100);
        recycle(Vec::with_capacity(10));
    }

    #[test]
    fn small_buffers_are_kept_only_by_a_thread_that_gives_them_back() {
        std::thread::spawn(|| {
            // A thread that never gave one back allocates what a payload needs.
            assert_eq!(for_payload(64).capacity(), 64);
            assert_eq!(for_payload(0).capacity(), 0);
            give_back_small(vec![1; 64]);
            // From then on, small payloads get the kept size, and come back.
            let a = for_payload(64);
            assert_eq!(a.capacity(), SMALL);
            let ptr = a.as_ptr();
            give_back_small(a);
            let b = for_payload(300);
            assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
            // Large payloads are never from the kept ones.
            assert_eq!(for_payload(SMALL).capacity(), SMALL);
            assert_eq!(for_payload(4096).capacity(), 4096);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_reading_thread_does_not_start_keeping() {
        std::thread::spawn(|| {
            give_back_small_if_kept(vec![1; 64]);
            assert_eq!(for_payload(64).capacity(), 64);
            give_back_small(Vec::new());
            let a = for_payload(64);
            let ptr = a.as_ptr();
            give_back_small_if_kept(a);
            let b = for_payload(64);
            assert_eq!(b.as_ptr(), ptr);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn keeps_a_bounded_number_of_small_buffers() {
        std::thread::spawn(|| {
            give_back_small(Vec::new());
            let all: Vec<Vec<u8>> = (0..SMALL_KEPT + 10).map(|_| for_payload(8)).collect();
            for b in all {
                give_back_small(b);
            }
            let kept = SMALL_BUFFERS.with(|s| s.borrow().as_ref().map_or(0, Vec::len));
            assert_eq!(kept, SMALL_KEPT);
        })
        .join()
        .unwrap();
    }
}
