//! Thousands of seeded worlds per `cargo test`. A failure prints its seed and trace;
//! `SIM_SEED=<n> cargo test -p ferry-sim` replays exactly that world.

use std::panic::{AssertUnwindSafe, catch_unwind};

use ferry_core::{Entropy, SeededEntropy};
use ferry_sim::{World, fingerprint, fuzz_world, run};

fn check(seed: u64) {
    let world = World::from_seed(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| run(&world)));
    match outcome {
        Ok(outcome) => {
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
    for seed in 0..2000 {
        check(seed);
    }
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
    let mut fired = [0usize; 10];
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
