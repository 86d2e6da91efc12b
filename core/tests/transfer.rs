//! Whole transfers between two in-process sessions: trees, boundaries, compression,
//! hashmap updates, many small files.

mod common;

use ferry_core::testing::{Item, MemoryDisk, Pair, bytes, dir, file};
use ferry_core::transfer::{DiskCommand, Session, TransferConfig, TransferError, TransferEvent};

/// Small parts and segments, so that boundaries are cheap to reach; few map hashes per
/// message, so every segment needs hashmap updates.
fn small() -> TransferConfig {
    TransferConfig {
        part_size: 1024,
        segment_size: 8 * 1024,
        max_extents_per_segment: 64,
        map_hashes_per_message: 3,
        initial_window: 2048,
        ..TransferConfig::default()
    }
}

fn compressing(config: TransferConfig) -> TransferConfig {
    TransferConfig {
        compress: true,
        ..config
    }
}

/// Text that bz2 shrinks a lot.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut k = seed;
    while out.len() < len {
        out.extend(format!("2026-11-22 INFO request {k} served in {} ms\n", k % 97).bytes());
        k += 1;
    }
    out.truncate(len);
    out
}

fn finished(events: &[TransferEvent]) -> Option<(u64, u64)> {
    events.iter().find_map(|e| match e {
        TransferEvent::Finished { committed, failed } => Some((*committed, *failed)),
        _ => None,
    })
}

#[test]
fn a_small_tree_arrives_identical() {
    let items = vec![
        dir("empty"),
        dir("a"),
        dir("a/b"),
        file("a/b/data.bin", bytes(1, 20_000)),
        file("a/zero", Vec::new()),
        file("top.txt", b"hello".to_vec()),
    ];
    let mut pair = Pair::with(&items, small(), 1);
    pair.run();
    pair.assert_delivered(&items);
    assert_eq!(finished(&pair.receiver_events), Some((6, 0)));
    assert_eq!(finished(&pair.sender_events), Some((6, 0)));
}

/// Sizes at and around every part and segment boundary.
fn boundary_sizes() -> Vec<usize> {
    let (part, segment) = (1024, 8 * 1024);
    let mut sizes = vec![0, 1];
    for edge in [part, 2 * part, segment, 2 * segment, 3 * segment] {
        sizes.extend([edge - 1, edge, edge + 1]);
    }
    sizes
}

#[test]
fn every_boundary_size_arrives_alone_and_together_with_and_without_compression() {
    for config in [small(), compressing(small())] {
        // Each size as a batch of its own: "exactly N segments", "N segments + 1 byte".
        for (i, size) in boundary_sizes().into_iter().enumerate() {
            let items = vec![file("f", bytes(i as u64, size))];
            let mut pair = Pair::with(&items, config.clone(), i as u64);
            pair.run();
            pair.assert_delivered(&items);
        }
        // All sizes in one batch, so files start and end at every offset of a segment;
        // half compressible, half not.
        let items: Vec<Item> = boundary_sizes()
            .into_iter()
            .enumerate()
            .map(|(i, size)| {
                let data = if i % 2 == 0 {
                    text(i as u64, size)
                } else {
                    bytes(i as u64, size)
                };
                file(&format!("dir/file-{i}"), data)
            })
            .chain([dir("dir"), dir("dir/empty")])
            .collect();
        let mut pair = Pair::with(&items, config.clone(), 99);
        pair.run();
        pair.assert_delivered(&items);
    }
}

#[test]
fn compression_is_used_only_when_it_shrinks_the_segment() {
    let items = vec![
        file("log.txt", text(0, 200_000)),
        file("noise.bin", bytes(5, 50_000)),
    ];
    let plain = {
        let mut pair = Pair::with(&items, small(), 3);
        pair.run();
        pair.assert_delivered(&items);
        pair.sender_wire
    };
    let mut pair = Pair::with(&items, compressing(small()), 3);
    pair.run();
    pair.assert_delivered(&items);
    // The log shrinks well; the noise is sent as it is, so the saving comes from the log.
    assert!(
        pair.sender_wire < plain - 150_000,
        "{} vs {plain}",
        pair.sender_wire
    );
}

#[test]
fn ten_thousand_small_files_arrive() {
    let items: Vec<Item> = (0..10_000)
        .map(|i| {
            file(
                &format!("d{}/f{i}", i % 100),
                bytes(i, (i as usize * 37) % 300),
            )
        })
        .chain((0..100).map(|d| dir(&format!("d{d}"))))
        .collect();
    for config in [
        TransferConfig::default(),
        compressing(TransferConfig::default()),
    ] {
        let mut pair = Pair::with(&items, config, 4);
        pair.run();
        pair.assert_delivered(&items);
        assert_eq!(finished(&pair.receiver_events), Some((10_100, 0)));
    }
}

#[test]
fn default_sizes_move_a_multi_segment_file_with_hashmap_updates() {
    // 5 MiB + 1 over the default parts and segments; a hashmap message that holds fewer
    // map hashes than a segment has parts forces updates within every segment.
    let defaults = TransferConfig::default();
    let config = TransferConfig {
        map_hashes_per_message: defaults.parts_per_segment() / 2,
        ..defaults
    };
    let size = (5 << 20) + 1;
    let items = vec![file("big.bin", bytes(6, size))];
    let mut pair = Pair::with(&items, config.clone(), 6);
    pair.run();
    pair.assert_delivered(&items);
    let progress = pair
        .receiver_events
        .iter()
        .filter(|e| matches!(e, TransferEvent::Progress { .. }))
        .count();
    assert_eq!(
        progress,
        size.div_ceil(config.segment_size),
        "one progress event per segment"
    );
}

#[test]
fn a_receiver_with_smaller_limits_constrains_the_sender() {
    let items = vec![file("f", bytes(7, 100_000))];
    let receiver = TransferConfig {
        segments_in_flight: 1,
        max_extents_per_segment: 8,
        ..small()
    };
    let sender = TransferConfig {
        segments_in_flight: 8,
        ..small()
    };
    let mut pair = Pair::new(&items, receiver, sender, 7, true);
    pair.run();
    pair.assert_delivered(&items);
}

#[test]
fn s6_1_a_sender_whose_parts_do_not_fit_the_receivers_records_is_refused_by_name() {
    let items = vec![file("f", bytes(8, 10_000))];
    let sender = TransferConfig {
        part_size: 4096,
        initial_window: 8192,
        ..small()
    };
    // The receiver's records hold 4 KiB: a 4 KiB part with its header does not fit.
    let mut receiver = small();
    receiver.channel.max_record_payload = 4096;
    receiver.max_extents_per_segment = 16;
    let mut pair = Pair::new(&items, receiver, sender, 8, true);
    pair.run();
    let error = pair.receiver_error.expect("refused").to_string();
    assert!(error.contains("part size"), "{error}");
    assert!(pair.disk.committed.is_empty());
}

#[test]
fn declining_ends_both_sides_with_the_reason() {
    let items = vec![file("f", bytes(9, 1000))];
    let mut pair = Pair::with(&items, small(), 9);
    pair.decline = true;
    pair.run();
    assert!(pair.receiver.is_finished());
    let error = pair.sender_error.expect("sender told").to_string();
    assert_eq!(error, "the receiver declined the batch: not today");
    assert!(pair.disk.committed.is_empty() && pair.disk.partial.is_empty());
}

/// A file that cannot be put in place once its last byte is verified (something appeared
/// at its name) fails the batch at both ends: the receiver tells the sender the batch is
/// done only once every file is in place, and says a file is done only then. Before, the
/// sender heard "done" while the last commit was still to be carried out, and ended
/// content while the receiver failed.
#[test]
fn a_commit_that_fails_after_the_last_byte_fails_the_batch_at_both_ends() {
    let items = vec![file("first", bytes(3, 5000)), file("last", bytes(4, 5000))];
    for refused in [0, 1] {
        let mut pair = Pair::with(&items, small(), 12);
        pair.disk.refuse_commit = Some(refused);
        pair.run();
        let error = pair.receiver_error.as_ref().map(ToString::to_string);
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("appeared at its name")),
            "entry {refused}: {error:?}"
        );
        assert_eq!(finished(&pair.sender_events), None, "entry {refused}");
        assert!(
            pair.sender_error.is_some(),
            "entry {refused}: the sender was not told"
        );
        assert!(
            !pair
                .receiver_events
                .iter()
                .any(|e| matches!(e, TransferEvent::FileDone { entry } if *entry == refused)),
            "entry {refused}: said done before it was in place"
        );
    }
    // Every file in place, and the batch cannot be finished on disk: not done either.
    let mut pair = Pair::with(&items, small(), 13);
    pair.disk.refuse_finish = true;
    pair.run();
    let error = pair.receiver_error.as_ref().map(ToString::to_string);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("finishing the batch: the sync failed")),
        "{error:?}"
    );
    assert_eq!(finished(&pair.sender_events), None);
    assert!(pair.sender_error.is_some(), "the sender was not told");
}

#[test]
fn files_of_identical_parts_arrive() {
    // Zeros (a sparse file) and a repeated block: many parts share a map hash.
    let block = bytes(10, 1024);
    let items = vec![
        file("zeros", vec![0; 100_000]),
        file(
            "repeated",
            block.iter().cycle().take(50 * 1024).copied().collect(),
        ),
        file("tail", bytes(11, 3000)),
    ];
    for config in [small(), compressing(small()), TransferConfig::default()] {
        let mut pair = Pair::with(&items, config, 10);
        pair.run();
        pair.assert_delivered(&items);
    }
}

#[test]
fn s6_small_record_limits_on_either_side_still_move_data() {
    use ferry_core::Config;
    let items = vec![file("f", bytes(12, 50_000)), file("g", bytes(13, 5_000))];
    let tiny = TransferConfig {
        channel: Config {
            max_record_payload: 4096,
            send_buffer: 64 << 10,
            ..Config::default()
        },
        part_size: 2048,
        segment_size: 16 << 10,
        max_extents_per_segment: 16,
        initial_window: 4096,
        ..TransferConfig::default()
    };
    // Both small, and a large sender against a small receiver (the hello negotiates the
    // record limit; the receiver refuses parts that do not fit its records).
    let mut pair = Pair::new(&items, tiny.clone(), tiny.clone(), 12, true);
    pair.run();
    pair.assert_delivered(&items);
    let mut pair = Pair::new(
        &items,
        tiny.clone(),
        TransferConfig {
            part_size: 2048,
            initial_window: 4096,
            ..TransferConfig::default()
        },
        13,
        true,
    );
    pair.run();
    pair.assert_delivered(&items);
}

#[test]
fn a_receiver_with_smaller_segments_than_the_sender_gets_them_cut_to_fit() {
    let items = vec![file("f", bytes(14, 300_000))];
    let receiver = TransferConfig {
        segment_size: 16 << 10,
        ..small()
    };
    let sender = TransferConfig {
        segment_size: 64 << 10,
        max_extents_per_segment: 64,
        ..small()
    };
    let mut pair = Pair::new(&items, receiver, sender, 14, true);
    pair.run();
    pair.assert_delivered(&items);
}

#[test]
fn more_directories_and_empty_files_than_the_disk_queue_holds() {
    let items: Vec<Item> = (0..6000)
        .flat_map(|i| {
            [
                dir(&format!("d{i}")),
                file(&format!("d{i}/empty"), Vec::new()),
            ]
        })
        .chain([file("last", bytes(15, 10_000))])
        .collect();
    let mut pair = Pair::with(&items, TransferConfig::default(), 15);
    pair.run();
    pair.assert_delivered(&items);
    // Nothing waited for a timer: the session never needed the clock to move.
    assert_eq!(pair.now, ferry_core::Timestamp::ZERO);
}

/// A sender whose driver looks at its outputs only now and then, so that its queues fill
/// up in between, while every file changes on its first read and is sent again: not one of
/// its retry or progress events is lost.
#[test]
fn a_slow_driver_loses_none_of_the_senders_retry_or_progress_events() {
    let items: Vec<Item> = (0..150)
        .map(|i| file(&format!("f{i}"), bytes(i, 3000 + 17 * i as usize)))
        .collect();
    let mut pair = Pair::with(&items, small(), 21);
    pair.sender_drains_every = Some(50);
    pair.source.on_read = Some(Box::new(|_, _, _, reads, data| {
        if reads == 1 {
            data[0] ^= 1;
        }
    }));
    pair.run();
    assert_eq!(pair.sender_error, None);
    assert_eq!(pair.receiver_error, None);
    assert_eq!(finished(&pair.sender_events), Some((150, 0)));

    let retries = |events: &[TransferEvent]| -> Vec<(usize, u8)> {
        let mut retries: Vec<(usize, u8)> = events
            .iter()
            .filter_map(|e| match *e {
                TransferEvent::FileRetry { entry, attempt } => Some((entry, attempt)),
                _ => None,
            })
            .collect();
        retries.sort_unstable();
        retries
    };
    let every_file_twice: Vec<(usize, u8)> = (0..150).map(|entry| (entry, 2)).collect();
    assert_eq!(retries(&pair.receiver_events), every_file_twice);
    assert_eq!(
        retries(&pair.sender_events),
        every_file_twice,
        "sender retries lost"
    );

    let progress: Vec<u64> = pair
        .sender_events
        .iter()
        .filter_map(|e| match *e {
            TransferEvent::Progress { bytes } => Some(bytes),
            _ => None,
        })
        .collect();
    let batch: u64 = items
        .iter()
        .map(|i| i.data.as_ref().map_or(0, Vec::len) as u64)
        .sum();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(
        progress.last(),
        Some(&batch),
        "the last progress is the whole batch"
    );
    for (index, data) in pair.source.files.iter().enumerate() {
        assert_eq!(pair.disk.committed.get(&index), data.as_ref(), "f{index}");
    }
}

/// A driver that calls its session out of order gets an error of its own; the session
/// is not failed, the peer hears nothing of it, and the transfer goes on.
#[test]
fn a_drivers_mistake_is_its_own_error_and_never_reaches_the_peer() {
    let items = vec![file("a", bytes(30, 50_000)), file("b", bytes(31, 10))];
    let mut pair = Pair::with(&items, small(), 32);
    let now = pair.now;
    // Nothing is offered yet; and a disk command the session never gave.
    let early = pair.receiver.accept(now, &[]);
    assert!(matches!(early, Err(TransferError::Misuse(_))), "{early:?}");
    let made_up = DiskCommand::Commit { entry: 7 };
    let completion = pair
        .receiver
        .carry_out(now, made_up, &mut MemoryDisk::default());
    assert!(
        matches!(completion, Err(TransferError::Misuse(_))),
        "{completion:?}"
    );
    let decline = pair.receiver.decline(now, "not offered");
    assert!(
        matches!(decline, Err(TransferError::Misuse(_))),
        "{decline:?}"
    );
    assert_eq!(pair.receiver.error(), None);
    pair.run();
    pair.assert_delivered(&items);
}

#[test]
fn s6_5_done_counts_every_entry_folders_and_empty_files_included() {
    let items = vec![
        dir("d"),
        dir("d/empty"),
        file("d/zero", Vec::new()),
        file("d/f", bytes(15, 3000)),
    ];
    let mut pair = Pair::with(&items, small(), 15);
    pair.run();
    pair.assert_delivered(&items);
    assert!(
        pair.sender_events.contains(&TransferEvent::Finished {
            committed: 4,
            failed: 0
        }),
        "{:?}",
        pair.sender_events
    );
}
