//! Lanes (PROTOCOL.md §8): one session over several connections. Parts spread over the
//! lanes and arrive whole; a lane that dies mid-transfer loses nothing; a lane that
//! cannot prove it belongs to the session is refused.

use ferry_core::lane::{LANE_HELLO_LEN, LaneRefused};
use ferry_core::testing::{Pair, bytes, dir, file};
use ferry_core::transfer::{Connections, Session, TransferConfig, TransferEvent};

fn config(connections: Connections) -> TransferConfig {
    TransferConfig {
        part_size: 4096,
        segment_size: 64 << 10,
        connections,
        ..TransferConfig::default()
    }
}

fn batch() -> Vec<ferry_core::testing::Item> {
    vec![
        dir("d"),
        file("d/big", bytes(1, 3 << 20)),
        file("d/small", bytes(2, 5_000)),
        file("d/empty", Vec::new()),
    ]
}

fn lanes_asked(pair: &Pair) -> Vec<u8> {
    pair.receiver_events
        .iter()
        .filter_map(|e| match e {
            TransferEvent::LaneWanted { lane } => Some(*lane),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fixed_number_of_connections_share_the_parts() {
    let items = batch();
    let mut pair = Pair::with(&items, config(Connections::Fixed(4)), 8);
    pair.run();
    pair.assert_delivered(&items);
    assert_eq!(lanes_asked(&pair), [1, 2, 3]);
    assert_eq!(pair.joins, [Ok(1), Ok(2), Ok(3)]);
    for lane in 1..4 {
        assert!(
            pair.lane_wire[lane] > 256 << 10,
            "lane {lane} carried {} bytes: {:?}",
            pair.lane_wire[lane],
            pair.lane_wire
        );
    }
}

#[test]
fn one_connection_asks_for_no_lanes_and_auto_none_on_a_short_path() {
    let items = batch();
    for connections in [Connections::Fixed(1), Connections::default()] {
        let mut pair = Pair::with(&items, config(connections), 8);
        pair.run();
        pair.assert_delivered(&items);
        assert!(lanes_asked(&pair).is_empty(), "{connections:?}");
        assert_eq!(pair.lane_wire, [0; 8]);
    }
}

#[test]
fn a_lane_that_dies_mid_transfer_loses_nothing() {
    let items = batch();
    for (lane, after) in [(1u8, 100_000u64), (2, 300_000), (3, 5_000), (1, 1)] {
        let mut pair = Pair::with(&items, config(Connections::Fixed(4)), 9);
        pair.drop_lane = Some((lane, after));
        pair.run();
        pair.assert_delivered(&items);
        assert!(
            pair.drop_lane.is_none(),
            "lane {lane} never reached {after} bytes"
        );
        assert!(
            !pair.sender.lane_open(lane) && !pair.receiver.lane_open(lane),
            "lane {lane} still open"
        );
    }
}

#[test]
fn parts_lost_with_a_lane_are_read_again_not_kept() {
    // A sender lets a segment's data go once its last part is out, lanes or not; parts a
    // dying lane took with it are read from the source again (and arrive intact).
    let items = batch();
    let segments = (3usize << 20).div_ceil(64 << 10);
    let mut read_again = 0;
    for (lane, after) in [(1u8, 100_000u64), (2, 300_000), (3, 5_000), (1, 1)] {
        let mut pair = Pair::with(&items, config(Connections::Fixed(4)), 9);
        pair.drop_lane = Some((lane, after));
        pair.run();
        pair.assert_delivered(&items);
        assert!(pair.source.reads[1] >= segments, "{:?}", pair.source.reads);
        read_again += pair.source.reads[1] - segments;
    }
    assert!(read_again > 0, "no lost part was read again");
    // Compressed segments are compressed again to the same bytes.
    // Six bits of entropy a byte: bz2 makes each segment smaller, not a few parts.
    let text: Vec<u8> = bytes(3, 3 << 20).iter().map(|b| b & 0x3f).collect();
    let texts = [file("log", text)];
    let compressing = TransferConfig {
        compress: true,
        ..config(Connections::Fixed(3))
    };
    let mut read_again = 0;
    for (lane, after) in [(1u8, 50_000u64), (2, 150_000), (1, 3_000), (2, 400_000)] {
        let mut pair = Pair::with(&texts, compressing.clone(), 11);
        pair.drop_lane = Some((lane, after));
        pair.run();
        pair.assert_delivered(&texts);
        assert!(
            pair.drop_lane.is_none(),
            "lane {lane} never reached {after}: {:?}, {}",
            pair.lane_wire,
            pair.sender_wire
        );
        read_again += pair.source.reads[0] - segments;
    }
    assert!(read_again > 0, "no lost compressed part was read again");
    // Without a lane lost, each segment is read once.
    let mut pair = Pair::with(&items, config(Connections::Fixed(4)), 9);
    pair.run();
    pair.assert_delivered(&items);
    assert_eq!(pair.source.reads[1], segments);
}

#[test]
fn a_source_that_changed_before_a_lost_part_is_read_again_is_sent_again_whole() {
    // The file changes (visibly: size and mtime) between the first read of its segments
    // and the refill of parts a lane lost: the refill cannot give the sealed bytes back.
    // The transfer must not wait for them (the simulator's sweep found a stall here):
    // the receiver rejects the segment and the file goes again, as it now is.
    let segments = (3usize << 20).div_ceil(64 << 10);
    let mut refills = 0;
    for (lane, after) in [(1u8, 100_000u64), (2, 300_000), (3, 5_000)] {
        let mut items = batch();
        // Two segments in flight: when the refill finds the change, no segment of the
        // file is being read, so nothing else would tell the receiver.
        let two = TransferConfig {
            segments_in_flight: 2,
            ..config(Connections::Fixed(4))
        };
        let mut pair = Pair::with(&items, two, 9);
        pair.drop_lane = Some((lane, after));
        pair.source.on_read = Some(Box::new(move |entry, _, _, count, data| {
            if entry == 1 && count == segments + 1 {
                data[0] ^= 1;
            }
        }));
        pair.run();
        if pair.source.reads[1] > segments {
            refills += 1;
            items[1].data.as_mut().unwrap()[0] ^= 1;
        }
        pair.assert_delivered(&items);
    }
    assert!(refills > 0, "no lost part was read again");
}

#[test]
fn every_lane_dying_leaves_the_session_on_its_own_connection() {
    let items = batch();
    let mut pair = Pair::with(&items, config(Connections::Fixed(2)), 10);
    pair.drop_lane = Some((1, 200_000));
    pair.run();
    pair.assert_delivered(&items);
}

#[test]
fn a_lane_that_cannot_prove_its_session_is_refused() {
    let items = batch();
    let mut pair = Pair::with(&items, config(Connections::Fixed(3)), 11);
    pair.replay_hellos = true;
    pair.run();
    pair.assert_delivered(&items);
    // Each real hello joins once; the same hello again is refused (its number is used),
    // and so is one whose proof is off by a bit.
    assert_eq!(
        pair.joins,
        [
            Ok(1),
            Err(LaneRefused::Number(1)),
            Err(LaneRefused::BadProof),
            Ok(2),
            Err(LaneRefused::Number(2)),
            Err(LaneRefused::BadProof),
        ]
    );
    // Once the batch is finished, nothing joins (another session's hello, and a wrong
    // proof, are refused by `lane.rs`'s own tests).
    assert_eq!(
        pair.sender.join_lane(&[0; LANE_HELLO_LEN]),
        Err(LaneRefused::NotNow)
    );
}

#[test]
fn lanes_that_never_reach_the_sender_cost_nothing() {
    let items = batch();
    let mut pair = Pair::with(&items, config(Connections::Fixed(4)), 13);
    pair.refuse_lanes = true;
    pair.run();
    pair.assert_delivered(&items);
    assert!(pair.joins.is_empty());
    assert_eq!(pair.lane_wire, [0; 8]);
}
