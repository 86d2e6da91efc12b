//! Several connections for one transfer (`--connections N`, PROTOCOL.md §8), through the
//! real binary: the batch arrives intact over all of them, and a connection that claims
//! to be a lane without knowing the session's secret is shut out while the transfer goes
//! on.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// The short-path test judges the path by the handshake's round trip, which a transfer in
/// a sibling test, busy on the same two cores, can stretch past the 5 ms that mean a long
/// path: that test runs alone, the others side by side.
static ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn connections(log: &str) -> usize {
    log.lines()
        .find_map(|l| l.strip_prefix("connections: "))
        .unwrap_or_else(|| panic!("no connection count in {log}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn four_connections_carry_one_batch_intact() {
    let _side_by_side = ALONE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("batch");
    fs::create_dir_all(source.join("sub")).unwrap();
    random_file(&source.join("big.bin"), 48 << 20, 71);
    for i in 0..20 {
        random_file(
            &source.join("sub").join(format!("small{i}")),
            1000 * i,
            72 + i as u64,
        );
    }
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    args.extend(["--connections".into(), "4".into()]);
    let received = receive(&args, &out, None);
    let log = stderr(&received);
    assert!(received.status.success(), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_same_tree(&source, &out.join("batch"));
    assert_eq!(connections(&log), 4, "{log}");
    assert_eq!(connections(&sender_log), 4, "{sender_log}");
}

#[test]
fn a_short_path_keeps_to_one_connection_unless_told() {
    let _alone = ALONE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("one.bin");
    random_file(&source, 8 << 20, 73);
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&source], None);
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert!(received.status.success(), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_eq!(connections(&log), 1, "{log}");
    assert_eq!(
        fs::read(&source).unwrap(),
        fs::read(out.join("one.bin")).unwrap()
    );
}

/// Peak resident set size in MiB, as the binary reports it with `FERRY_REPORT_RSS=1`.
fn peak_rss_mib(log: &str) -> f64 {
    log.lines()
        .find_map(|l| l.strip_prefix("peak RSS: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {log}"))
        / 1024.0
}

#[test]
fn a_late_handshake_on_loopback_does_not_open_the_window_to_its_cap() {
    // The sender's first bytes held 30 ms (a sender busy as the receiver connects): the
    // handshake alone made the path look long, the grant that followed had the sender
    // read 12 MiB before it answered a request, and that wait confirmed it; the window
    // went to its 40 MiB cap and lanes opened (each side at 40-65 MiB, and 1 GiB took
    // twice as long). The first answers, and a probe where they are in doubt, now show the
    // path is short. (A probe on a machine this busy can still come back in 5 ms, open
    // lanes, and take a side to 20 MiB: the bound is the cap's, not the floor's. A
    // machine busier still, its disk slow to start the file, can make the path look long
    // to any measure: once in a CI run, 98 MiB/s and 53 MiB. So a run over the bound is
    // tried once more; the old behaviour went over it every time.)
    let _alone = ALONE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut failures = Vec::new();
    for _ in 0..2 {
        match late_handshake() {
            Ok(()) => return,
            Err(failure) => failures.push(failure),
        }
    }
    panic!("over the bound twice:\n{}", failures.join("\n\n"));
}

/// One run of [`a_late_handshake_on_loopback_does_not_open_the_window_to_its_cap`]: the
/// peak RSS of each side and the receiver's log if either passed the bound.
fn late_handshake() -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 128 << 20, 75);
    let out = dir.path().join("out");
    let mut command = Command::new(FERRY);
    command.env("FERRY_REPORT_RSS", "1");
    let sending = send_with(command, &["--pod"], &[&source]);
    let mut args = sending.receive_args(None);
    let (at, sender_port) = port_arg(&args);
    let relay = relay(sender_port, |index, carried, _| {
        if index == 0 && carried == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        true
    });
    args[at] = relay.to_string();
    let received = Command::new(FERRY)
        .args(&args)
        .arg("-v")
        .arg("-o")
        .arg(&out)
        .env("FERRY_REPORT_RSS", "1")
        .output()
        .unwrap();
    let log = stderr(&received);
    assert!(received.status.success(), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap());
    let (sender, receiver) = (peak_rss_mib(&sender_log), peak_rss_mib(&log));
    if sender < 32.0 && receiver < 32.0 {
        return Ok(());
    }
    Err(format!(
        "peak RSS {sender:.1} / {receiver:.1} MiB, {} connections: {log}",
        connections(&log)
    ))
}

#[test]
fn a_forged_lane_is_shut_out_and_the_transfer_goes_on() {
    let _side_by_side = ALONE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 200 << 20, 74);
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    args.extend(["--connections".into(), "2".into()]);
    let port: u16 = args
        .iter()
        .skip_while(|a| *a != "--port")
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let log_path = dir.path().join("receive.log");
    let mut child = spawn_receive(&args, &out, &log_path);
    wait_until(&mut child, &log_path, || {
        part_len(&out.join("big.bin.part")) >= 16 << 20
    });
    // A lane hello for lane 2 (the receiver asked for lane 1 only) and lane 1 (already
    // joined), naming no session it knows, with a proof it cannot have made.
    for lane in [2u8, 1] {
        let mut hello = Vec::from(*b"FERRY\x00\x04\x03");
        hello.extend([0x5a; 16]);
        hello.push(lane);
        hello.extend([0xa5; 32]);
        let mut forger = TcpStream::connect(("127.0.0.1", port)).unwrap();
        forger.write_all(&hello).unwrap();
        forger
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut byte = [0u8; 1];
        let answer = forger.read(&mut byte);
        assert!(
            matches!(answer, Ok(0))
                || answer.is_err()
                    && !matches!(
                        answer.as_ref().map_err(std::io::Error::kind),
                        Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                    ),
            "a forged lane {lane} was not shut out: {answer:?}"
        );
    }
    let status = wait(&mut child, Duration::from_secs(120));
    let log = fs::read_to_string(&log_path).unwrap();
    assert_eq!(status, 0, "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_eq!(connections(&sender_log), 2, "{sender_log}");
    assert_eq!(
        fs::read(&source).unwrap(),
        fs::read(out.join("big.bin")).unwrap()
    );
}

#[test]
fn a_sender_serving_several_receivers_gives_each_its_own_lanes() {
    let _side_by_side = ALONE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // `--receivers 2` runs the event-loop driver: both receivers connect from the same
    // address, and each lane must join its own receiver's session.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("batch");
    fs::create_dir_all(&source).unwrap();
    random_file(&source.join("big.bin"), 32 << 20, 75);
    random_file(&source.join("small.bin"), 5000, 76);
    let sending = send(&["--pod", "--receivers", "2"], &[&source], None);
    let logs: Vec<(String, usize)> = std::thread::scope(|scope| {
        let runs: Vec<_> = [("a", 3), ("b", 2)]
            .into_iter()
            .map(|(name, n)| {
                let mut args = sending.receive_args(None);
                args.extend(["--connections".into(), n.to_string()]);
                let out = dir.path().join(name);
                scope.spawn(move || {
                    let received = receive(&args, &out, None);
                    let log = stderr(&received);
                    assert!(received.status.success(), "{log}");
                    (log, n)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (log, n) in &logs {
        assert_eq!(connections(log), *n, "{log}");
    }
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_same_tree(&source, &dir.path().join("a/batch"));
    assert_same_tree(&source, &dir.path().join("b/batch"));
}

#[test]
fn a_lane_cut_mid_transfer_loses_nothing() {
    let _side_by_side = ALONE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Three connections through a relay that cuts the second lane after 8 MiB: the
    // transfer goes on over the others, the parts the lane took with it are sent again,
    // and the file arrives intact.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 96 << 20, 77);
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    let (at, sender_port) = port_arg(&args);
    let cut = Arc::new(AtomicBool::new(false));
    let cut_made = Arc::clone(&cut);
    let relay = relay(sender_port, move |index, carried, _| {
        let cutting = index == 2 && carried >= 8 << 20;
        cut_made.fetch_or(cutting, Ordering::SeqCst);
        !cutting
    });
    args[at] = relay.to_string();
    args.extend(["--connections".into(), "3".into()]);
    let received = receive(&args, &out, None);
    let log = stderr(&received);
    assert!(received.status.success(), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_eq!(connections(&log), 3, "{log}");
    assert!(
        fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap(),
        "big.bin differs"
    );
    assert!(cut.load(Ordering::SeqCst), "the lane was never cut");
}

/// `kill -9` in the middle of a transfer over four connections, one of them slow (its
/// parts land after the others', so the `.part` has holes past what is verified): the
/// lock vouches only for a verified prefix, and the rerun sends the rest, no more than
/// what was missing and what the connections had in flight, and the file arrives intact.
#[test]
fn killed_mid_transfer_over_four_connections_resumes_from_a_verified_prefix() {
    let _side_by_side = ALONE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let total = 256u64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, total as usize, 81);
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    let (at, sender_port) = port_arg(&args);
    let streams = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&streams);
    args[at] = relay(sender_port, move |index, _, _| {
        seen.fetch_max(index + 1, Ordering::SeqCst);
        if index == 2 {
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    })
    .to_string();
    args.extend(["--connections".into(), "4".into()]);
    let log = dir.path().join("first.log");
    let mut child = spawn_receive(&args, &out, &log);
    let lock = out.join(".transfer_lock.json");
    wait_until(&mut child, &log, || {
        lock.exists() && part_len(&out.join("big.bin.part")) >= 96 << 20
    });
    signal(&child, "KILL");
    let _ = wait(&mut child, Duration::from_secs(10));
    sending.abandon();
    assert_eq!(
        streams.load(Ordering::SeqCst),
        4,
        "the data did not go over four"
    );
    let claimed: serde_json::Value = serde_json::from_slice(&fs::read(&lock).unwrap()).unwrap();
    let kept = claimed["files"]["big.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    let part = fs::read(out.join("big.bin.part")).unwrap();
    assert!(
        part[..kept as usize] == fs::read(&source).unwrap()[..kept as usize],
        "the lock vouches for bytes that are not the file's"
    );
    // Parts past the verified prefix had landed (the fast connections ran ahead).
    assert!(
        part.len() as u64 > kept,
        "nothing past the {kept} bytes the lock vouches for"
    );

    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    args.extend(["--connections".into(), "4".into()]);
    let again = receive(&args, &out, None);
    let text = stderr(&again);
    assert!(again.status.success(), "{text}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(
        fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap(),
        "big.bin differs"
    );
    let present = bytes_already_here(&text);
    assert_eq!(present, kept, "{text}");
    let config = ferry_core::transfer::TransferConfig::default();
    let missing = total - present;
    let allowance = (config.window_floor + 8 * config.segment_size) as u64 + missing / 500;
    let sent = wire_bytes(&sender_log);
    assert!(
        sent <= missing + allowance,
        "sent {sent} bytes for {missing} missing"
    );
}
