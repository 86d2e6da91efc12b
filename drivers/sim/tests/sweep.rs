//! Ten thousand seeded worlds per `cargo test`. A failure prints its seed and trace;
//! `SIM_SEED=<n> cargo test -p ferry-sim` replays exactly that world.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ferry_core::{Entropy, SeededEntropy};
use ferry_sim::{World, current_endpoint, fingerprint, fuzz_world, run};

// Live and peak heap bytes per endpoint (simulator, sender, receiver), per thread: each
// test thread runs its own worlds.
thread_local! {
    static LIVE: Cell<[i64; 3]> = const { Cell::new([0; 3]) };
    static PEAK: Cell<[i64; 3]> = const { Cell::new([0; 3]) };
}

/// Charges every allocation to the endpoint that made it, remembered in a header in
/// front of the block so that its release is charged back to the same endpoint.
struct Tagged;

const HEADER: usize = 16;

fn account(endpoint: usize, delta: i64) {
    let _ = LIVE.try_with(|live| {
        let mut now = live.get();
        now[endpoint] += delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            let mut most = peak.get();
            most[endpoint] = most[endpoint].max(now[endpoint]);
            peak.set(most);
        });
    });
}

fn outer(layout: Layout) -> (Layout, usize) {
    let offset = layout.align().max(HEADER);
    let outer = Layout::from_size_align(layout.size() + offset, layout.align().max(HEADER));
    (outer.unwrap_or(layout), offset)
}

// SAFETY: each block is the system allocator's, `offset` bytes larger and at least as
// aligned; the caller gets the part after the header, which keeps the caller's alignment
// because `offset` is a multiple of it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Tagged {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (full, offset) = outer(layout);
        // SAFETY: `full` has a non-zero size.
        let base = unsafe { System.alloc(full) };
        if base.is_null() {
            return base;
        }
        let endpoint = current_endpoint();
        // SAFETY: the header lies inside the block.
        unsafe { base.write(endpoint as u8) };
        account(endpoint, layout.size() as i64);
        // SAFETY: `offset` < the block's size.
        unsafe { base.add(offset) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let (full, offset) = outer(layout);
        // SAFETY: `ptr` came from `alloc` with the same layout, `offset` after its block.
        let base = unsafe { ptr.sub(offset) };
        // SAFETY: the header written by `alloc`.
        let endpoint = usize::from(unsafe { base.read() }).min(2);
        account(endpoint, -(layout.size() as i64));
        // SAFETY: the block as allocated.
        unsafe { System.dealloc(base, full) }
    }
}

#[global_allocator]
static GLOBAL: Tagged = Tagged;

/// Each endpoint's peak heap during `world`, above what it held before.
fn endpoint_peaks<T>(f: impl FnOnce() -> T) -> (T, [i64; 3]) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, [0, peak[1] - start[1], peak[2] - start[2]])
}

/// The heap each endpoint may use in `world`, by its own configuration.
fn heap_bound(world: &World) -> i64 {
    let path_bytes = world.items.iter().map(|(p, _)| p.len()).sum();
    world.config.heap_bound(world.items.len(), path_bytes) as i64
}

fn check(seed: u64) {
    let world = World::from_seed(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| endpoint_peaks(|| run(&world))));
    match outcome {
        Ok((outcome, peaks)) => {
            let bound = heap_bound(&world);
            // Its sender seals, and its receiver opens, on "threads" in the worlds that
            // hash so.
            let aead = if world.hash_delay > 0 {
                world.config.aead_heap() as i64
            } else {
                0
            };
            for (who, peak, bound) in [
                ("sender", peaks[1], bound + aead),
                ("receiver", peaks[2], bound + aead),
            ] {
                assert!(
                    peak <= bound,
                    "seed {seed}: the {who} used {peak} bytes of heap, over its bound of {bound}\nworld: {}\nreplay: SIM_SEED={seed} cargo test -p ferry-sim",
                    world.summary()
                );
            }
            assert!(
                !world.faults.is_empty() || outcome.sessions == 1 || outcome.result.is_err(),
                "seed {seed}: a world without faults took {} sessions\nworld: {}\ntrace:\n{}",
                outcome.sessions,
                world.summary(),
                outcome.trace
            );
            if let Err(error) = &outcome.result {
                panic!(
                    "seed {seed}: {error}\nworld: {}\ntrace:\n{}\nreplay: SIM_SEED={seed} cargo test -p ferry-sim",
                    world.summary(),
                    outcome.trace
                );
            }
        }
        Err(_) => panic!("seed {seed} panicked\nreplay: SIM_SEED={seed} cargo test -p ferry-sim"),
    }
}

#[test]
fn seeded_worlds_hold_every_invariant() {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        let outcome = run(&World::from_seed(seed));
        eprintln!("{}", outcome.trace);
        check(seed);
        return;
    }
    // SIM_SEEDS=100000 runs a longer sweep (about 5 minutes on two cores).
    let seeds = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000u64);
    // The worlds are independent (each thread keeps its own heap accounts): one thread
    // per core, each taking every n-th seed. A failing seed panics with its replay line.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    std::thread::scope(|scope| {
        for first in 0..threads {
            scope.spawn(move || {
                for seed in (first..seeds).step_by(threads as usize) {
                    check(seed);
                }
            });
        }
    });
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [1, 7, 42, 1234, 99_999] {
        let a = run(&World::from_seed(seed));
        let b = run(&World::from_seed(seed));
        assert_eq!(fingerprint(&a), fingerprint(&b), "seed {seed}");
        assert!(a.trace.contains("session 1"));
    }
}

#[test]
fn faults_actually_happen_and_sessions_resume() {
    let mut resumed = 0;
    let mut faulted = 0;
    let kinds = [
        "Disconnect",
        "PathCut",
        "FlipBit",
        "DropChunk",
        "DuplicateChunk",
        "Stall",
        "SourceChanges",
        "CrashSender",
        "DiskFull",
        "PermissionDenied",
        "CrashReceiver",
    ];
    let mut fired = [0usize; 11];
    let mut disk_errors = 0;
    for seed in 0..400 {
        let outcome = run(&World::from_seed(seed));
        faulted += usize::from(outcome.trace.contains("fault "));
        resumed += usize::from(outcome.sessions > 1);
        for (kind, count) in kinds.iter().zip(&mut fired) {
            *count += usize::from(outcome.trace.contains(&format!("fault {kind} ")));
        }
        disk_errors += usize::from(outcome.trace.contains("kind: NoSpace"))
            + usize::from(outcome.trace.contains("kind: PermissionDenied"));
    }
    assert!(
        faulted > 100 && resumed > 50,
        "faulted {faulted}, resumed {resumed} of 400"
    );
    for (kind, count) in kinds.iter().zip(fired) {
        assert!(count >= 5, "{kind} fired in only {count} of 400 worlds");
    }
    // A full disk or a lost permission ends the session with that reason, not another.
    assert!(
        disk_errors >= 5,
        "disk errors reported in {disk_errors} worlds"
    );
}

/// Runs the first 400 seeds' worlds that `picked` chooses, each of which must deliver:
/// how many ran, and how many of their traces hold each of `marks`.
fn picked_worlds_deliver(picked: impl Fn(&World) -> bool, marks: &[&str]) -> (usize, Vec<usize>) {
    let (mut ran, mut marked) = (0, vec![0; marks.len()]);
    for seed in 0..400 {
        let world = World::from_seed(seed);
        if !picked(&world) {
            continue;
        }
        let outcome = run(&world);
        assert!(
            outcome.result.is_ok(),
            "seed {seed}: {:?}\nworld: {}\nreplay: SIM_SEED={seed} cargo test -p ferry-sim",
            outcome.result,
            world.summary()
        );
        ran += 1;
        for (count, mark) in marked.iter_mut().zip(marks) {
            *count += usize::from(outcome.trace.contains(mark));
        }
    }
    (ran, marked)
}

#[test]
fn writes_that_finish_later_meet_faults_and_still_deliver() {
    // A driver may write on a thread of its own and report each write later: the worlds
    // with a write delay must finish as every other, faults (a full disk, a crash with
    // writes still under way) included.
    let (delayed, marked) = picked_worlds_deliver(|w| w.write_delay > 0, &["fault "]);
    assert!(
        delayed >= 80 && marked[0] >= 40,
        "{delayed} of 400 worlds delayed their writes, {} of them with faults",
        marked[0]
    );
}

#[test]
fn hashing_passes_that_come_back_late_meet_faults_and_still_deliver() {
    // A driver may run the sessions' SHA-256 passes on a thread of its own and give them
    // back later, in any order: those worlds must finish as every other, faults
    // included, and some passes must come back before ones handed out earlier.
    let (offloaded, marked) =
        picked_worlds_deliver(|w| w.hash_delay > 0, &["fault ", " back before pass "]);
    assert!(
        offloaded >= 80 && marked[0] >= 40 && marked[1] >= 20,
        "{offloaded} of 400 worlds hashed through the driver, {} of them with faults, {} \
         with passes back out of order",
        marked[0],
        marked[1]
    );
}

#[test]
fn a_planted_bug_committing_unverified_files_is_caught_within_the_budget() {
    // The same sweep, with the receiver's verification switched off: files torn by a
    // source change mid-transfer get committed, and the invariants must notice.
    let caught = (0..2000).find(|&seed| {
        let world = World {
            broken_verification: true,
            ..World::from_seed(seed)
        };
        run(&world)
            .result
            .is_err_and(|e| e.contains("committed with content that differs"))
    });
    assert!(
        caught.is_some(),
        "the sweep missed a receiver that commits unverified files"
    );
    eprintln!("caught by seed {}", caught.unwrap_or_default());
}

#[test]
fn the_fuzz_body_holds_on_arbitrary_fault_schedules() {
    // The `sim_faults` fuzz target runs this body; here it runs on a few hundred inputs
    // so that it is compiled, and exercised, by every `cargo test`.
    let mut entropy = SeededEntropy::new(77);
    for len in 0..200usize {
        let mut data = vec![0u8; len % 64];
        entropy.fill(&mut data);
        fuzz_world(&data);
    }
}

#[test]
fn lanes_join_meet_faults_and_a_broken_lane_does_not_end_the_session() {
    // A quarter of the worlds run lanes from the start, and automatic lanes open on the
    // longer paths: they must join, faults must land on them, and a lane whose connection
    // breaks must cost no session (the sweep checks every invariant of these worlds).
    let (mut joined, mut lane_faults, mut broken_lanes) = (0, 0, 0);
    for seed in 0..1000 {
        let world = World::from_seed(seed);
        let outcome = run(&world);
        joined += usize::from(outcome.trace.contains(" joins at "));
        let on_lane = |line: &str| line.contains("fault ") && !line.contains("(connection 0)");
        lane_faults += usize::from(outcome.trace.lines().any(on_lane));
        let broke = outcome
            .trace
            .lines()
            .any(|line| on_lane(line) && line.contains("fault Disconnect "));
        if broke && world.faults.len() == 1 {
            broken_lanes += 1;
            assert_eq!(
                outcome.sessions, 1,
                "seed {seed}: a broken lane ended the session\ntrace:\n{}",
                outcome.trace
            );
        }
    }
    eprintln!(
        "lanes joined in {joined}, faults on lanes in {lane_faults}, a lane alone broke in {broken_lanes} of 1000 worlds"
    );
    assert!(joined > 250, "lanes joined in only {joined} of 400 worlds");
    assert!(
        lane_faults > 50,
        "faults met lanes in only {lane_faults} worlds"
    );
    assert!(
        broken_lanes >= 4,
        "a lane broke alone in only {broken_lanes} worlds"
    );
}
