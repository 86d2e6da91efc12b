//! The channel allocates only when it is built: a hostile length is refused without a
//! single allocation, and steady-state traffic allocates nothing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Pair;
use ferry_core::{Config, Error, Timestamp};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        LARGEST.fetch_max(layout.size(), Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let result = f();
    (
        result,
        ALLOCATIONS.load(Ordering::SeqCst) - before,
        LARGEST.load(Ordering::SeqCst),
    )
}

// One test function: the counters are process-wide, so tests must not run in parallel.
#[test]
fn the_channel_allocates_only_at_construction() {
    // A header announcing 4 GiB is refused without allocating anything.
    let mut pair = Pair::handshake(1);
    let (result, allocations, _) = count(|| {
        pair.receiver
            .handle_input(Timestamp::ZERO, &u32::MAX.to_be_bytes())
    });
    assert!(matches!(result, Err(Error::RecordTooLarge { .. })));
    assert_eq!(allocations, 0);

    // Construction allocates a bounded amount: the configured buffers and little else.
    let config = Config::default();
    let (_, _, largest) = count(|| Pair::new(2));
    assert!(largest <= config.send_buffer.max(config.max_record_payload + 64));

    // Sealing and opening thousands of records allocates nothing.
    let mut pair = Pair::handshake(3);
    let message = vec![5u8; 40_000];
    let mut wire = vec![0u8; 1 << 20];
    let ((), allocations, _) = count(|| {
        for _ in 0..2000 {
            pair.sender.send_message(&message).unwrap();
            let pending = pair.sender.poll_transmit();
            let n = pending.len();
            wire[..n].copy_from_slice(pending);
            pair.sender.advance_transmit(n);
            let mut offset = 0;
            while offset < n {
                offset += pair
                    .receiver
                    .handle_input(Timestamp::ZERO, &wire[offset..n])
                    .unwrap();
                if let Some(received) = pair.receiver.take_message() {
                    assert_eq!(received.len(), message.len());
                }
            }
        }
    });
    assert_eq!(allocations, 0);
}
