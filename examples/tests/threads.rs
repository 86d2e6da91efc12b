//! Hashing on a thread of its own, tried as a user would: with `FERRY_HASH_THREAD=1` on
//! both sides (and the sender's parts sealed, the receiver's records opened, on two more:
//! `FERRY_AEAD_THREADS=2`), a tree of many small files and one large one arrives
//! identical, a receive killed with `kill -9` in the middle of the large file resumes from
//! what was verified, and both logs say the threads ran; a sender stopped with Ctrl-C
//! while parts are out being sealed still tells the receiver why. So it goes with no AEAD
//! thread (`FERRY_AEAD_THREADS=shared`), the blocking driver's records then shared by the
//! hashing thread and the main one. Without the
//! variable, a transfer over loopback uses the thread only on a machine of four cores or
//! more (the two processes share them). A sender serving several receivers on its event
//! loop (`--receivers`) runs their passes on one thread beside the loop, each on its own
//! chain, and seals their parts on its sealing threads.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

const HASH_THREAD: (&str, &str) = ("FERRY_HASH_THREAD", "1");

/// Two threads sealing a sender's parts, or opening a receiver's records, beside its
/// hashing thread.
const AEAD_THREADS: (&str, &str) = ("FERRY_AEAD_THREADS", "2");

fn threaded() -> Command {
    let mut command = Command::new(FERRY);
    command.env(HASH_THREAD.0, HASH_THREAD.1);
    command.env(AEAD_THREADS.0, AEAD_THREADS.1);
    command
}

/// A hashing thread and no AEAD thread of its own, as on a machine of two or three cores
/// sending to another: the blocking driver's records go to the hashing thread between its
/// passes, and to the main thread whenever it would wait for them (the event loop seals
/// on the loop).
fn shared() -> Command {
    let mut command = Command::new(FERRY);
    command.env(HASH_THREAD.0, HASH_THREAD.1);
    command.env(AEAD_THREADS.0, "shared");
    command
}

fn receive_threaded(args: &[String], out: &Path) -> Output {
    receive_by(threaded(), args, out)
}

/// A receive by `command`, verbose, into `out`.
fn receive_by(mut command: Command, args: &[String], out: &Path) -> Output {
    command
        .args(args)
        .arg("-v")
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

fn tree(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    fs::create_dir_all(src.join("small")).unwrap();
    for i in 0..300u64 {
        random_file(
            &src.join(format!("small/f{i:03}")),
            1 + (i as usize * 7919) % 9000,
            i,
        );
    }
    random_file(&src.join("big.bin"), 192 << 20, 1000);
    src
}

/// The bytes of `path` the lock file in `out` claims as verified, if it claims any.
fn claimed(out: &Path, path: &str) -> Option<u64> {
    let lock = fs::read(out.join(".transfer_lock.json")).ok()?;
    let lock: serde_json::Value = serde_json::from_slice(&lock).ok()?;
    lock["files"][path]["transferred_bytes"].as_u64()
}

#[test]
fn hashing_on_its_own_thread_delivers_a_tree_and_resumes_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let out = dir.path().join("out");

    let sending = send_with(threaded(), &["--pod"], &[&src]);
    let log = dir.path().join("killed.log");
    // This one opens its records itself: with two more threads on each side, a two-core
    // machine could finish the batch before the test saw a checkpoint to kill it at.
    // The rerun, which resumes, opens them on its threads.
    let mut own_aead = threaded();
    own_aead.env(AEAD_THREADS.0, "0");
    let mut child = spawn_receive_with(own_aead, &sending.receive_args(None), &out, &log);
    // Killed once a checkpoint claims a good part of the big file.
    wait_until(&mut child, &log, || {
        claimed(&out, "src/big.bin").is_some_and(|bytes| bytes >= 32 << 20)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    sending.abandon();

    let sending = send_with(threaded(), &["--pod"], &[&src]);
    let again = receive_threaded(&sending.receive_args(None), &out);
    let log = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_same_tree(&src, &out.join("src"));
    assert!(
        bytes_already_here(&log) >= 16 << 20,
        "the rerun resumed little of the big file:\n{log}"
    );
    assert!(log.contains("hashing thread: yes"), "{log}");
    assert!(log.contains("AEAD threads: 2"), "{log}");
    assert!(sender_log.contains("hashing thread: yes"), "{sender_log}");
    assert!(sender_log.contains("AEAD threads: 2"), "{sender_log}");
}

#[test]
fn hashing_on_its_own_thread_with_parts_over_three_connections() {
    // Lanes bring parts on connections the blocking loop reads between its waits for a
    // pass: the file must arrive whole whichever connection brought each part.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("laned.bin");
    random_file(&src, 64 << 20, 77);
    let out = dir.path().join("out");
    let sending = send_with(threaded(), &["--pod"], &[&src]);
    let mut args = sending.receive_args(None);
    args.extend(["--connections".to_owned(), "3".to_owned()]);
    let received = receive_threaded(&args, &out);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(log.contains("connections: 3"), "{log}");
    assert!(log.contains("hashing thread: yes"), "{log}");
    // The parts on the lanes were sealed on the sender's threads (the receiver opens its
    // own connection's records on its threads, its lanes' itself).
    assert!(log.contains("AEAD threads: 2"), "{log}");
    assert!(sender_log.contains("AEAD threads: 2"), "{sender_log}");
    assert!(
        fs::read(&src).unwrap() == fs::read(out.join("laned.bin")).unwrap(),
        "the file differs"
    );
}

#[test]
fn records_shared_by_the_hashing_thread_and_the_main_one_deliver_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let out = dir.path().join("out");
    let sending = send_with(shared(), &["--pod"], &[&src]);
    let received = receive_by(shared(), &sending.receive_args(None), &out);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_same_tree(&src, &out.join("src"));
    for log in [&log, &sender_log] {
        assert!(log.contains("hashing thread: yes"), "{log}");
        assert!(log.contains("AEAD threads: 0"), "{log}");
        assert!(log.contains("AEAD off the main thread: yes"), "{log}");
    }
}

#[test]
fn the_thread_variables_do_what_they_say_and_v_says_what_ran() {
    // (FERRY_HASH_THREAD, FERRY_AEAD_THREADS) on both sides, and what `-v` must then say
    // on both: no AEAD thread without a hashing thread; `0` keeps the records on the main
    // thread; a count is capped at 8 (on two cores, eight threads a side only share
    // them); a value that is no count leaves the default.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let default_aead = usize::from(cores >= 8);
    let cases: [(&str, &str, &[String]); 4] = [
        (
            "0",
            "2",
            &[
                "hashing thread: no".into(),
                "AEAD threads: 0".into(),
                "AEAD off the main thread: no".into(),
            ],
        ),
        (
            "1",
            "0",
            &[
                "hashing thread: yes".into(),
                "AEAD threads: 0".into(),
                "AEAD off the main thread: no".into(),
            ],
        ),
        (
            "1",
            "99",
            &[
                "hashing thread: yes".into(),
                "AEAD threads: 8".into(),
                "AEAD off the main thread: yes".into(),
            ],
        ),
        (
            "1",
            "many",
            &[
                "hashing thread: yes".into(),
                format!("AEAD threads: {default_aead}"),
                "AEAD off the main thread: yes".into(),
            ],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("one.bin");
    random_file(&src, 32 << 20, 8);
    for (k, (hash, aead, expected)) in cases.iter().enumerate() {
        let command = || {
            let mut command = Command::new(FERRY);
            command.env(HASH_THREAD.0, hash).env(AEAD_THREADS.0, aead);
            command
        };
        let out = dir.path().join(format!("out{k}"));
        let sending = send_with(command(), &["--pod"], &[&src]);
        let received = receive_by(command(), &sending.receive_args(None), &out);
        let log = stderr(&received);
        assert_eq!(received.status.code(), Some(0), "{hash} {aead}: {log}");
        let (status, sender_log) = sending.finish();
        assert_eq!(status, 0, "{hash} {aead}: {sender_log}");
        assert!(
            fs::read(&src).unwrap() == fs::read(out.join("one.bin")).unwrap(),
            "{hash} {aead}: the file differs"
        );
        for line in expected.iter() {
            assert!(
                log.contains(line.as_str()),
                "{hash} {aead}, receiver: {line}\n{log}"
            );
            assert!(
                sender_log.contains(line.as_str()),
                "{hash} {aead}, sender: {line}\n{sender_log}"
            );
        }
    }
}

#[test]
fn ctrl_c_on_a_sender_sealing_on_threads_still_tells_the_receiver() {
    // Its cancel is queued behind parts out with the sealing threads: it must still go
    // out, sealed, after them, and the receiver end as cancelled by the sender (not as a
    // connection that just closed). The blocking driver, and the event loop's; and each
    // with no sealing thread (the blocking driver sealing on its hashing thread and its
    // main one, the event loop on the loop, its hashing thread beside it).
    for extra in [&[][..], &["--receivers", "1"][..]] {
        ctrl_c_on_a_sealing_sender(threaded, extra);
        ctrl_c_on_a_sealing_sender(shared, extra);
    }
}

fn ctrl_c_on_a_sealing_sender(command: fn() -> Command, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    random_file(&src, 256 << 20, 91);
    let out = dir.path().join("out");
    let args: Vec<&str> = ["--pod"].iter().chain(extra).copied().collect();
    let mut sending = send_with(command(), &args, &[&src]);
    let log = dir.path().join("receive.log");
    let mut child = spawn_receive_with(command(), &sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || {
        part_len(&out.join("big.bin.part")) >= 16 << 20
    });
    signal(&sending.child, "INT");
    let status = wait(&mut sending.child, std::time::Duration::from_secs(60));
    assert_eq!(status, 8, "{extra:?}: the sender ends as cancelled");
    let received = wait(&mut child, std::time::Duration::from_secs(60));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(received, 8, "{extra:?}: {text}");
    assert!(
        text.contains("cancelled by the sender"),
        "{extra:?}: {text}"
    );
}

#[test]
fn one_event_loop_serves_three_receivers_its_hashing_thread_shared() {
    // `--receivers`: the mio driver runs every session's passes on one thread beside its
    // loop, each session on a chain of its own; the three batches must not mix.
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path());
    let sending = send_with(threaded(), &["--pod", "--receivers", "3"], &[&src]);
    let args = sending.receive_args(None);
    let receivers: Vec<_> = (0..3)
        .map(|k| {
            let out = dir.path().join(format!("out{k}"));
            let args = args.clone();
            std::thread::spawn(move || (receive_threaded(&args, &out), out))
        })
        .collect();
    for receiver in receivers {
        let (received, out) = receiver.join().unwrap();
        let log = stderr(&received);
        assert_eq!(received.status.code(), Some(0), "{log}");
        assert_same_tree(&src, &out.join("src"));
    }
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(sender_log.contains("hashing thread: yes"), "{sender_log}");
    assert!(sender_log.contains("AEAD threads: 2"), "{sender_log}");
}

#[test]
fn a_loopback_transfer_takes_the_thread_only_with_cores_to_spare() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("one.bin");
    random_file(&src, 3 << 20, 5);
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&src], None);
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threaded = match std::env::var(HASH_THREAD.0).as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => cores >= 4,
    };
    let expected = if threaded {
        "hashing thread: yes"
    } else {
        "hashing thread: no"
    };
    assert!(log.contains(expected), "{cores} cores:\n{log}");
    assert!(
        sender_log.contains(expected),
        "{cores} cores:\n{sender_log}"
    );
    // Without a hashing thread, no record leaves the main thread.
    if !threaded {
        assert!(log.contains("AEAD off the main thread: no"), "{log}");
    }
    assert_eq!(
        fs::read(&src).unwrap(),
        fs::read(out.join("one.bin")).unwrap()
    );
}
