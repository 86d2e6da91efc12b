//! SHA-256 passes handed to the driver (`Session::offload_hashing`): run elsewhere, given
//! back late and out of order, they deliver what inline hashing delivers; a pass run out
//! of its session's order or given back unrun ends the session with a message that says
//! so, and one the session already took back is refused while the session goes on.

use ferry_core::testing::{
    Item, MemoryDisk, MemorySource, Pair, bytes, bytes_proven, drain, file, manifest_of,
};
use ferry_core::transfer::{
    HashChain, HashWork, ReceiverSession, SenderSession, Session, TransferConfig, TransferError,
    TransferEvent,
};
use ferry_core::{SeededEntropy, Timestamp, Token};

/// Small segments and few extents, so that a batch makes many passes, most of them over
/// pieces of several files.
fn small() -> TransferConfig {
    TransferConfig {
        part_size: 1024,
        segment_size: 8 * 1024,
        max_extents_per_segment: 6,
        initial_window: 4096,
        ..TransferConfig::default()
    }
}

fn batch() -> Vec<Item> {
    let mut items: Vec<Item> = (0..40)
        .map(|k| file(&format!("small/{k}"), bytes(k, 700 + 97 * k as usize)))
        .collect();
    items.push(file("big.bin", bytes(99, 150_000)));
    items.push(file("empty", Vec::new()));
    items.push(file("last.bin", bytes(7, 20_000)));
    items
}

#[test]
fn passes_given_back_late_and_out_of_order_deliver_what_inline_hashing_does() {
    let items = batch();
    for config in [
        small(),
        TransferConfig {
            compress: true,
            ..small()
        },
    ] {
        let mut inline = Pair::with(&items, config.clone(), 5);
        inline.run();
        inline.assert_delivered(&items);
        let mut offloaded = Pair::with(&items, config, 5);
        offloaded.offload_hashing();
        offloaded.run();
        offloaded.assert_delivered(&items);
        assert_eq!(
            bytes_proven(&offloaded.sender_events),
            bytes_proven(&inline.sender_events),
            "every segment proven as inline"
        );
    }
}

#[test]
fn a_resumed_file_continues_its_verified_prefix_on_the_drivers_chain() {
    let items = batch();
    let mut pair = Pair::with(&items, small(), 6);
    pair.offload_hashing();
    let big = items.len() - 3;
    let held = 61_000;
    let prefix = items[big].data.as_ref().unwrap()[..held].to_vec();
    pair.disk.partial.insert(big, prefix);
    pair.local.push((big, held as u64));
    pair.run();
    pair.assert_delivered(&items);
    assert!(
        pair.receiver_events
            .iter()
            .any(|e| matches!(e, TransferEvent::PlanSettled { resumed: 1, .. })),
        "the file was resumed, not sent whole"
    );
}

/// A receiver that hashes through its driver, fed by an inline sender until it has
/// handed out at least `wanted` passes; returns it with the passes, unrun.
fn receiver_with_passes(wanted: usize) -> (ReceiverSession, Vec<HashWork>) {
    let items = [file("data.bin", bytes(3, 120_000))];
    let mut entropy = SeededEntropy::new(4);
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    let manifest = manifest_of(&items, true);
    let mut sender =
        SenderSession::new(small(), token.clone(), manifest, &mut entropy, now).expect("sender");
    let mut receiver = ReceiverSession::new(small(), token, &mut entropy, now).expect("receiver");
    receiver.offload_hashing();
    let mut source = MemorySource::new(items.iter().map(|i| i.data.clone()).collect());
    let mut disk = MemoryDisk::default();
    let mut passes = Vec::new();
    // The sender's bytes the receiver has not taken yet (it takes none while its passes
    // are all out and its next segment is complete).
    let mut forward = Vec::new();
    for _ in 0..10_000 {
        drain(&mut sender, now, &mut source, |_, _| Ok(())).expect("sender");
        drain(&mut receiver, now, &mut disk, |r, event| match event {
            TransferEvent::BatchOffered { .. } => r.accept(now, &[]),
            _ => Ok(()),
        })
        .expect("receiver");
        while let Some(work) = receiver.poll_work() {
            passes.push(work);
        }
        if passes.len() >= wanted {
            return (receiver, passes);
        }
        let sent = sender.poll_transmit().len();
        forward.extend_from_slice(sender.poll_transmit());
        sender.advance_transmit(sent);
        let mut at = 0;
        while at < forward.len() {
            let took = receiver.handle_input(now, &forward[at..]).expect("input");
            if took == 0 {
                break;
            }
            at += took;
        }
        forward.drain(..at);
        let back = receiver.poll_transmit().to_vec();
        receiver.advance_transmit(back.len());
        let mut at = 0;
        while at < back.len() {
            at += sender.handle_input(now, &back[at..]).expect("input");
        }
        assert!(
            sent > 0 || !back.is_empty(),
            "the transfer stalled before enough passes were out"
        );
    }
    panic!("no passes were handed out");
}

fn ended_with_nothing(receiver: &ReceiverSession) {
    assert_eq!(receiver.error(), None, "the session went on");
}

fn ended_with(receiver: &ReceiverSession, words: &str) {
    let error = receiver.error().map(TransferError::to_string);
    assert!(
        error.as_deref().is_some_and(|e| e.contains(words)),
        "expected an error saying {words:?}, got {error:?}"
    );
}

#[test]
fn passes_run_in_their_order_may_come_back_in_any_order() {
    let (mut receiver, mut passes) = receiver_with_passes(2);
    let mut chain = HashChain::new();
    for work in &mut passes {
        work.run(&mut chain);
    }
    let now = Timestamp::ZERO;
    for work in passes.into_iter().rev() {
        receiver.work_done(now, work).expect("taken back");
    }
    ended_with_nothing(&receiver);
}

#[test]
fn a_pass_run_out_of_its_order_fails_the_session() {
    let (mut receiver, mut passes) = receiver_with_passes(2);
    let mut chain = HashChain::new();
    passes[1].run(&mut chain);
    passes[0].run(&mut chain);
    let now = Timestamp::ZERO;
    let mut results = passes.into_iter().map(|work| receiver.work_done(now, work));
    assert!(results.any(|r| r.is_err()), "the session went on");
    ended_with(&receiver, "ran out of its session's order");
}

#[test]
fn a_pass_given_back_unrun_fails_the_session() {
    let (mut receiver, mut passes) = receiver_with_passes(1);
    let result = receiver.work_done(Timestamp::ZERO, passes.remove(0));
    assert!(result.is_err());
    ended_with(&receiver, "without being run");
}

#[test]
fn a_pass_it_already_took_back_is_refused_and_the_session_goes_on() {
    let (mut receiver, mut passes) = receiver_with_passes(1);
    let (_, mut others) = receiver_with_passes(1);
    let mut chain = HashChain::new();
    passes[0].run(&mut chain);
    let now = Timestamp::ZERO;
    receiver
        .work_done(now, passes.remove(0))
        .expect("its own pass");
    // The same session's first pass again (from a twin session: a `HashWork` cannot be
    // copied): the session has taken that one back already.
    others[0].run(&mut HashChain::new());
    let result = receiver.work_done(now, others.remove(0));
    ended_with_nothing(&receiver);
    assert!(
        result.is_err_and(|e| e.to_string().contains("did not give")),
        "refused as not out"
    );
}
