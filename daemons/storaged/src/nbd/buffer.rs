//! Per-connection reuse of request and reply buffers.
//!
//! A streaming client reads and writes the same few sizes over and over; handing back a
//! buffer that has already been faulted in saves an allocation, a zero-fill of fresh pages and
//! the page faults, which matter at 32 MiB requests and at high 4 KiB IOPS alike.

use parking_lot::Mutex;

/// A small best-fit free list of byte buffers.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_buffers: usize,
    max_bytes: usize,
}

impl BufferPool {
    pub fn new(max_buffers: usize, max_bytes: usize) -> Self {
        BufferPool {
            free: Mutex::new(Vec::with_capacity(max_buffers)),
            max_buffers,
            max_bytes,
        }
    }

    /// A buffer of exactly `len` initialised bytes (contents unspecified).
    pub fn get(&self, len: usize) -> Vec<u8> {
        let reused = {
            let mut free = self.free.lock();
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            best.map(|i| free.swap_remove(i))
        };
        match reused {
            Some(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            None => vec![0; len],
        }
    }

    /// Returns a buffer for reuse. When the pool is full it takes the place of the smallest
    /// buffer held, if that one is smaller (the small ones are the cheap ones to allocate:
    /// a pool full of 16-byte replies must not turn every 1 MiB write's buffer away); it is
    /// dropped otherwise, or when it would make the pool hold more than its bytes.
    pub fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.lock();
        let held: usize = free.iter().map(Vec::capacity).sum();
        if free.len() < self.max_buffers {
            if held + buf.capacity() <= self.max_bytes {
                free.push(buf);
            }
            return;
        }
        let smallest = free
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, b)| (i, b.capacity()));
        if let Some((i, cap)) = smallest
            && cap < buf.capacity()
            && held - cap + buf.capacity() <= self.max_bytes
        {
            free[i] = buf;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_smallest_buffer_that_fits() {
        let pool = BufferPool::new(4, 1 << 20);
        let small = pool.get(100);
        let big = pool.get(10_000);
        let (small_ptr, big_ptr) = (small.as_ptr(), big.as_ptr());
        pool.put(big);
        pool.put(small);
        let again = pool.get(50);
        assert_eq!(again.len(), 50);
        assert_eq!(again.as_ptr(), small_ptr);
        let again_big = pool.get(5_000);
        assert_eq!(again_big.as_ptr(), big_ptr);
        assert_eq!(again_big.len(), 5_000);
    }

    #[test]
    fn a_full_pool_of_small_buffers_still_keeps_a_big_one() {
        let pool = BufferPool::new(2, 1 << 20);
        pool.put(vec![0; 16]);
        pool.put(vec![0; 32]);
        let big = vec![0u8; 4096];
        let big_ptr = big.as_ptr();
        pool.put(big);
        let caps: Vec<usize> = pool.free.lock().iter().map(Vec::capacity).collect();
        assert_eq!(caps, [4096, 32], "the smallest made way");
        let again = pool.get(4096);
        assert_eq!(again.as_ptr(), big_ptr);
        pool.put(again);
        // A small one does not push a bigger one out.
        pool.put(vec![0; 8]);
        assert_eq!(pool.free.lock().len(), 2);
        assert!(pool.free.lock().iter().all(|b| b.capacity() >= 16));
    }

    #[test]
    fn respects_byte_and_count_limits() {
        let pool = BufferPool::new(1, 1000);
        pool.put(vec![0; 2000]);
        assert!(pool.free.lock().is_empty());
        pool.put(vec![0; 10]);
        pool.put(vec![0; 10]);
        assert_eq!(pool.free.lock().len(), 1);
    }
}
