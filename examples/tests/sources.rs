//! Sources that do not hold still: files appended to, truncated and rewritten while they
//! are sent, a file the sender cannot read, names the protocol cannot carry. Each ends
//! the way a user of scp or rsync would expect, and costs no more than it must.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;

const SIZE: usize = 300 << 20;

/// Sends a 300 MiB file and, once the receiver holds 64 MiB of it, lets `change` alter
/// it at the sender. The receiver must end with the file as it is after the change, and
/// at most two sends of it may cross the wire.
fn changed_mid_send(what: &str, change: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, SIZE, 40);
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.path().join("receive.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || {
        part_len(&out.join("big.bin.part")) >= 64 << 20
    });
    change(&source);
    let status = wait(&mut child, Duration::from_secs(120));
    let log = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 0, "{what}: {log}");
    assert!(
        log.contains("fetching it again (attempt 2)"),
        "{what}: {log}"
    );
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{what}: {sender_log}");
    let now = fs::read(&source).unwrap();
    let arrived = fs::read(out.join("big.bin")).unwrap();
    let first_difference = now.iter().zip(&arrived).position(|(a, b)| a != b);
    assert!(
        now == arrived,
        "{what}: the file did not arrive as it is now ({} bytes against {}, first difference at {first_difference:?})\n{log}\n{sender_log}",
        arrived.len(),
        now.len()
    );
    // What was set aside for the file was its attempt's: the file fills it.
    let held = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(out.join("big.bin")).unwrap().blocks() * 512
    };
    assert!(
        held <= now.len() as u64 + (1 << 20),
        "{what}: {held} bytes on disk for a {} byte file",
        now.len()
    );
    // Both sides count what moved alike, the file's second send included, and say so.
    let moved = |log: &str, verb: &str| {
        let line = log.lines().find(|l| l.starts_with(verb)).unwrap_or("");
        assert!(line.contains(" of it sent again)"), "{what}: {line}\n{log}");
        line.split(", ")
            .nth(1)
            .and_then(|l| l.split(" in ").next())
            .map(str::to_owned)
    };
    assert_eq!(
        moved(&sender_log, "Sent: "),
        moved(&log, "Transfer complete: "),
        "{what}:\n{sender_log}\n{log}"
    );
    let sent = wire_bytes(&sender_log);
    let bound = (SIZE + now.len()) as u64 * 1002 / 1000;
    assert!(
        sent <= bound,
        "{what}: {sent} bytes on the wire for a {} byte file",
        now.len()
    );
}

#[test]
fn a_file_appended_to_mid_send_arrives_whole_in_at_most_two_sends() {
    changed_mid_send("append", |source| {
        let mut file = OpenOptions::new().append(true).open(source).unwrap();
        file.write_all(&[0x42; 1 << 20]).unwrap();
    });
}

#[test]
fn a_file_truncated_mid_send_arrives_as_it_is_now() {
    changed_mid_send("truncate", |source| {
        OpenOptions::new()
            .write(true)
            .open(source)
            .unwrap()
            .set_len(200 << 20)
            .unwrap();
    });
}

#[test]
fn a_file_rewritten_in_place_mid_send_arrives_with_the_new_bytes() {
    changed_mid_send("rewrite", |source| {
        // The first MiB, long since sent, changes in place: same size, new content.
        use std::os::unix::fs::FileExt;
        let file = OpenOptions::new().write(true).open(source).unwrap();
        file.write_all_at(&[0x17; 1 << 20], 0).unwrap();
    });
}

#[test]
fn a_file_the_sender_cannot_read_fails_by_name_at_both_ends_and_the_rest_arrives() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("first.bin"), 3 << 20, 1);
    random_file(&src.join("locked.bin"), 2 << 20, 2);
    random_file(&src.join("last.bin"), 3 << 20, 3);
    fs::set_permissions(src.join("locked.bin"), fs::Permissions::from_mode(0o000)).unwrap();
    let sending = send_with(as_the_user(), &["--pod"], &[&src]);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(5), "{log}");
    assert!(
        log.contains("the sender cannot read src/locked.bin: permission denied"),
        "{log}"
    );
    assert!(!log.contains("fetching it again"), "retried: {log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 5, "{sender_log}");
    assert!(
        sender_log.contains("cannot read src/locked.bin: Permission denied"),
        "{sender_log}"
    );
    for name in ["first.bin", "last.bin"] {
        assert!(fs::read(src.join(name)).unwrap() == fs::read(out.join("src").join(name)).unwrap());
    }
    assert!(!out.join("src/locked.bin").exists());
    assert!(!out.join("src/locked.bin.part").exists());
}

/// A folder below the paths given that the sender may not list (`chmod 000`, another
/// user's) is left out by name, and the rest is sent: the send ends with exit 5, as for a
/// file it cannot read, while the receiver, which got everything offered, ends with 0.
#[test]
fn a_folder_the_sender_cannot_list_is_left_out_by_name_and_the_rest_arrives() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("private")).unwrap();
    random_file(&src.join("first.bin"), 1 << 20, 1);
    random_file(&src.join("private/secret.bin"), 1 << 20, 2);
    random_file(&src.join("last.bin"), 1 << 20, 3);
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o000)).unwrap();
    let sending = send_with(as_the_user(), &["--pod"], &[&src]);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(status, 5, "{sender_log}");
    assert!(
        sender_log.contains("src/private: cannot list it: Permission denied"),
        "{sender_log}"
    );
    assert!(
        sender_log.contains("sent everything that could be read; 1 path left out (see above)"),
        "{sender_log}"
    );
    for name in ["first.bin", "last.bin"] {
        assert!(fs::read(src.join(name)).unwrap() == fs::read(out.join("src").join(name)).unwrap());
    }
    assert!(
        !out.join("src/private").exists(),
        "an empty stand-in arrived"
    );
}

#[test]
fn names_the_protocol_cannot_carry_and_links_sockets_and_fifos_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("plain.txt"), b"plain").unwrap();
    fs::write(src.join("sub/also.txt"), b"also").unwrap();
    fs::write(src.join("back\\slash"), b"x").unwrap();
    fs::write(src.join("new\nline"), b"x").unwrap();
    fs::write(
        src.join(std::ffi::OsStr::from_bytes(b"not-utf8-\xff")),
        b"x",
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("sub/link")).unwrap();
    nix::unistd::mkfifo(
        &src.join("sub/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sub/socket")).unwrap();
    let sending = send(&["--pod"], &[&src], None);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    for warning in [
        "back\\slash: backslashes are not allowed",
        "new\\x0aline: NUL and control characters are not allowed",
        "its name is not valid UTF-8",
        "sub/link: a symbolic link (not followed)",
        "sub/fifo: not a regular file or directory",
        "sub/socket: not a regular file or directory",
    ] {
        assert!(sender_log.contains(warning), "{warning}: {sender_log}");
    }
    assert_eq!(fs::read(out.join("src/plain.txt")).unwrap(), b"plain");
    assert_eq!(fs::read(out.join("src/sub/also.txt")).unwrap(), b"also");
    let mut names: Vec<_> = fs::read_dir(out.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["plain.txt", "sub"]);
    let below: Vec<_> = fs::read_dir(out.join("src/sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(below, ["also.txt"]);
}

/// Gives `path` the modification time of `like`, so that only a swap itself can tell
/// one from the other.
fn same_time(path: &Path, like: &Path) {
    let listed_at = fs::metadata(like).unwrap().modified().unwrap();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(listed_at)
        .unwrap();
}

#[test]
fn a_source_file_or_folder_swapped_for_a_link_or_a_fifo_after_listing_is_never_read_through() {
    // Another user of the folder being sent swaps, after the sender listed it, one file
    // for a link to a file of the sender's and a folder for a link to a folder of the
    // sender's (holding a file of the same name; each of the same size and time, so that
    // only the swap itself can give it away), and another file for a FIFO. No link may
    // be read through, the FIFO must not hang the sender: each fails by name, the rest
    // arrives.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    random_file(&src.join("first.bin"), 3 << 20, 1);
    random_file(&src.join("linked.bin"), 2 << 20, 2);
    random_file(&src.join("piped.bin"), 2 << 20, 3);
    random_file(&src.join("sub/inner.bin"), 2 << 20, 5);
    random_file(&src.join("last.bin"), 3 << 20, 4);
    let secret = dir.path().join("secret");
    random_file(&secret, 2 << 20, 99);
    same_time(&secret, &src.join("linked.bin"));
    let private = dir.path().join("private");
    fs::create_dir_all(&private).unwrap();
    random_file(&private.join("inner.bin"), 2 << 20, 98);
    same_time(&private.join("inner.bin"), &src.join("sub/inner.bin"));
    let sending = send(&["--pod"], &[&src], None);
    fs::remove_file(src.join("linked.bin")).unwrap();
    std::os::unix::fs::symlink(&secret, src.join("linked.bin")).unwrap();
    fs::rename(src.join("sub"), dir.path().join("moved-sub")).unwrap();
    std::os::unix::fs::symlink(&private, src.join("sub")).unwrap();
    fs::remove_file(src.join("piped.bin")).unwrap();
    nix::unistd::mkfifo(
        &src.join("piped.bin"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut args = sending.receive_args(None);
    args.extend(["--timeout".into(), "20".into()]);
    let received = receive(&args, &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(5), "{log}");
    for name in ["linked.bin", "piped.bin", "sub/inner.bin"] {
        assert!(
            log.contains(&format!("the sender cannot read src/{name}")),
            "{name}: {log}"
        );
    }
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 5, "{sender_log}");
    for (name, why) in [
        ("linked.bin", "is a symbolic link"),
        ("piped.bin", "is not a regular file"),
        ("sub/inner.bin", "is a symbolic link"),
    ] {
        assert!(
            sender_log.contains(&format!("cannot read src/{name}: {why}")),
            "{name}: {sender_log}"
        );
    }
    for name in ["first.bin", "last.bin"] {
        assert!(fs::read(src.join(name)).unwrap() == fs::read(out.join("src").join(name)).unwrap());
    }
    let secrets = [
        fs::read(&secret).unwrap(),
        fs::read(private.join("inner.bin")).unwrap(),
    ];
    for name in [
        "linked.bin",
        "linked.bin.part",
        "piped.bin",
        "piped.bin.part",
        "sub/inner.bin",
        "sub/inner.bin.part",
    ] {
        let arrived = fs::read(out.join("src").join(name)).ok();
        assert!(
            arrived.is_none_or(|bytes| bytes.len() < 1 << 20 && !secrets.contains(&bytes)),
            "{name} arrived with the sender's own file in it"
        );
    }
}

#[test]
fn links_given_on_the_command_line_are_followed() {
    // The paths a user gives are theirs to choose, links included (`ferry send
    // ~/current`): a link to a file and a link to a folder are sent as what they lead
    // to, under the link's name. Links inside the folder stay skipped.
    let dir = tempfile::tempdir().unwrap();
    random_file(&dir.path().join("real.bin"), 300_000, 5);
    fs::create_dir_all(dir.path().join("real-dir")).unwrap();
    random_file(&dir.path().join("real-dir/inside.bin"), 200_000, 6);
    std::os::unix::fs::symlink(dir.path().join("real.bin"), dir.path().join("file-link")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real-dir"), dir.path().join("dir-link")).unwrap();
    let sending = send(
        &["--pod"],
        &[&dir.path().join("file-link"), &dir.path().join("dir-link")],
        None,
    );
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    assert!(received.status.success(), "{}", stderr(&received));
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(
        fs::read(dir.path().join("real.bin")).unwrap() == fs::read(out.join("file-link")).unwrap()
    );
    assert!(
        fs::read(dir.path().join("real-dir/inside.bin")).unwrap()
            == fs::read(out.join("dir-link/inside.bin")).unwrap()
    );
}

#[test]
fn a_file_that_keeps_changing_gives_up_by_name_after_three_attempts_and_the_rest_arrives() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("ok.bin"), 3 << 20, 5);
    let log_file = src.join("grow.log");
    random_file(&log_file, 64 << 20, 6);
    // A program still writing its log: a line every millisecond while the send runs.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = Arc::clone(&writing);
        let path = log_file.clone();
        std::thread::spawn(move || {
            let mut file = OpenOptions::new().append(true).open(path).unwrap();
            while writing.load(Ordering::SeqCst) {
                file.write_all(b"another line of the log\n").unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let sending = send(&["--pod"], &[&src], None);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    writing.store(false, Ordering::SeqCst);
    writer.join().unwrap();
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(5), "{log}");
    assert!(log.contains("(attempt 3)"), "{log}");
    assert!(
        log.contains("src/grow.log kept changing at the sender; gave up after 3 attempts"),
        "{log}"
    );
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 5, "{sender_log}");
    // The sender's side of it: the file by name, and how many did not arrive.
    assert!(
        sender_log.contains("src/grow.log changed while being sent; sending it again (attempt 3)")
            && sender_log.contains("sent all but 1 of the files"),
        "{sender_log}"
    );
    assert!(fs::read(src.join("ok.bin")).unwrap() == fs::read(out.join("src/ok.bin")).unwrap());
    assert!(
        !out.join("src/grow.log").exists(),
        "a file that never held still was kept"
    );
}

#[test]
fn a_file_deleted_after_the_listing_fails_by_name_at_both_ends_and_the_rest_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("first.bin"), 3 << 20, 1);
    random_file(&src.join("gone.bin"), 2 << 20, 2);
    random_file(&src.join("last.bin"), 3 << 20, 3);
    let sending = send(&["--pod"], &[&src], None);
    fs::remove_file(src.join("gone.bin")).unwrap();
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(5), "{log}");
    assert!(log.contains("the sender cannot read src/gone.bin"), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 5, "{sender_log}");
    assert!(sender_log.contains("src/gone.bin"), "{sender_log}");
    for name in ["first.bin", "last.bin"] {
        assert!(fs::read(src.join(name)).unwrap() == fs::read(out.join("src").join(name)).unwrap());
    }
    assert!(!out.join("src/gone.bin").exists());
    assert!(!out.join("src/gone.bin.part").exists());
}

/// A file whose size reads as 0 but has content (a /proc file) is left out by name, not
/// sent empty as if that were all of it; the rest arrives, and the sender ends with exit
/// 5 as for a file it cannot read.
#[cfg(target_os = "linux")]
#[test]
fn a_proc_file_whose_size_reads_as_0_is_left_out_by_name_not_sent_empty() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.bin");
    random_file(&plain, 100_000, 5);
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, b"").unwrap();
    let proc_file = Path::new("/proc/self/status");
    let sending = send(&["--pod"], &[&plain, &empty, proc_file], None);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 5, "{sender_log}");
    assert!(
        sender_log.contains("/proc/self/status: its size reads as 0 but it has content"),
        "{sender_log}"
    );
    assert!(fs::read(&plain).unwrap() == fs::read(out.join("plain.bin")).unwrap());
    assert_eq!(
        fs::read(out.join("empty.txt")).unwrap(),
        b"",
        "a truly empty file"
    );
    assert!(!out.join("status").exists(), "sent empty");
}
