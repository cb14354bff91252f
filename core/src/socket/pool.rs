//! A small pool of payload and write buffers for large sends.
//!
//! A send copies the caller's bytes into a `Vec` (the caller may reuse its buffer at once,
//! as ws allows). Above glibc's mmap threshold (128 KiB) every fresh allocation is a new
//! mapping whose pages fault in on first write and are unmapped on free: for 1 MiB
//! messages that costs more than the copy itself. Buffers written out come back here and
//! are reused instead.

use std::sync::Mutex;

/// Buffers smaller than this are not pooled (the allocator handles them well).
const MIN_POOLED: usize = 64 * 1024;
/// Largest buffer kept.
const MAX_POOLED: usize = 8 * 1024 * 1024;
/// Most bytes kept in the pool.
const MAX_TOTAL: usize = 32 * 1024 * 1024;

struct Pool {
    buffers: Vec<Vec<u8>>,
    total: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    buffers: Vec::new(),
    total: 0,
});

/// A copy of `data`, in a pooled buffer when it is large.
pub fn copy_of(data: &[u8]) -> Vec<u8> {
    if data.len() >= MIN_POOLED {
        if let Ok(mut pool) = POOL.lock() {
            if let Some(i) = pool.buffers.iter().position(|b| b.capacity() >= data.len()) {
                let mut buf = pool.buffers.swap_remove(i);
                pool.total -= buf.capacity();
                drop(pool);
                buf.clear();
                buf.extend_from_slice(data);
                return buf;
            }
        }
    }
    data.to_vec()
}

/// An empty buffer with room for `capacity` bytes: a pooled one when that is large and the
/// pool has one.
pub fn with_capacity(capacity: usize) -> Vec<u8> {
    if capacity >= MIN_POOLED {
        if let Ok(mut pool) = POOL.lock() {
            if let Some(i) = pool.buffers.iter().position(|b| b.capacity() >= capacity) {
                let mut buf = pool.buffers.swap_remove(i);
                pool.total -= buf.capacity();
                drop(pool);
                buf.clear();
                return buf;
            }
        }
    }
    Vec::with_capacity(capacity)
}

/// Gives a buffer back for reuse (dropped if small, huge, or the pool is full).
pub fn recycle(buf: Vec<u8>) {
    let cap = buf.capacity();
    if !(MIN_POOLED..=MAX_POOLED).contains(&cap) {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        if pool.total + cap <= MAX_TOTAL {
            pool.total += cap;
            pool.buffers.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_large_buffers() {
        let data = vec![7u8; 200_000];
        let a = copy_of(&data);
        let ptr = a.as_ptr();
        recycle(a);
        let b = copy_of(&data[..150_000]);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b, data[..150_000]);
        assert_eq!(copy_of(b"small"), b"small");
    }

    #[test]
    fn lends_large_empty_buffers() {
        let mut a = with_capacity(300_000);
        a.extend_from_slice(&[1; 10]);
        let ptr = a.as_ptr();
        recycle(a);
        let b = with_capacity(250_000);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 0));
        assert!(with_capacity(100).capacity() >= 100);
    }
}
