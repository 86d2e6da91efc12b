//! Whole transfers between two in-process sessions: trees, boundaries, compression,
//! hashmap updates, many small files.

mod common;

use common::transfer::{Item, World, bytes, dir, file};
use ferry_core::transfer::{TransferConfig, TransferEvent};

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
    let mut world = World::with(&items, small(), 1);
    world.run();
    world.assert_delivered(&items);
    assert_eq!(finished(&world.receiver_events), Some((6, 0)));
    assert_eq!(finished(&world.sender_events), Some((6, 0)));
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
            let mut world = World::with(&items, config.clone(), i as u64);
            world.run();
            world.assert_delivered(&items);
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
        let mut world = World::with(&items, config.clone(), 99);
        world.run();
        world.assert_delivered(&items);
    }
}

#[test]
fn compression_is_used_only_when_it_shrinks_the_segment() {
    let items = vec![
        file("log.txt", text(0, 200_000)),
        file("noise.bin", bytes(5, 50_000)),
    ];
    let plain = {
        let mut world = World::with(&items, small(), 3);
        world.run();
        world.assert_delivered(&items);
        world.sender_wire
    };
    let mut world = World::with(&items, compressing(small()), 3);
    world.run();
    world.assert_delivered(&items);
    // The log shrinks well; the noise is sent as it is, so the saving comes from the log.
    assert!(
        world.sender_wire < plain - 150_000,
        "{} vs {plain}",
        world.sender_wire
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
        let mut world = World::with(&items, config, 4);
        world.run();
        world.assert_delivered(&items);
        assert_eq!(finished(&world.receiver_events), Some((10_100, 0)));
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
    let mut world = World::with(&items, config.clone(), 6);
    world.run();
    world.assert_delivered(&items);
    let progress = world
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
    let mut world = World::new(&items, receiver, sender, 7, true);
    world.run();
    world.assert_delivered(&items);
}

#[test]
fn a_sender_with_larger_parts_than_the_receiver_allows_is_refused_by_name() {
    let items = vec![file("f", bytes(8, 10_000))];
    let sender = TransferConfig {
        part_size: 4096,
        initial_window: 8192,
        ..small()
    };
    let mut world = World::new(&items, small(), sender, 8, true);
    world.run();
    let error = world.receiver_error.expect("refused").to_string();
    assert!(error.contains("part size"), "{error}");
    assert!(world.committed.is_empty());
}

#[test]
fn declining_ends_both_sides_with_the_reason() {
    let items = vec![file("f", bytes(9, 1000))];
    let mut world = World::with(&items, small(), 9);
    world.decline = true;
    world.run();
    assert!(world.receiver.is_finished());
    let error = world.sender_error.expect("sender told").to_string();
    assert_eq!(error, "the receiver declined the batch: not today");
    assert!(world.committed.is_empty() && world.partial.is_empty());
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
        let mut world = World::with(&items, config, 10);
        world.run();
        world.assert_delivered(&items);
    }
}

#[test]
fn small_record_limits_on_either_side_still_move_data() {
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
    let mut world = World::new(&items, tiny.clone(), tiny.clone(), 12, true);
    world.run();
    world.assert_delivered(&items);
    let mut world = World::new(
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
    world.run();
    world.assert_delivered(&items);
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
    let mut world = World::new(&items, receiver, sender, 14, true);
    world.run();
    world.assert_delivered(&items);
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
    let mut world = World::with(&items, TransferConfig::default(), 15);
    world.run();
    world.assert_delivered(&items);
    // Nothing waited for a timer: the session never needed the clock to move.
    assert_eq!(world.now, ferry_core::Timestamp::ZERO);
}
