//! "Interrupt the receiver at any point and run the same command again", tried as a user
//! would: `kill -9` among thousands of small files, a full disk, Ctrl-C, a cut
//! connection, a sender restarted with more files. Each rerun sends only what was not
//! yet verified here, and a run with everything already here sends nothing.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ferry_core::transfer::TransferConfig;

/// Bytes a rerun may send beyond what is missing: what was in flight when the first run
/// stopped (on loopback the window stays at its floor, and the segments it spans may be
/// partly written), the manifest (`entries` of them), and record framing.
fn allowance(missing: u64, entries: u64) -> u64 {
    let config = TransferConfig::default();
    (config.window_floor + 2 * config.segment_size) as u64 + entries * 64 + missing / 500
}

fn small_files(root: &Path, count: usize) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..count {
        random_file(&src.join(format!("f{i:05}")), 1024, i as u64);
    }
    src
}

/// The tests that hash gigabytes take both cores for seconds: they run alone, so that
/// the others, which stop a transfer partway, see it at its usual pace.
static HEAVY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by every test that may run beside the others.
fn beside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    HEAVY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by a test that must run alone.
fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    HEAVY
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(out.join(".transfer_lock.json")).expect("a lock file"))
        .unwrap()
}

/// Reruns the receive against a new sender of `source`; asserts it completes, sending at
/// most what was missing plus the allowance, and returns (bytes already here, receiver
/// log, sender log).
fn rerun(source: &Path, out: &Path, total: u64, entries: u64) -> (u64, String, String) {
    let sending = send(&["--pod"], &[source], None);
    let again = receive(&sending.receive_args(None), out, None);
    let log = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    let present = bytes_already_here(&log);
    // People read it too: "Already here: 64.0 MiB (0 whole files), not sent again".
    assert_eq!(
        log.contains("Already here: ") && log.contains("), not sent again"),
        present > 0,
        "{log}"
    );
    // And the sender says the same, whole files included.
    if present > 0 {
        let line = log
            .lines()
            .find(|l| l.starts_with("Already here: "))
            .unwrap_or_else(|| panic!("no 'Already here' line: {log}"));
        assert!(sender_log.contains(line), "{line}, not so:\n{sender_log}");
    }
    let missing = total - present;
    let sent = wire_bytes(&sender_log);
    assert!(
        sent <= missing + allowance(missing, entries),
        "sent {sent} bytes for {missing} missing:\n{log}"
    );
    assert!(
        !out.join(".transfer_lock.json").exists(),
        "lock left behind"
    );
    for left in [".transfer_lock.json.tmp", ".transfer_lock.json.spare"] {
        assert!(!out.join(left).exists(), "{left} left behind");
    }
    (present, log, sender_log)
}

#[test]
fn thousands_of_small_files_resume_after_kill_9_and_a_third_run_sends_nothing() {
    let _beside = beside_others();
    for count in [5_000, 20_000] {
        let dir = tempfile::tempdir().unwrap();
        let src = small_files(dir.path(), count);
        let out = dir.path().join("out");
        let sending = send(&["--pod"], &[&src], None);
        let log = dir.path().join("first.log");
        let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
        // Kill once about half the files are in place.
        wait_until(&mut child, &log, || {
            fs::read_dir(out.join("src")).map_or(0, |d| d.count()) >= count / 2
        });
        child.kill().unwrap();
        child.wait().unwrap();
        sending.abandon();

        let total = count as u64 * 1024;
        let (present, log, _) = rerun(&src, &out, total, count as u64 + 1);
        assert!(present >= total / 3, "{count}: little was resumed:\n{log}");
        assert_same_tree(&src, &out.join("src"));

        // Everything is here now: a third run sends no file data at all.
        let sending = send(&["--pod"], &[&src], None);
        let started = Instant::now();
        let third = receive(&sending.receive_args(None), &out, None);
        let log = stderr(&third);
        assert_eq!(third.status.code(), Some(0), "{log}");
        assert!(
            log.contains(&format!("All {count} files are already here")),
            "{log}"
        );
        let (status, sender_log) = sending.finish();
        assert_eq!(status, 0, "{sender_log}");
        assert!(sender_log.contains(" 0 B in "), "{sender_log}");
        assert!(
            sender_log.contains(&format!("({count} whole files), not sent again")),
            "{sender_log}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn ctrl_c_and_a_cut_connection_keep_exactly_what_was_verified() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    let total = 256u64 << 20;
    random_file(&source, total as usize, 11);
    let out = dir.path().join("out");
    let part = out.join("big.bin.part");

    // Ctrl-C: the receiver cancels, tells the sender, and writes a last checkpoint.
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.path().join("interrupted.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || part_len(&part) >= 32 << 20);
    signal(&child, "INT");
    let status = wait(&mut child, Duration::from_secs(60));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 8, "{text}");
    let (_, sender_log) = {
        let mut sending = sending;
        signal(&sending.child, "INT");
        let status = wait(&mut sending.child, Duration::from_secs(60));
        assert_eq!(status, 8, "the sender ends as cancelled too");
        (status, String::new())
    };
    let _ = sender_log;
    let kept = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        kept >= 32 << 20,
        "the last checkpoint kept only {kept} bytes"
    );
    assert_eq!(
        kept,
        part_len(&part),
        "the .part holds more than was verified"
    );

    // The connection cut (the sender dies): the same, from the receiver's side.
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.path().join("cut.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || part_len(&part) >= kept + (64 << 20));
    let mut sending = sending;
    sending.child.kill().unwrap();
    sending.child.wait().unwrap();
    let status = wait(&mut child, Duration::from_secs(60));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 4, "{text}");
    let kept_after_cut = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    assert!(kept_after_cut >= kept + (64 << 20), "{kept_after_cut}");
    assert_eq!(kept_after_cut, part_len(&part));

    let (present, log, _) = rerun(&source, &out, total, 1);
    assert_eq!(present, kept_after_cut);
    assert!(
        log.contains("checking what is already here: "),
        "no progress while re-hashing: {log}"
    );
    assert!(fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap());
}

#[test]
fn a_sender_restarted_with_one_more_file_sends_only_it_and_the_unverified_rest() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3 {
        random_file(&src.join(format!("part-{i}.bin")), 40 << 20, 30 + i);
    }
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&src], None);
    let log = dir.path().join("first.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || {
        part_len(&out.join("src/part-1.bin.part")) >= 8 << 20
    });
    signal(&child, "INT");
    assert_eq!(wait(&mut child, Duration::from_secs(60)), 8);
    sending.abandon();

    // The sender's list grows by one file; everything already verified still counts.
    random_file(&src.join("added.bin"), 10 << 20, 99);
    let total = 130u64 << 20;
    let (present, log, _) = rerun(&src, &out, total, 5);
    assert!(!log.contains("Ignoring the lock file"), "{log}");
    assert!(present >= 48 << 20, "{present} resumed:\n{log}");
    assert_same_tree(&src, &out.join("src"));
}

/// A small file system of its own for `out`, removed again when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (saying why) unless this runs as root: only root may mount.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: mounting a small tmpfs needs root");
            return None;
        }
        fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "root could not mount a tmpfs");
        Some(Tmpfs {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Takes all but `left` bytes of the free space of the file system holding `dir`, as a
/// file there, and returns its path.
fn fill_all_but(dir: &Path, left: u64) -> PathBuf {
    let free = nix::sys::statvfs::statvfs(dir).unwrap();
    let free = free.blocks_available() as u64 * free.fragment_size() as u64;
    let filler = dir.join("filler");
    let file = fs::File::create(&filler).unwrap();
    nix::fcntl::posix_fallocate(&file, 0, free.saturating_sub(left) as i64).unwrap();
    filler
}

/// Another program that takes every byte of disk that comes free on the file system
/// holding a folder, as a file there, until dropped (which removes the file).
struct Hog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    taking: Option<std::thread::JoinHandle<()>>,
    file: PathBuf,
}

impl Hog {
    fn start(dir: &Path) -> Hog {
        use std::sync::atomic::Ordering;
        let file = dir.join("hog");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let taking = {
            let (file, stop, dir) = (file.clone(), stop.clone(), dir.to_owned());
            let hog = fs::File::create(&file).unwrap();
            // Taken once before this returns: the disk is full from here on.
            let take = move || {
                let free = nix::sys::statvfs::statvfs(&dir).unwrap();
                let free = free.blocks_available() as u64 * free.fragment_size() as u64;
                let held = hog.metadata().unwrap().len();
                let _ = nix::fcntl::posix_fallocate(&hog, held as i64, free as i64);
            };
            take();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // As often as it can: disk given back is taken at once.
                    take();
                    std::thread::yield_now();
                }
            })
        };
        Hog {
            stop,
            taking: Some(taking),
            file,
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(taking) = self.taking.take() {
            let _ = taking.join();
        }
        let _ = fs::remove_file(&self.file);
    }
}

/// A random file of `len` bytes to send, and an output folder on a 64 MiB tmpfs of its
/// own: `None` where this cannot mount one (not root).
fn big_file_for_a_small_disk(
    len: u64,
    seed: u64,
) -> Option<(tempfile::TempDir, PathBuf, PathBuf, Tmpfs)> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, len as usize, seed);
    let out = dir.path().join("out");
    let disk = Tmpfs::mount(&out, "64m")?;
    Some((dir, source, out, disk))
}

#[test]
fn a_disk_that_fills_up_midway_keeps_what_was_verified() {
    let _beside = beside_others();
    let total = 50u64 << 20;
    let Some((_dir, source, out, _disk)) = big_file_for_a_small_disk(total, 12) else {
        return;
    };
    // Listed at 8 MiB, the file then grows to 50: the receiver checks the batch's space
    // for 8, then finds it growing (the sender sends it again as it is now), and its disk
    // cannot be set aside at once: the disk fills up in the middle of the file.
    OpenOptions::new()
        .write(true)
        .open(&source)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let sending = send(&["--pod"], &[&source], None);
    random_file(&source, total as usize, 12);
    let filler = fill_all_but(&out, 30 << 20);
    let received = receive(&sending.receive_args(None), &out, None);
    let text = stderr(&received);
    assert_eq!(received.status.code(), Some(6), "{text}");
    assert!(text.to_lowercase().contains("no space left"), "{text}");
    let kept = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    assert!(kept >= 20 << 20, "only {kept} bytes kept: {text}");
    sending.abandon();

    // The disk has room again: the rerun sends what was not verified, and no more than
    // one segment's worth besides (plus record framing).
    fs::remove_file(&filler).unwrap();
    let (present, _, sender_log) = rerun(&source, &out, total, 1);
    assert_eq!(present, kept);
    let segment = TransferConfig::default().segment_size as u64;
    let missing = total - kept;
    let sent = wire_bytes(&sender_log);
    assert!(
        sent <= missing + segment + missing / 500,
        "sent {sent} bytes for {missing} missing"
    );
    assert!(fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap());
}

/// `kill -9` loses at most the last 2 seconds (`--checkpoint 2`, the default) or 64 MiB of
/// what arrived (a checkpoint every hour: only the 64 MiB rule saves), and the time the
/// checkpoint's sync takes (allowed 3 s here): killed once well past both, the lock claims all the file held
/// that long before, give or take a segment that was not verified yet. Each stream goes
/// through a relay at a known rate, so that time and bytes can be told apart.
#[test]
fn kill_9_loses_at_most_the_last_two_seconds_or_64_mib() {
    // Alone: a checkpoint's sync beside tests that write gigabytes can take seconds.
    let _alone = alone();
    // (--checkpoint, rate, kill once the .part holds this, what may be lost after the
    // moment it held that: 2 s (or 64 MiB), and 3 s more for the checkpoint's sync.)
    const MIB: u64 = 1 << 20;
    let cases = [
        ("2", 8 * MIB, 60 * MIB, Duration::from_secs(5), 0),
        (
            "3600",
            32 * MIB,
            192 * MIB,
            Duration::from_secs(3),
            64 * MIB,
        ),
    ];
    for (every, rate, kill_at, late, bytes_late) in cases {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("big.bin");
        random_file(&source, (kill_at + 64 * MIB) as usize, 31);
        let out = dir.path().join("out");
        let sending = send(&["--pod"], &[&source], None);
        let mut args = sending.receive_args(None);
        at_a_rate(&mut args, rate);
        args.extend(["--checkpoint", every, "--connections", "1"].map(str::to_owned));
        let log = dir.path().join("receive.log");
        let mut child = spawn_receive(&args, &out, &log);
        // How much the .part held when: the lock must claim what it held `late` before
        // the kill, less `bytes_late`.
        let part = out.join("big.bin.part");
        let mut held = vec![];
        wait_until(&mut child, &log, || {
            held.push((Instant::now(), part_len(&part)));
            held.last().unwrap().1 >= kill_at
        });
        signal(&child, "KILL");
        let killed = Instant::now();
        wait(&mut child, Duration::from_secs(10));
        let then = killed - late;
        let owed = held
            .iter()
            .take_while(|(at, _)| *at <= then)
            .map(|&(_, len)| len)
            .last()
            .unwrap_or(0)
            .saturating_sub(bytes_late);
        let kept = out
            .join(".transfer_lock.json")
            .exists()
            .then(|| lock_json(&out)["files"]["big.bin"]["transferred_bytes"].as_u64())
            .flatten()
            .unwrap_or(0);
        let segment = TransferConfig::default().segment_size as u64;
        assert!(
            kept + segment >= owed,
            "--checkpoint {every}: kept {kept} of the {owed} bytes the .part held {late:?} \
             (less {bytes_late}) before the kill, at {} bytes",
            held.last().unwrap().1
        );
        assert!(
            owed >= 16 * MIB,
            "--checkpoint {every}: killed too early to tell"
        );
        sending.abandon();
    }
}

/// A process continued (if stopped) and killed when dropped.
struct Ended(std::process::Child);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every way a receive can end with data half in, short of `kill -9`, leaves a last
/// checkpoint of exactly what it verified: the sender's user pressing Ctrl-C, a bit
/// flipped on the wire, and a sender that stops answering. The stream is held at 48 MiB
/// (under the 64 MiB rule, with `--checkpoint 3600`), so only that last checkpoint can
/// vouch for it; the lock then claims all of the `.part` and the `.part` holds no byte
/// that is not claimed.
#[test]
fn every_end_midway_leaves_a_last_checkpoint_of_exactly_what_was_verified() {
    use std::sync::atomic::Ordering;
    let _beside = beside_others();
    const HOLD: u64 = 48 << 20;
    for how in ["Ctrl-C on the sender", "a flipped bit", "a stalled sender"] {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("big.bin");
        random_file(&source, 96 << 20, 41);
        let sender_log = dir.path().join("send.log");
        let (sender, mut args) = spawn_sender(
            &[],
            &[&source],
            Stdio::from(fs::File::create(&sender_log).unwrap()),
        );
        // Continued and ended however the test ends: a stopped sender would hold its port.
        let sender = Ended(sender);
        let flip = how == "a flipped bit";
        let release = if flip {
            let (at, sender_port) = port_arg(&args);
            args[at] = relay(sender_port, move |_, carried, chunk| {
                let end = carried + chunk.len() as u64;
                if (carried..end).contains(&HOLD) {
                    chunk[(HOLD - carried) as usize] ^= 0x01;
                }
                true
            })
            .to_string();
            None
        } else {
            Some(held_relay(&mut args, HOLD))
        };
        args.extend(
            [
                "--checkpoint",
                "3600",
                "--timeout",
                "2",
                "--connections",
                "1",
            ]
            .map(str::to_owned),
        );
        let out = dir.path().join("out");
        let log = dir.path().join("receive.log");
        let mut receiver = spawn_receive(&args, &out, &log);
        let part = out.join("big.bin.part");
        if let Some(release) = &release {
            // Everything the relay let through is in.
            wait_until(&mut receiver, &log, || part_len(&part) >= HOLD - (1 << 20));
            match how {
                "Ctrl-C on the sender" => signal(&sender.0, "INT"),
                _ => signal(&sender.0, "STOP"),
            }
            release.store(true, Ordering::SeqCst);
        }
        let status = wait(&mut receiver, Duration::from_secs(60));
        let text = fs::read_to_string(&log).unwrap();
        let expected = match how {
            "Ctrl-C on the sender" => 8,
            "a flipped bit" => 3,
            _ => 4,
        };
        assert_eq!(status, expected, "{how}: {text}");
        drop(sender);
        let kept = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{how}: no claim in the lock: {text}"));
        assert_eq!(
            kept,
            part_len(&part),
            "{how}: the lock and the .part differ"
        );
        // All the relay let through, but for a segment not yet verified.
        assert!(
            kept >= HOLD - (2 << 20),
            "{how}: only {kept} bytes kept: {text}"
        );
        assert!(
            fs::read(&part).unwrap()[..] == fs::read(&source).unwrap()[..kept as usize],
            "{how}: the .part is not the file's start"
        );
    }
}

/// An ordinary user's receive whose folder stops being writable mid-transfer (its owner, or
/// an admin, takes the permission away): it stops naming the file and the system's reason,
/// keeps what it verified, and once the permission is back a rerun resumes from there.
#[test]
fn write_permission_lost_midway_keeps_what_was_verified() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("a.bin"), 24 << 20, 21);
    random_file(&src.join("b.bin"), 64 << 20, 22);
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    give_to_the_user(dir.path(), &out);
    let sending = send(&["--pod"], &[&src], None);
    let log = dir.path().join("receive.log");
    let mut child = spawn_receive_with(as_the_user(), &sending.receive_args(None), &out, &log);
    let b_part = out.join("src/b.bin.part");
    wait_until(&mut child, &log, || part_len(&b_part) >= 8 << 20);
    let mode = |bits| fs::set_permissions(out.join("src"), fs::Permissions::from_mode(bits));
    mode(0o555).unwrap();
    let status = wait(&mut child, Duration::from_secs(60));
    mode(0o755).unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 6, "{text}");
    assert!(text.contains("src/b.bin"), "{text}");
    assert_eq!(text.matches("ermission denied").count(), 1, "{text}");
    sending.abandon();
    let files = &lock_json(&out)["files"];
    let kept = files["src/b.bin"]["transferred_bytes"].as_u64().unwrap();
    assert!(kept >= 4 << 20, "only {kept} bytes of b.bin kept: {text}");
    assert!(
        fs::read(src.join("a.bin")).unwrap() == fs::read(out.join("src/a.bin")).unwrap(),
        "a.bin, before the permission went, is not in place"
    );

    let total = 88u64 << 20;
    let (present, _, _) = rerun(&src, &out, total, 2);
    assert_eq!(present, (24 << 20) + kept);
    assert_same_tree(&src, &out.join("src"));
}

/// A `.part` left by a stopped run holds its file's disk, and the space check counts it:
/// on a disk since filled to 8 MiB short, the rerun of a 50 MiB file still goes ahead and
/// finishes; and where the file changed at the sender (sent afresh), the old `.part`'s disk
/// counts as freed, so that rerun goes ahead too.
#[test]
fn the_space_check_counts_the_disk_a_stopped_runs_part_holds() {
    let _beside = beside_others();
    let total = 50u64 << 20;
    let Some((_dir, source, out, _disk)) = big_file_for_a_small_disk(total, 13) else {
        return;
    };
    for rerun_with in ["the same file", "a changed file"] {
        stopped_midway(&source, &out, &out.join("big.bin.part"), 8 << 20, 16 << 20);
        let filler = fill_all_but(&out, 8 << 20);
        if rerun_with == "a changed file" {
            random_file(&source, total as usize, 14);
        }
        let sending = send(&["--pod"], &[&source], None);
        let again = receive(&sending.receive_args(None), &out, None);
        let text = stderr(&again);
        assert_eq!(again.status.code(), Some(0), "{rerun_with}: {text}");
        assert_eq!(sending.finish().0, 0);
        assert!(
            fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap(),
            "{rerun_with}: not the file"
        );
        fs::remove_file(&filler).unwrap();
        fs::remove_file(out.join("big.bin")).unwrap();
    }
}

#[test]
fn a_disk_filled_by_another_program_midway_cannot_stop_the_file_in_flight() {
    let _beside = beside_others();
    let total = 50u64 << 20;
    let Some((dir, source, out, _disk)) = big_file_for_a_small_disk(total, 13) else {
        return;
    };
    let part = out.join("big.bin.part");
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.path().join("receive.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || part_len(&part) >= 20 << 20);
    // Something else takes every byte it can: the file's disk was set aside as it began.
    let filler = out.join("filler");
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 100000000 /dev/zero > {}",
            filler.display()
        ))
        .stderr(Stdio::null())
        .status();
    let status = wait(&mut child, Duration::from_secs(60));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 0, "{text}");
    assert!(fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap());
    let (status, _) = sending.finish();
    assert_eq!(status, 0);
    let took = fs::metadata(&filler).unwrap().len();
    assert!(took <= 14 << 20, "the other program took {took} bytes");
}

/// The disk fills up (another program takes every byte) and stays full through several
/// checkpoints; then Ctrl-C. The transfer goes on meanwhile (its file's disk was set aside
/// as it began), the checkpoints that find no room are skipped, and the disk set aside
/// for the last checkpoint is still there, as no checkpoint before took it: the lock
/// keeps what was verified when the receive ended, and the spare is gone with it.
#[test]
fn a_disk_full_for_many_checkpoints_still_takes_the_last_one() {
    // Alone: the program taking the disk spins a core.
    let _alone = alone();
    let total = 48u64 << 20;
    let Some((dir, source, out, _disk)) = big_file_for_a_small_disk(total, 14) else {
        return;
    };
    let part = out.join("big.bin.part");
    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    at_a_rate(&mut args, 4 << 20);
    args.extend(["--checkpoint", "1", "--connections", "1"].map(str::to_owned));
    let log = dir.path().join("receive.log");
    let mut child = spawn_receive(&args, &out, &log);
    wait_until(&mut child, &log, || {
        part_len(&part) >= 8 << 20 && out.join(".transfer_lock.json").exists()
    });
    let hog = Hog::start(&out);
    // A checkpoint a second at 4 MiB/s: about four find the disk full.
    let full_at = part_len(&part);
    wait_until(&mut child, &log, || part_len(&part) >= full_at + (16 << 20));
    signal(&child, "INT");
    let status = wait(&mut child, Duration::from_secs(60));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 8, "{text}");
    let kept = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        kept >= full_at + (16 << 20) - TransferConfig::default().segment_size as u64,
        "the last checkpoint kept only {kept} bytes of {}: {text}",
        part_len(&part)
    );
    assert_eq!(
        kept,
        part_len(&part),
        "the .part holds more than was verified"
    );
    // Its user was told, once, that checkpoints wait for room.
    assert_eq!(
        text.matches("the disk is full: progress is saved only when this receive ends")
            .count(),
        1,
        "{text}"
    );
    assert!(
        !out.join(".transfer_lock.json.spare").exists(),
        "spare left behind"
    );
    sending.abandon();

    // Room again: the rerun sends the rest.
    drop(hog);
    let (present, _, _) = rerun(&source, &out, total, 1);
    assert_eq!(present, kept);
    assert!(fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap());
}

#[test]
fn a_temporary_lock_left_by_a_killed_run_is_removed_and_none_outlives_a_run() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let src = small_files(dir.path(), 300);
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    // What a run killed in the middle of a checkpoint leaves, and its spare.
    fs::write(out.join(".transfer_lock.json.tmp"), b"{\"half\":").unwrap();
    fs::write(out.join(".transfer_lock.json.spare"), [0u8; 4096]).unwrap();
    // Removed as the next receive takes the folder, before it connects: even one that
    // finds no sender.
    let nobody = Command::new(FERRY)
        .args([
            "receive",
            "127.0.0.1:abspsg6zdxftw42aen357ct6wg",
            "--pod",
            "--port",
            "1",
        ])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(4), "{}", stderr(&nobody));
    for left in [".transfer_lock.json.tmp", ".transfer_lock.json.spare"] {
        assert!(
            !out.join(left).exists(),
            "{left} left by a killed run stayed"
        );
    }
    fs::write(out.join(".transfer_lock.json.tmp"), b"{\"half\":").unwrap();
    rerun(&src, &out, 300 * 1024, 301);
    assert_same_tree(&src, &out.join("src"));
}

#[test]
fn sigterm_cancels_as_ctrl_c_does_and_the_rerun_resumes() {
    let _beside = beside_others();
    // What `docker stop` or systemd sends: the receiver cancels, tells the sender why,
    // saves what it verified, and a rerun resumes from there.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 128 << 20, 12);
    let out = dir.path().join("out");
    let part = out.join("big.bin.part");
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.path().join("terminated.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || part_len(&part) >= 16 << 20);
    signal(&child, "TERM");
    let status = wait(&mut child, Duration::from_secs(60));
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 8, "{text}");
    let kept = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    assert!(
        kept >= 16 << 20,
        "the last checkpoint kept only {kept} bytes"
    );
    // The sender was told why, and ends as cancelled too.
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 8, "{sender_log}");
    assert!(
        sender_log.contains("cancelled by the receiver: stopped by SIGTERM"),
        "the sender was not told why: {sender_log}"
    );
    let (present, _, _) = rerun(&source, &out, 128 << 20, 1);
    assert!(
        present >= kept,
        "the rerun found {present} bytes of the {kept} kept"
    );
}

/// Stops the receiver (Ctrl-C, or the connection cut) while it checks what is already
/// here for a resume, the sender's answers held back by a relay: what the last run
/// verified must survive that, in the lock and in the `.part`, and the next run resumes
/// from it.
fn stopped_while_checking(how: &str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    let total = 128u64 << 20;
    random_file(&source, total as usize, 31);
    let out = dir.path().join("out");
    let part = out.join("big.bin.part");
    let sending = send(&["--pod"], &[&source], None);
    // The sender's stream is held 80 MiB in (past the 64 MiB that bring a checkpoint)
    // until the receiver is killed: on a busy machine it could otherwise finish first.
    let mut args = sending.receive_args(None);
    let killed = held_relay(&mut args, 80 << 20);
    let log = dir.path().join("first.log");
    let mut child = spawn_receive(&args, &out, &log);
    wait_until(&mut child, &log, || {
        out.join(".transfer_lock.json").exists() && part_len(&part) >= 48 << 20
    });
    child.kill().unwrap();
    child.wait().unwrap();
    killed.store(true, Ordering::SeqCst);
    sending.abandon();
    let kept = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    assert!(kept > 0, "nothing verified before the kill");
    // Killed, it left more than it verified: the resume cuts that tail, not the check.
    let left = part_len(&part);

    // The rerun: once the receiver says it is checking, the sender's next bytes wait.
    const PASSING: u8 = 0;
    const HOLDING: u8 = 1;
    const RELEASED: u8 = 2;
    let state = Arc::new(AtomicU8::new(PASSING));
    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    let (at, sender_port) = port_arg(&args);
    let checking_log = dir.path().join("checking.log");
    let relay_log = checking_log.clone();
    let relay_state = Arc::clone(&state);
    let cut = how == "cut";
    let relay_port = relay(sender_port, move |_, _, _| {
        let checking = fs::read_to_string(&relay_log)
            .is_ok_and(|text| text.contains("checking what is already here"));
        if !checking {
            return true;
        }
        relay_state.store(HOLDING, Ordering::SeqCst);
        if cut {
            return false;
        }
        while relay_state.load(Ordering::SeqCst) == HOLDING {
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    });
    args[at] = relay_port.to_string();
    let mut child = spawn_receive(&args, &out, &checking_log);
    wait_until(&mut child, &checking_log, || {
        state.load(Ordering::SeqCst) == HOLDING
    });
    if !cut {
        signal(&child, "INT");
    }
    let status = wait(&mut child, Duration::from_secs(60));
    state.store(RELEASED, Ordering::SeqCst);
    let text = fs::read_to_string(&checking_log).unwrap();
    assert_eq!(status, if cut { 4 } else { 8 }, "{text}");
    sending.abandon();
    let after = lock_json(&out)["files"]["big.bin"]["transferred_bytes"].as_u64();
    assert_eq!(
        after,
        Some(kept),
        "{how}: the lock lost what was verified: {text}"
    );
    assert_eq!(part_len(&part), left, "{how}: the .part changed");

    let (present, _, _) = rerun(&source, &out, total, 1);
    assert_eq!(present, kept, "{how}: the next run did not resume");
}

#[test]
fn ctrl_c_while_checking_what_is_already_here_keeps_what_was_verified() {
    let _beside = beside_others();
    stopped_while_checking("ctrl-c");
}

#[test]
fn a_connection_cut_while_checking_what_is_already_here_keeps_what_was_verified() {
    let _beside = beside_others();
    stopped_while_checking("cut");
}

/// `--checkpoint 0` saves the resume state only when the receive ends: a receiver killed
/// outright leaves none (the next run starts over), one stopped with Ctrl-C leaves all it
/// verified.
#[test]
fn checkpoint_0_saves_only_at_the_end_of_a_receive() {
    let _beside = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    let total = 256u64 << 20;
    random_file(&source, total as usize, 41);
    let out = dir.path().join("out");
    let part = out.join("big.bin.part");
    for (how, signal_name) in [("kill -9", "KILL"), ("Ctrl-C", "INT")] {
        let _ = fs::remove_dir_all(&out);
        let sending = send(&["--pod"], &[&source], None);
        let mut args = sending.receive_args(None);
        args.extend(["--checkpoint".to_owned(), "0".to_owned()]);
        let log = dir.path().join("receive.log");
        let mut child = spawn_receive(&args, &out, &log);
        // Past the 64 MiB that would bring a checkpoint by default.
        wait_until(&mut child, &log, || part_len(&part) >= 96 << 20);
        signal(&child, signal_name);
        let status = wait(&mut child, Duration::from_secs(60));
        sending.abandon();
        let lock = out.join(".transfer_lock.json");
        if signal_name == "KILL" {
            assert!(
                !lock.exists(),
                "{how}: a checkpoint was saved while data flowed"
            );
        } else {
            assert_eq!(status, 8, "{how}: {}", fs::read_to_string(&log).unwrap());
            let kept = lock_json(&out)["files"]["big.bin"]["transferred_bytes"]
                .as_u64()
                .unwrap();
            assert!(kept >= 64 << 20, "{how}: only {kept} bytes kept");
        }
    }
}

/// Ctrl-C while the receiver re-reads gigabytes it already holds (a large resume) is heard
/// at once, not once the check is done, and the lock still vouches for all it did.
#[test]
fn ctrl_c_during_a_long_check_of_what_is_already_here_is_heard_at_once() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let (source, out, verified) = large_resume(dir.path(), 8 << 30);
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.path().join("receive.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || {
        fs::read_to_string(&log).is_ok_and(|text| text.contains("checking what is already here"))
    });
    let asked = Instant::now();
    signal(&child, "INT");
    let status = wait(&mut child, Duration::from_secs(60));
    let took = asked.elapsed();
    sending.abandon();
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 8, "{text}");
    assert!(
        took < Duration::from_millis(2500),
        "the stop took {took:?} to be heard: {text}"
    );
    assert_eq!(
        lock_json(&out)["files"]["big.bin"]["transferred_bytes"].as_u64(),
        Some(verified),
        "{text}"
    );
    assert_eq!(
        part_len(&out.join("big.bin.part")),
        verified,
        "the .part changed"
    );
}

/// `--timeout 1` on both sides, and a resume whose check takes each side seconds (1 GiB
/// to re-read and hash, in a debug build): the receiver waits out the sender's check of its claims, as the
/// time a resume allows says, and the batch completes sending the one MiB missing.
#[test]
fn a_short_timeout_outlasts_a_long_check_of_what_is_already_here() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    let (source, out, verified) = large_resume(dir.path(), 1 << 30);
    let sending = send(&["--pod", "--timeout", "1"], &[&source], None);
    let mut args = sending.receive_args(None);
    args.extend(["--timeout".to_owned(), "1".to_owned()]);
    let received = receive(&args, &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_eq!(bytes_already_here(&log), verified, "{log}");
    let sent = wire_bytes(&sender_log);
    assert!(sent < 2 << 20, "sent {sent} bytes for the one MiB missing");
}

/// Ctrl-C on a sender while it re-reads what a receiver says it already has (a large
/// resume) is heard at once, by the blocking sender and by the event loop
/// (`--receivers`), and the receiver hears why.
#[test]
fn ctrl_c_on_a_sender_checking_a_large_resume_is_heard_at_once() {
    let _alone = alone();
    for extra in [&[][..], &["--receivers", "1"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let (source, out, _) = large_resume(dir.path(), 4 << 30);
        let sender_log = dir.path().join("send.log");
        let stderr = Stdio::from(fs::File::create(&sender_log).unwrap());
        let (mut sender, args) = spawn_sender(extra, &[&source], stderr);
        let log = dir.path().join("receive.log");
        let mut receiver = spawn_receive(&args, &out, &log);
        // The receiver checks its copy first; then the sender reads its own to check the
        // claim: stopped 256 MiB into that, with seconds of it left (even in a fast
        // machine's debug build) if the stop waited for the check.
        wait_until(&mut receiver, &log, || bytes_read(sender.id()) >= 256 << 20);
        let asked = Instant::now();
        signal(&sender, "INT");
        let status = wait(&mut sender, Duration::from_secs(60));
        let took = asked.elapsed();
        let sent = fs::read_to_string(&sender_log).unwrap();
        assert_eq!(status, 8, "{extra:?}: {sent}");
        // It said what it was doing meanwhile (a session among several, with its peer).
        let said = sent.lines().any(|line| {
            if extra.is_empty() {
                line.starts_with("checking what is already here: ")
            } else {
                line.starts_with("127.0.0.1:") && line.contains(": checking what is already here: ")
            }
        });
        assert!(said, "{extra:?}: {sent}");
        assert!(
            took < Duration::from_millis(2500),
            "{extra:?}: the stop took {took:?} to be heard: {sent}"
        );
        let received = wait(&mut receiver, Duration::from_secs(60));
        let text = fs::read_to_string(&log).unwrap();
        assert_eq!(received, 8, "{extra:?}: {text}");
        assert!(
            text.contains("cancelled by the sender"),
            "{extra:?}: {text}"
        );
    }
}
