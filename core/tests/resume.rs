//! Resume plans, retries after a changed source, and cancellation.

mod common;

use ferry_core::testing::{Item, Pair, bytes, file};
use ferry_core::transfer::{FileFailure, Session, TransferConfig, TransferError, TransferEvent};

const SEGMENT: u64 = 1 << 20;

fn items() -> Vec<Item> {
    vec![
        file("a.bin", bytes(1, 5 << 20)),
        file("b.bin", bytes(2, 3 << 20)),
        file("c.bin", bytes(3, (1 << 20) + 17)),
    ]
}

fn plan(events: &[TransferEvent]) -> (usize, usize, usize, u64, u64) {
    events
        .iter()
        .find_map(|e| match *e {
            TransferEvent::PlanSettled {
                skipped,
                resumed,
                fresh,
                bytes_present,
                bytes_to_send,
            } => Some((skipped, resumed, fresh, bytes_present, bytes_to_send)),
            _ => None,
        })
        .expect("a plan was settled")
}

/// Runs a transfer where the receiver already holds `partial` (entry, bytes held, a byte
/// to corrupt) and `complete` entries; checks the result and the bytes sent.
fn resume(partial: &[(usize, usize, Option<usize>)], complete: &[usize]) -> Pair {
    let items = items();
    let mut pair = Pair::with(&items, TransferConfig::default(), 11);
    let mut missing: u64 = items
        .iter()
        .map(|i| i.data.as_ref().map_or(0, |d| d.len() as u64))
        .sum();
    for &(entry, held, corrupt) in partial {
        let mut data = items[entry].data.clone().unwrap()[..held].to_vec();
        match corrupt {
            Some(at) => data[at] ^= 0xff,
            None => missing -= held as u64,
        }
        pair.disk.partial.insert(entry, data);
        pair.local.push((entry, held as u64));
    }
    for &entry in complete {
        let data = items[entry].data.clone().unwrap();
        missing -= data.len() as u64;
        pair.disk.committed.insert(entry, data);
        pair.local
            .push((entry, items[entry].data.as_ref().unwrap().len() as u64));
    }
    pair.run();
    pair.assert_delivered(&items);
    assert!(
        pair.sender_wire <= missing + SEGMENT,
        "sent {} bytes for {missing} missing (+ one segment {SEGMENT})",
        pair.sender_wire
    );
    assert_eq!(
        plan(&pair.sender_events),
        plan(&pair.receiver_events),
        "both sides settle the same plan"
    );
    pair
}

#[test]
fn nothing_held_sends_everything() {
    let pair = resume(&[], &[]);
    assert_eq!(plan(&pair.receiver_events), (0, 0, 3, 0, (9 << 20) + 17));
}

#[test]
fn half_a_file_resumes_from_the_middle() {
    let pair = resume(&[(0, 5 << 19, None)], &[]);
    assert_eq!(
        plan(&pair.receiver_events),
        (0, 1, 2, 5 << 19, (9 << 20) + 17 - (5 << 19))
    );
}

#[test]
fn all_but_one_byte_sends_one_byte_of_that_file() {
    let pair = resume(&[(1, (3 << 20) - 1, None)], &[]);
    assert_eq!(plan(&pair.receiver_events).1, 1);
}

#[test]
fn complete_files_are_skipped_and_verified() {
    let pair = resume(&[(2, 1000, None)], &[0, 1]);
    assert_eq!(
        plan(&pair.receiver_events),
        (2, 1, 0, (8 << 20) + 1000, (1 << 20) + 17 - 1000)
    );
}

#[test]
fn a_prefix_that_does_not_match_is_sent_fresh() {
    let pair = resume(&[(0, 3 << 20, Some(12_345))], &[]);
    assert_eq!(plan(&pair.receiver_events), (0, 0, 3, 0, (9 << 20) + 17));
}

#[test]
fn a_claim_longer_than_the_local_file_is_dropped_not_trusted() {
    let items = items();
    let mut pair = Pair::with(&items, TransferConfig::default(), 12);
    pair.disk
        .partial
        .insert(0, items[0].data.clone().unwrap()[..1000].to_vec());
    pair.local.push((0, 5000));
    pair.run();
    pair.assert_delivered(&items);
    assert_eq!(plan(&pair.receiver_events).2, 3);
}

/// A small batch whose middle file `hook` alters as the sender reads it.
fn changing(
    hook: impl FnMut(usize, u64, usize, usize, &mut Vec<u8>) + 'static,
    with_hashes: bool,
) -> (Pair, Vec<Item>) {
    let items = vec![
        file("before", bytes(20, 3000)),
        file("moving", bytes(21, 40_000)),
        file("after", bytes(22, 3000)),
    ];
    let config = TransferConfig {
        part_size: 1024,
        segment_size: 8192,
        initial_window: 4096,
        ..TransferConfig::default()
    };
    let mut pair = Pair::new(&items, config.clone(), config, 13, with_hashes);
    pair.source.on_read = Some(Box::new(hook));
    pair.run();
    (pair, items)
}

fn retries(events: &[TransferEvent]) -> Vec<(usize, u8)> {
    events
        .iter()
        .filter_map(|e| match *e {
            TransferEvent::FileRetry { entry, attempt } => Some((entry, attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_source_changed_after_the_manifest_is_retried_and_verified() {
    // The file changes before its first byte is read: attempt 1 no longer matches the
    // manifest hash; attempt 2 reads the new content and matches attempt 1's digest.
    let (pair, mut items) = changing(
        |entry, _, _, count, data| {
            if entry == 1 && count == 1 {
                data[39_999] ^= 1;
            }
        },
        true,
    );
    items[1].data.as_mut().unwrap()[39_999] ^= 1;
    pair.assert_delivered(&items);
    assert_eq!(retries(&pair.receiver_events), vec![(1, 2)]);
    assert_eq!(retries(&pair.sender_events), vec![(1, 2)]);
}

#[test]
fn a_source_torn_mid_read_is_never_committed_torn_and_costs_one_more_send() {
    // Both ends of the file change after its start was read: attempt 1 would be old at
    // the start and new at the end, a content that never existed. The read that finds the
    // file changed ends attempt 1 there (ABANDON); attempt 2 sends the new content whole.
    let (pair, mut items) = changing(
        |entry, offset, _, count, data| {
            if entry == 1 && count == 2 {
                assert!(offset > 0);
                data[0] ^= 1;
                data[39_999] ^= 1;
            }
        },
        true,
    );
    items[1].data.as_mut().unwrap()[0] ^= 1;
    items[1].data.as_mut().unwrap()[39_999] ^= 1;
    pair.assert_delivered(&items);
    assert_eq!(retries(&pair.receiver_events), vec![(1, 2)]);
    // At most two sends of the changing file (here: one piece of attempt 1, then all of
    // attempt 2), plus the small files and the protocol's own messages.
    let data: u64 = 3000 + 40_000 + 3000;
    assert!(
        pair.sender_wire < data + 40_000 + 16_000,
        "{} bytes on the wire",
        pair.sender_wire
    );
}

#[test]
fn a_source_that_keeps_changing_fails_by_name_and_the_others_arrive() {
    let (pair, items) = changing(
        |entry, _, _, _, data| {
            if entry == 1 {
                data[0] = data[0].wrapping_add(1)
            }
        },
        true,
    );
    assert_eq!(pair.sender_error, None);
    assert_eq!(pair.receiver_error, None);
    assert!(pair.receiver_events.contains(&TransferEvent::FileFailed {
        entry: 1,
        reason: FileFailure::KeptChanging { attempts: 3 }
    }));
    assert_eq!(pair.receiver.manifest().get(1).unwrap().path, "moving");
    assert!(pair.receiver_events.contains(&TransferEvent::Finished {
        committed: 2,
        failed: 1
    }));
    assert!(pair.sender_events.contains(&TransferEvent::Finished {
        committed: 2,
        failed: 1
    }));
    assert_eq!(pair.disk.committed.get(&0), items[0].data.as_ref());
    assert_eq!(pair.disk.committed.get(&2), items[2].data.as_ref());
    assert!(!pair.disk.committed.contains_key(&1) && !pair.disk.partial.contains_key(&1));
}

#[test]
fn a_file_that_shrinks_while_read_arrives_as_it_is_now() {
    let (pair, mut items) = changing(
        |entry, _, _, count, data| {
            if entry == 1 && count == 1 {
                data.truncate(30_000);
            }
        },
        true,
    );
    // The manifest promised 40,000 bytes; the file now has 30,000: attempt 2 is announced
    // with its new size (UPDATE) and arrives whole, never padded.
    items[1].data.as_mut().unwrap().truncate(30_000);
    pair.assert_delivered(&items);
    assert_eq!(retries(&pair.receiver_events), vec![(1, 2)]);
    assert_eq!(pair.receiver.manifest().get(1).unwrap().size, 30_000);
    assert!(
        pair.sender_events
            .iter()
            .all(|e| !matches!(e, TransferEvent::ReadFailed { .. }))
    );
}

fn cancel(by_sender: bool) -> Pair {
    let items = items();
    let mut pair = Pair::with(&items, TransferConfig::default(), 14);
    pair.on_step = Some(Box::new(move |sender, receiver, wire| {
        if wire > (2 << 20) && sender.error().is_none() && receiver.error().is_none() {
            if by_sender {
                sender.cancel(ferry_core::Timestamp::ZERO, "user pressed ctrl-c");
            } else {
                receiver.cancel(ferry_core::Timestamp::ZERO, "user pressed ctrl-c");
            }
        }
    }));
    pair.run();
    // Nothing unverified was committed: whatever is committed equals its source.
    for (entry, data) in &pair.disk.committed {
        assert_eq!(Some(data), items[*entry].data.as_ref());
    }
    pair
}

#[test]
fn cancel_from_the_sender_ends_both_sides() {
    let pair = cancel(true);
    let reason = "user pressed ctrl-c".to_owned();
    assert_eq!(
        pair.sender_error,
        Some(TransferError::Cancelled {
            by_peer: false,
            reason: reason.clone()
        })
    );
    assert_eq!(
        pair.receiver_error,
        Some(TransferError::Cancelled {
            by_peer: true,
            reason: "user pressed ctrl-c".to_owned()
        })
    );
}

#[test]
fn cancel_from_the_receiver_ends_both_sides() {
    let pair = cancel(false);
    assert!(matches!(
        pair.receiver_error,
        Some(TransferError::Cancelled { by_peer: false, .. })
    ));
    assert!(matches!(
        pair.sender_error,
        Some(TransferError::Cancelled { by_peer: true, .. })
    ));
}

#[test]
fn a_peer_that_goes_silent_mid_transfer_ends_both_sessions_with_a_timeout() {
    use ferry_core::{Error, TimeoutPhase};
    let items = items();
    let config = TransferConfig::default();
    let mut pair = Pair::with(&items, config.clone(), 15);
    // Nothing the sender sends after 3 MiB arrives, not even keepalives.
    pair.cut_after = Some(3 << 20);
    pair.run();
    let idle = TransferError::Channel(Error::Timeout {
        phase: TimeoutPhase::Idle,
        after: config.channel.idle_timeout,
    });
    assert_eq!(pair.receiver_error, Some(idle));
    // The sender then hears nothing more either: its own timers end it.
    assert!(
        matches!(
            pair.sender_error,
            Some(TransferError::Channel(Error::Timeout { .. }) | TransferError::Stalled(_))
        ),
        "{:?}",
        pair.sender_error
    );
    assert!(pair.now.as_micros() <= 2 * config.stall_timeout.as_micros() as u64);
    for (entry, data) in &pair.disk.committed {
        assert_eq!(Some(data), items[*entry].data.as_ref());
    }
}

#[test]
fn a_sender_whose_data_stops_while_its_connection_lives_is_a_stall() {
    let items = items();
    let config = TransferConfig::default();
    let mut pair = Pair::with(&items, config.clone(), 16);
    pair.hang_reads_after = Some(5);
    pair.run();
    // Keepalives kept both channels alive; the receiver's stall timer noticed that no
    // data came.
    assert_eq!(
        pair.receiver_error,
        Some(TransferError::Stalled(config.stall_timeout))
    );
    assert!(pair.sender_error.is_some());
}

#[test]
fn a_complete_local_file_that_differs_from_the_manifest_is_sent_again() {
    let items = items();
    let mut pair = Pair::with(&items, TransferConfig::default(), 17);
    let mut stale = items[2].data.clone().unwrap();
    stale[0] ^= 1;
    pair.disk.committed.insert(2, stale);
    pair.local
        .push((2, items[2].data.as_ref().unwrap().len() as u64));
    pair.run();
    pair.assert_delivered(&items);
    assert_eq!(
        plan(&pair.receiver_events).2,
        3,
        "the differing file is fresh"
    );
}

#[test]
fn the_check_of_what_is_already_here_shows_its_progress_on_both_sides() {
    let items = items();
    let held = 3usize << 20;
    let complete = items[2].data.as_ref().unwrap().len();
    let pair = resume(&[(0, held, None)], &[2]);
    // The receiver re-reads all it holds; the sender only the partial file (the complete
    // one's hash equals the manifest's, which decides it without reading).
    for (side, events, total) in [
        ("receiver", &pair.receiver_events, (held + complete) as u64),
        ("sender", &pair.sender_events, held as u64),
    ] {
        let checks: Vec<(u64, u64)> = events
            .iter()
            .filter_map(|e| match *e {
                TransferEvent::ResumeCheck { checked, total } => Some((checked, total)),
                _ => None,
            })
            .collect();
        assert!(checks.len() >= 2, "{side}: {checks:?}");
        assert!(
            checks.windows(2).all(|w| w[0].0 < w[1].0),
            "{side}: not rising: {checks:?}"
        );
        assert!(checks.iter().all(|c| c.1 == total), "{side}: {checks:?}");
        assert_eq!(checks.last(), Some(&(total, total)), "{side}");
    }
}
