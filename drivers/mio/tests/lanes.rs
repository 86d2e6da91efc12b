//! Lanes (PROTOCOL.md §8) on the event loop: a receiver that asks for several connections
//! gets them from a sender on the loop and from the blocking one, and a receiver on the
//! loop opens them to either; two receivers served at once each keep their own lanes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_core::transfer::{Connections, TransferConfig};
use ferry_mio::{LoopStats, receive_all, serve};
use ferry_std::receive::{ReceiveOptions, ReceiveSummary, receive};
use ferry_std::send::Sender;
use ferry_std::source::SourceTree;
use ferry_std::{DriverError, Quiet};

/// 24 MiB in three files whose bytes differ everywhere, under `root/name`.
fn tree(root: &Path, name: &str, seed: u8) -> PathBuf {
    let source = root.join(name);
    std::fs::create_dir_all(&source).unwrap();
    for file in 0..3u8 {
        let data: Vec<u8> = (0..8usize << 20)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 13) as u8 ^ seed ^ file)
            .collect();
        std::fs::write(source.join(format!("f{file}")), data).unwrap();
    }
    source
}

fn sender(source: &Path) -> Sender {
    let config = TransferConfig::default();
    let tree = SourceTree::scan(&[source.to_path_buf()], &config.manifest).unwrap();
    Sender::bind(tree, config, true, 0).unwrap()
}

fn options(sender: &Sender, out: PathBuf, connections: u8) -> ReceiveOptions {
    ReceiveOptions {
        pod: true,
        port: sender.port(),
        out_dir: out,
        connect_timeout: Duration::from_secs(5),
        overwrite: false,
        config: TransferConfig {
            connections: Connections::Fixed(connections),
            ..TransferConfig::default()
        },
    }
}

fn assert_same(source: &Path, out: &Path) {
    let name = source.file_name().unwrap();
    for file in 0..3 {
        let file = format!("f{file}");
        assert!(
            std::fs::read(source.join(&file)).unwrap()
                == std::fs::read(out.join(name).join(&file)).unwrap(),
            "{file} differs"
        );
    }
}

fn received(outcome: Result<ReceiveSummary, DriverError>) -> ReceiveSummary {
    outcome.unwrap_or_else(|e| panic!("the receive failed: {e}"))
}

#[test]
fn a_sender_on_the_loop_gives_each_receiver_the_lanes_it_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let source = tree(dir.path(), "data", 1);
    let mut sender = sender(&source);
    let target = sender.connection_string();
    let (four, three) = (
        options(&sender, dir.path().join("four"), 4),
        options(&sender, dir.path().join("three"), 3),
    );
    let serving =
        std::thread::spawn(move || serve(&mut sender, 2, &mut Quiet, &LoopStats::default()));
    // Two blocking receivers at once, from the same address: each lane must find its own
    // session among the two.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| receive(&target, &four, &mut Quiet));
        let b = scope.spawn(|| receive(&target, &three, &mut Quiet));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (received(a), received(b));
    assert_eq!((a.connections, b.connections), (4, 3));
    assert_same(&source, &four.out_dir);
    assert_same(&source, &three.out_dir);
    let served = serving.join().unwrap().unwrap();
    let mut used: Vec<usize> = served
        .delivered
        .iter()
        .map(|(_, s)| s.connections)
        .collect();
    used.sort_unstable();
    assert_eq!(
        used,
        [3, 4],
        "the sender's count of each session's connections"
    );
    assert_eq!(served.failed_sessions, 0);
}

#[test]
fn a_receiver_on_the_loop_opens_lanes_to_either_sender() {
    let dir = tempfile::tempdir().unwrap();
    let source = tree(dir.path(), "data", 2);
    // One blocking sender, one on a loop of its own.
    let mut blocking = sender(&source);
    let mut looped = sender(&source);
    let targets = vec![
        (
            blocking.connection_string(),
            options(&blocking, dir.path().join("a"), 4),
        ),
        (
            looped.connection_string(),
            options(&looped, dir.path().join("b"), 2),
        ),
    ];
    let by_blocking = std::thread::spawn(move || blocking.serve(&mut Quiet).map(|s| s.connections));
    let by_loop =
        std::thread::spawn(move || serve(&mut looped, 1, &mut Quiet, &LoopStats::default()));
    let outcomes = receive_all(&targets, &mut Quiet, &LoopStats::default());
    let connections: Vec<usize> = outcomes
        .into_iter()
        .map(|o| received(o).connections)
        .collect();
    assert_eq!(connections, [4, 2]);
    assert_same(&source, &targets[0].1.out_dir);
    assert_same(&source, &targets[1].1.out_dir);
    assert_eq!(by_blocking.join().unwrap().unwrap(), 4);
    let served = by_loop.join().unwrap().unwrap();
    assert_eq!(served.delivered[0].1.connections, 2);
}

#[test]
fn a_forged_lane_is_shut_out_by_the_loop_and_the_transfer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data");
    std::fs::create_dir_all(&source).unwrap();
    let big: Vec<u8> = (0..160usize << 20)
        .map(|i| (i * 7 + (i >> 11)) as u8)
        .collect();
    std::fs::write(source.join("big.bin"), &big).unwrap();
    let mut sender = sender(&source);
    let (target, port) = (sender.connection_string(), sender.port());
    let two = options(&sender, dir.path().join("out"), 2);
    let serving =
        std::thread::spawn(move || serve(&mut sender, 1, &mut Quiet, &LoopStats::default()));
    let receiving = std::thread::spawn(move || receive(&target, &two, &mut Quiet));
    // Once the transfer is under way (its session is live on the loop), lane hellos for
    // lane 2 (never asked for) and lane 1 (joined), naming no session the loop has, with
    // a proof nobody could have made, from the receiver's own address.
    let part = dir.path().join("out/data/big.bin.part");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 8 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer never got going"
        );
        std::thread::yield_now();
    }
    for lane in [2u8, 1] {
        use std::io::{Read, Write};
        let mut hello = Vec::from(*b"FERRY\x00\x04\x03");
        hello.extend([0x5a; 16]);
        hello.push(lane);
        hello.extend([0xa5; 32]);
        let mut forger = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        forger.write_all(&hello).unwrap();
        forger
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let answer = forger.read(&mut [0u8; 1]);
        assert!(
            matches!(answer, Ok(0))
                || answer.as_ref().is_err_and(|e| !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )),
            "a forged lane {lane} was not shut out: {answer:?}"
        );
    }
    let summary = received(receiving.join().unwrap());
    assert_eq!(summary.connections, 2);
    assert!(std::fs::read(dir.path().join("out/data/big.bin")).unwrap() == big);
    let served = serving.join().unwrap().unwrap();
    assert_eq!(
        served.failed_sessions, 0,
        "a forged lane counted as a session"
    );
    assert_eq!(served.delivered[0].1.connections, 2);
}
