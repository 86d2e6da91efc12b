//! Whole transfers between two in-process sessions: trees, boundaries, compression,
//! many small files.

mod common;

use common::transfer::{Item, World, bytes, dir, file};
use ferry_core::transfer::{TransferConfig, TransferEvent};

/// Small parts and segments, so that boundaries are cheap to reach.
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
    assert!(world.receiver_events.contains(&TransferEvent::Finished {
        committed: 6,
        failed: 0
    }));
    assert!(world.sender_events.contains(&TransferEvent::Finished {
        committed: 6,
        failed: 0
    }));
}
