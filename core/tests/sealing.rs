//! A sender's records sealed by the driver (`Session::offload_sealing`): each batch sealed
//! elsewhere and given back late and out of order, the batch arrives as with inline
//! sealing: over one connection or several, compressed or not, with a lane that dies
//! while its batches are out, and beside hashing handed out too.

use ferry_core::testing::{Item, Pair, bytes, bytes_proven, dir, file};
use ferry_core::transfer::{Connections, TransferConfig};

fn config(connections: Connections) -> TransferConfig {
    TransferConfig {
        part_size: 4096,
        segment_size: 64 << 10,
        connections,
        ..TransferConfig::default()
    }
}

fn batch() -> Vec<Item> {
    let mut items = vec![dir("d"), file("d/big", bytes(1, 3 << 20))];
    items.extend((0..30).map(|k| file(&format!("d/small{k}"), bytes(k + 2, 900 * k as usize))));
    items.push(file("d/empty", Vec::new()));
    items
}

#[test]
fn records_sealed_late_and_out_of_order_deliver_what_inline_sealing_does() {
    let items = batch();
    for connections in [Connections::Fixed(1), Connections::Fixed(4)] {
        for compress in [false, true] {
            for hashing in [false, true] {
                let config = TransferConfig {
                    compress,
                    ..config(connections)
                };
                let what = format!("{connections:?}, compress {compress}, hashing {hashing}");
                let mut inline = Pair::with(&items, config.clone(), 5);
                inline.run();
                inline.assert_delivered(&items);
                let mut sealed = Pair::with(&items, config, 5);
                sealed.offload_sealing();
                if hashing {
                    sealed.offload_hashing();
                }
                sealed.run();
                sealed.assert_delivered(&items);
                assert!(sealed.sender_error.is_none(), "{what}");
                // Every part went through a batch: one gathers some 32 parts of 4 KiB
                // (128 KiB), so the 3 MiB file alone makes about 24.
                assert!(
                    sealed.batches_sealed >= 24,
                    "{what}: {} batches",
                    sealed.batches_sealed
                );
                assert_eq!(
                    bytes_proven(&sealed.sender_events),
                    bytes_proven(&inline.sender_events),
                    "{what}: every segment proven as inline"
                );
                if connections == Connections::Fixed(4) {
                    assert!(
                        sealed.lane_wire[1..4].iter().all(|&b| b > 64 << 10),
                        "{what}: the lanes carried {:?}",
                        sealed.lane_wire
                    );
                }
            }
        }
    }
}

#[test]
fn a_lane_that_dies_with_batches_out_loses_nothing() {
    let items = batch();
    for (lane, after) in [(1u8, 100_000u64), (2, 300_000), (3, 5_000), (1, 1)] {
        let mut pair = Pair::with(&items, config(Connections::Fixed(4)), 9);
        pair.offload_sealing();
        pair.drop_lane = Some((lane, after));
        pair.run();
        pair.assert_delivered(&items);
        assert!(
            pair.drop_lane.is_none(),
            "lane {lane} never reached {after} bytes"
        );
        assert!(pair.sender_error.is_none(), "{:?}", pair.sender_error);
        assert!(pair.batches_sealed >= 24, "{} batches", pair.batches_sealed);
    }
}
