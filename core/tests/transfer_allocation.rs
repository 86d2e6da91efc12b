//! Heap use of the transfer sessions, measured by a counting allocator that attributes
//! every allocation to the endpoint running at the time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use std::ops::Range;

use ferry_core::transfer::{
    DiskError, EntryKind, Manifest, ManifestEntry, Output, ReceiverSession, SenderSession, Session,
    Storage, Target, TransferConfig, TransferEvent,
};
use ferry_core::{SeededEntropy, Timestamp, Token};

/// 0: the test harness, 1: the sender, 2: the receiver.
const HARNESS: usize = 0;
const SENDER: usize = 1;
const RECEIVER: usize = 2;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(HARNESS) };
}
static LIVE: [AtomicI64; 3] = [AtomicI64::new(0), AtomicI64::new(0), AtomicI64::new(0)];
static PEAK: [AtomicI64; 3] = [AtomicI64::new(0), AtomicI64::new(0), AtomicI64::new(0)];
static COUNT: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

struct Counting;

fn tag() -> usize {
    CURRENT.try_with(Cell::get).unwrap_or(HARNESS)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let t = tag();
        COUNT[t].fetch_add(1, Ordering::Relaxed);
        let live =
            LIVE[t].fetch_add(layout.size() as i64, Ordering::Relaxed) + layout.size() as i64;
        PEAK[t].fetch_max(live, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let t = tag();
        COUNT[t].fetch_add(1, Ordering::Relaxed);
        let live =
            LIVE[t].fetch_add(layout.size() as i64, Ordering::Relaxed) + layout.size() as i64;
        PEAK[t].fetch_max(live, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE[tag()].fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with its allocations counted against `who`.
fn as_<T>(who: usize, f: impl FnOnce() -> T) -> T {
    let before = CURRENT.with(|c| c.replace(who));
    let result = f();
    CURRENT.with(|c| c.set(before));
    result
}

/// Source bytes computed from the offset, so nothing of the file is held in memory.
fn fill(offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        let at = offset + i as u64;
        *byte = ((at / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (8 * (at % 8))) as u8;
    }
}

/// The sender's file, computed from the offset.
struct Generated;

impl Storage for Generated {
    fn read(&mut self, _: Target<'_>, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        fill(offset, buf);
        Ok(buf.len())
    }
}

/// The receiver's disk, which only counts what is written.
#[derive(Default)]
struct Counted {
    written: u64,
}

impl Storage for Counted {
    fn read(&mut self, _: Target<'_>, _: u64, _: &mut [u8]) -> Result<usize, DiskError> {
        Ok(0)
    }
    fn write(&mut self, _: Target<'_>, _: u64, data: &[u8]) -> Result<(), DiskError> {
        self.written += data.len() as u64;
        Ok(())
    }
    fn commit(&mut self, _: Target<'_>) -> Result<(), DiskError> {
        Ok(())
    }
    fn checkpoint(&mut self, _: Range<usize>, _: &ReceiverSession) -> Result<(), DiskError> {
        Ok(())
    }
}

struct Measure {
    allocations: [u64; 3],
    peak: [i64; 3],
    bound: usize,
}

/// Carries out the receiver's outputs; returns whether there were any.
fn receiver_outputs(
    receiver: &mut ReceiverSession,
    sink: &mut Counted,
    finished: &mut bool,
) -> bool {
    let now = Timestamp::ZERO;
    let mut worked = false;
    loop {
        match as_(RECEIVER, || receiver.poll_output()) {
            Output::Timeout(_) => return worked,
            Output::Disk(command) => {
                as_(RECEIVER, || receiver.carry_out(now, command, sink)).unwrap()
            }
            Output::Event(TransferEvent::BatchOffered { .. }) => {
                as_(RECEIVER, || receiver.accept(now, &[])).unwrap();
            }
            Output::Event(event) => {
                *finished |= matches!(
                    event,
                    TransferEvent::Finished {
                        committed: 1,
                        failed: 0
                    }
                );
            }
        }
        worked = true;
    }
}

/// Transfers one file of `size` bytes, the sender's records sealed as a driver's
/// threads would (handed out and given back, here on this thread) if `sealing`; returns
/// the allocation counts and peaks measured from just after both sessions were built to
/// the end.
fn transfer(size: u64, sealing: bool) -> Measure {
    let config = TransferConfig::default();
    let entries = vec![ManifestEntry {
        path: "big.bin".into(),
        kind: EntryKind::File,
        size,
        mode: 0o644,
        mtime_ns: 0,
        sha256: None,
    }];
    let manifest = Manifest::from_entries(&entries, &Default::default()).unwrap();
    let bound = config.heap_bound(1, 7) + if sealing { config.aead_heap() } else { 0 };
    let mut entropy = SeededEntropy::new(size);
    let token = Token::generate(&mut entropy);
    for i in 0..3 {
        LIVE[i].store(0, Ordering::SeqCst);
        PEAK[i].store(0, Ordering::SeqCst);
    }
    let now = Timestamp::ZERO;
    let mut sender = as_(SENDER, || {
        SenderSession::new(config.clone(), token.clone(), manifest, &mut entropy, now).unwrap()
    });
    let mut receiver = as_(RECEIVER, || {
        ReceiverSession::new(config.clone(), token, &mut entropy, now).unwrap()
    });
    if sealing {
        as_(SENDER, || sender.offload_sealing());
    }
    let counts_before = [0, 1, 2].map(|i| COUNT[i].load(Ordering::SeqCst));
    let mut wire = vec![0u8; 4 << 20];
    let mut finished = false;
    let mut source = Generated;
    let mut sink = Counted::default();
    for _ in 0..100_000_000u64 {
        let mut worked = false;
        loop {
            match as_(SENDER, || sender.poll_output()) {
                Output::Timeout(_) => break,
                Output::Disk(command) => {
                    as_(SENDER, || sender.carry_out(now, command, &mut source)).unwrap()
                }
                Output::Event(_) => {}
            }
            worked = true;
        }
        worked |= receiver_outputs(&mut receiver, &mut sink, &mut finished);
        as_(SENDER, || {
            while let Some(mut work) = sender.poll_seal_work() {
                work.run();
                sender.seal_done(work).unwrap();
                worked = true;
            }
        });
        let n = as_(SENDER, || {
            let pending = sender.poll_transmit();
            let n = pending.len().min(wire.len());
            wire[..n].copy_from_slice(&pending[..n]);
            sender.advance_transmit(n);
            n
        });
        let mut at = 0;
        while at < n {
            at += as_(RECEIVER, || receiver.handle_input(now, &wire[at..n])).unwrap();
            receiver_outputs(&mut receiver, &mut sink, &mut finished);
        }
        let m = as_(RECEIVER, || {
            let pending = receiver.poll_transmit();
            let m = pending.len();
            wire[..m].copy_from_slice(pending);
            receiver.advance_transmit(m);
            m
        });
        let mut at = 0;
        while at < m {
            at += as_(SENDER, || sender.handle_input(now, &wire[at..m])).unwrap();
        }
        worked |= n > 0 || m > 0;
        if finished && sender.is_finished() && !worked {
            break;
        }
        if !worked {
            panic!(
                "stuck after {} bytes written: {:?} {:?}\n{}\n{}",
                sink.written,
                sender.error(),
                receiver.error(),
                sender.describe(),
                receiver.describe()
            );
        }
    }
    assert!(finished && sender.is_finished());
    assert_eq!(sink.written, size);
    Measure {
        allocations: [0, 1, 2].map(|i| COUNT[i].load(Ordering::SeqCst) - counts_before[i]),
        peak: [0, 1, 2].map(|i| PEAK[i].load(Ordering::SeqCst)),
        bound,
    }
}

// One test: the counters are per process, so nothing may run beside it.
#[test]
fn heap_is_bounded_by_the_config_and_flat_as_the_batch_grows() {
    let inline = heap_bounded_and_flat(false);
    let threads = heap_bounded_and_flat(true);
    // Batches out to seal take what the send buffer would have, and little more.
    let send_buffer = TransferConfig::default().channel.send_buffer as i64;
    assert!(
        threads.peak[SENDER] <= inline.peak[SENDER] + 2 * send_buffer,
        "sealing on threads took the sender from {} to {} bytes",
        inline.peak[SENDER],
        threads.peak[SENDER]
    );
}

/// The checks for one way of sealing; the measure of the larger batch.
fn heap_bounded_and_flat(sealing: bool) -> Measure {
    let small = transfer(64 << 20, sealing);
    let large = transfer(512 << 20, sealing);
    for m in [&small, &large] {
        for (who, name) in [(SENDER, "sender"), (RECEIVER, "receiver")] {
            assert!(
                m.peak[who] as usize <= m.bound,
                "{name} peaked at {} bytes, over its bound of {}",
                m.peak[who],
                m.bound
            );
        }
    }
    for (who, name) in [(SENDER, "sender"), (RECEIVER, "receiver")] {
        let (a, b) = (small.allocations[who], large.allocations[who]);
        assert!(
            a.abs_diff(b) <= 8,
            "{name}: {a} allocations for 64 MiB, {b} for 512 MiB"
        );
    }
    eprintln!(
        "sealing on threads: {sealing}; peaks: sender {} / receiver {} bytes (bound {}); allocations after start: {:?} vs {:?}",
        large.peak[SENDER], large.peak[RECEIVER], large.bound, small.allocations, large.allocations
    );
    large
}
