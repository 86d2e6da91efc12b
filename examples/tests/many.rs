//! `ferry send --receivers N`: one sender process on the mio driver serving many
//! receivers at once, with misbehaving clients among them.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ferry_core::ConnectionString;
use ferry_core::transfer::TransferConfig;
use ferry_mio::{LoopStats, receive_all};
use ferry_std::Quiet;
use ferry_std::receive::ReceiveOptions;

const RECEIVERS: usize = 16;

/// The test that hashes gigabytes takes both cores for seconds: it runs alone, so that
/// the others see their transfers at their usual pace.
static HEAVY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A 64 MiB batch: one large file and a few small ones.
fn batch(root: &Path) -> std::path::PathBuf {
    let dir = root.join("batch");
    fs::create_dir_all(dir.join("small")).unwrap();
    random_file(&dir.join("big.bin"), 60 << 20, 3);
    for i in 0..16 {
        random_file(&dir.join(format!("small/{i}.bin")), 256 << 10, 100 + i);
    }
    dir
}

/// Kills a `ferry receive` once its `.part` file holds some data: a disconnect midway.
fn disconnect_midway(args: &[String], out: &Path) {
    let mut child = Command::new(FERRY)
        .args(args)
        .arg("-o")
        .arg(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = out.join("batch/big.bin.part");
    let start = Instant::now();
    while fs::metadata(&part).map_or(0, |m| m.len()) < 4 << 20 {
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        assert!(start.elapsed() < Duration::from_secs(60), "never got going");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn one_sender_serves_sixteen_receivers_while_misbehaving_clients_fail_alone() {
    let _beside = HEAVY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let source = batch(dir.path());
    let sending = send(
        &["--pod", "--receivers", &RECEIVERS.to_string()],
        &[&source],
        None,
    );
    let args = sending.receive_args(None);
    let target: ConnectionString = args[1].parse().unwrap();
    let port: u16 = args[args.iter().position(|a| a == "--port").unwrap() + 1]
        .parse()
        .unwrap();

    // The misbehaving clients connect first, so their failures come before the last
    // delivery: garbage instead of a hello, a client that never speaks, and a receiver
    // killed midway.
    let address = (target.ip, port);
    let mut garbage = TcpStream::connect(address).unwrap();
    garbage.write_all(&[0x5a; 4096]).unwrap();
    let mut silent = TcpStream::connect(address).unwrap();
    disconnect_midway(&args, &dir.path().join("killed"));
    // The silent client is dropped when its handshake timer runs out; only then do the
    // receivers start, so that the sender is still serving when that happens.
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // (The sender's hello arrives first; the client never answers it.)
    while silent.read(&mut [0u8; 1024]).unwrap_or(0) > 0 {}

    let options: Vec<_> = (0..RECEIVERS)
        .map(|i| {
            let options = ReceiveOptions {
                pod: true,
                port,
                out_dir: dir.path().join(format!("out-{i}")),
                connect_timeout: Duration::from_secs(30),
                overwrite: false,
                config: TransferConfig::default(),
            };
            (target.clone(), options)
        })
        .collect();
    let stats = LoopStats::default();
    let outcomes = receive_all(&options, &mut Quiet, &stats);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(
            outcome.is_ok(),
            "receiver {i}: {:?}",
            outcome.as_ref().err()
        );
    }
    let (status, log) = sending.finish();
    assert_eq!(status, 0, "{log}");
    for i in 0..RECEIVERS {
        assert_same_tree(&source, &dir.path().join(format!("out-{i}/batch")));
    }
    assert!(
        log.contains(&format!("Sent to {RECEIVERS} receivers")),
        "{log}"
    );
    // Each misbehaving client got its own line, and none of them stopped the others.
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("a receiver from"))
        .collect();
    assert_eq!(failures.len(), 3, "{log}");
    assert!(
        failures
            .iter()
            .any(|l| l.contains("not speaking the Ferry protocol")),
        "{log}"
    );
    assert!(
        failures
            .iter()
            .any(|l| l.contains("handshake did not complete")),
        "{log}"
    );
    let delivered = log.matches(": received the batch (").count();
    assert_eq!(delivered, RECEIVERS, "{log}");
}

/// With `--receivers`, a receiver that stops reading (its socket stays open, the
/// sender's writes go nowhere) and one with a wrong token each fail alone: the stalled one
/// is given up on within the sender's `--timeout` while a good receiver is served beside
/// it, the wrong token is refused at once, and the sender goes on to its second receiver.
#[test]
fn with_receivers_a_stalled_receiver_and_a_wrong_token_fail_alone() {
    let _beside = HEAVY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 96 << 20, 23);
    let sender_log = dir.path().join("send.log");
    let (mut sender, args) = spawn_sender(
        &["--receivers", "2", "--timeout", "3"],
        &[&source],
        Stdio::from(fs::File::create(&sender_log).unwrap()),
    );
    let (_, port) = port_arg(&args);
    let stuck = greedy_receiver_that_stops_reading(&args[1], port, 1 << 20);
    // When the sender says it gave up on the stalled one, from the moment it stalled.
    let stalled = Instant::now();
    let given_up = {
        let sender_log = sender_log.clone();
        std::thread::spawn(move || {
            while stalled.elapsed() < Duration::from_secs(60) {
                if fs::read_to_string(&sender_log)
                    .is_ok_and(|log| log.contains("stopped making progress"))
                {
                    return Some(stalled.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        })
    };
    // Served while the stalled one holds its session open.
    let started = Instant::now();
    let first = receive(&args, &dir.path().join("first"), None);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the first receiver took {:?} beside a stalled one",
        started.elapsed()
    );
    let mut wrong_args = args.clone();
    let (ip, _) = args[1].split_once(':').unwrap();
    wrong_args[1] = format!("{ip}:00000000000000000000000000");
    let wrong = receive(&wrong_args, &dir.path().join("wrong"), None);
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    // The stalled one is given up on, by name, within the timeout (3 s without progress
    // once the sockets are full, and a margin for a busy machine).
    let given_up = given_up.join().unwrap();
    assert!(
        given_up.is_some_and(|after| after < Duration::from_secs(15)),
        "the stalled receiver was given up on after {given_up:?}"
    );
    assert!(sender.try_wait().unwrap().is_none(), "the sender ended");
    let second = receive(&args, &dir.path().join("second"), None);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    drop(stuck);
    assert_eq!(wait(&mut sender, Duration::from_secs(60)), 0);
    let log = fs::read_to_string(&sender_log).unwrap();
    assert!(log.contains("Sent to 2 receivers"), "{log}");
    assert!(log.contains("failed authentication"), "{log}");
    for out in ["first", "second"] {
        assert!(
            fs::read(&source).unwrap() == fs::read(dir.path().join(out).join("big.bin")).unwrap(),
            "{out}: not the file"
        );
    }
    assert!(!dir.path().join("wrong/big.bin").exists());
}

/// Ctrl-C on a sender serving two receivers at once (the mio driver) is a cancel for each
/// of them, as it is for one: both receivers end as cancelled by the sender (exit 8),
/// having read why, and so does the sender.
#[test]
fn ctrl_c_on_a_sender_serving_two_receivers_cancels_both_and_each_hears_why() {
    let _beside = HEAVY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 300 << 20, 21);
    let sending = send(&["--pod", "--receivers", "2"], &[&source], None);
    let args = sending.receive_args(None);
    let receivers: Vec<_> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("out-{i}"));
            let log = dir.path().join(format!("receive-{i}.log"));
            let child = spawn_receive(&args, &out, &log);
            (child, out, log)
        })
        .collect();
    let mut receivers: Vec<_> = receivers
        .into_iter()
        .map(|(mut child, out, log)| {
            wait_until(&mut child, &log, || {
                part_len(&out.join("big.bin.part")) >= 16 << 20
            });
            (child, log)
        })
        .collect();
    signal(&sending.child, "INT");
    for (i, (child, log)) in receivers.iter_mut().enumerate() {
        let status = wait(child, Duration::from_secs(60));
        let text = fs::read_to_string(&*log).unwrap();
        assert_eq!(status, 8, "receiver {i}: {text}");
        assert!(
            text.contains("ferry: cancelled by the sender"),
            "receiver {i}: {text}"
        );
    }
    let (status, log) = sending.finish();
    assert_eq!(status, 8, "{log}");
    assert!(log.contains("cancelled here"), "{log}");
}

/// One receiver's large resume does not hold up the others: while the sender re-reads
/// gigabytes to check what the first says it has, a second receiver that connects is
/// shaken hands with and offered the batch, between slices of that check.
#[test]
fn a_receivers_long_resume_check_does_not_hold_up_another_receiver() {
    let _alone = HEAVY
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let total: u64 = 4 << 30;
    let (source, out, _) = large_resume(dir.path(), total);
    let (sender, args) = spawn_sender(&["--receivers", "2"], &[&source], Stdio::null());
    let log = dir.path().join("first.log");
    let mut first = spawn_receive(&args, &out, &log);
    // The first receiver checks its copy; then the sender reads its own to check the
    // claim. A GiB into that, the second receiver comes.
    wait_until(&mut first, &log, || bytes_read(sender.id()) >= 1 << 30);
    let mut second = Command::new(FERRY)
        .args(&args)
        .arg("--json")
        .arg("-o")
        .arg(dir.path().join("second"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut events = std::io::BufReader::new(second.stdout.take().unwrap());
    let offered_at = loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut events, &mut line).unwrap() == 0 {
            panic!("the second receiver ended without an offer");
        }
        if line.contains("\"offered\"") {
            break bytes_read(sender.id());
        }
    };
    for mut child in [second, first, sender] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        offered_at < total - (1 << 30),
        "the second receiver was offered the batch only once the sender had read \
         {offered_at} bytes of the first one's {total}-byte check"
    );
}
