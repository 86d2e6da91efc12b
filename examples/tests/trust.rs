//! What the receiver promises about its output folder, tried the way a careless or hostile
//! user would: two receives into one folder, links planted at every name the receiver
//! creates (and a `.part` or a folder swapped for one mid-transfer), modes a peer should not set, escape
//! sequences in a peer's words, a sender that never answers, a batch that cannot fit, a
//! bit flipped on the wire.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_second_receive_into_the_same_folder_or_one_above_or_inside_fails_at_once() {
    // A careless user starts a second receive into the folder a first one is using, into
    // a folder of the first one's batch, or into the folder above the first one's output:
    // each would write into the other's files. All are refused at once, and the running
    // receive finishes intact.
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (dir.path().join("a/x"), dir.path().join("c/x"));
    for (folder, seed) in [(&a, 1), (&c, 2)] {
        fs::create_dir_all(folder).unwrap();
        random_file(&folder.join("big.bin"), 200 << 20, seed);
    }
    let b = dir.path().join("b/big.bin");
    fs::create_dir_all(b.parent().unwrap()).unwrap();
    random_file(&b, 200 << 20, 3);
    let out = dir.path().join("out");
    let inside = out.join("x");
    // (what, first's source, first's output, second's source, second's output): each
    // batch's file lands at out/x/big.bin.
    let cases = [
        ("same", &a, &out, &c, &out),
        ("inside", &a, &out, &b, &inside),
        ("above", &b, &inside, &a, &out),
    ];
    for (k, (what, first_src, first_out, second_src, second_out)) in cases.into_iter().enumerate() {
        let _ = fs::remove_dir_all(&out);
        let sending_first = send(&["--pod"], &[first_src.as_path()], None);
        let sending_second = send(&["--pod"], &[second_src.as_path()], None);
        let log = dir.path().join(format!("first{k}.log"));
        // The first one's stream is held 8 MiB in until the second has been refused.
        let mut args = sending_first.receive_args(None);
        let refused = held_relay(&mut args, 8 << 20);
        let mut first = spawn_receive(&args, first_out, &log);
        wait_until(&mut first, &log, || {
            part_len(&out.join("x/big.bin.part")) >= 1 << 20
        });
        let started = Instant::now();
        let second = receive(&sending_second.receive_args(None), second_out, None);
        refused.store(true, std::sync::atomic::Ordering::SeqCst);
        let text = stderr(&second);
        assert_eq!(second.status.code(), Some(6), "{what}: {text}");
        assert!(text.contains("another ferry receive"), "{what}: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: not at once"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "{what}: the first receive ended before the second was refused; the test proves nothing"
        );
        assert_eq!(
            wait(&mut first, Duration::from_secs(120)),
            0,
            "{what}: {}",
            fs::read_to_string(&log).unwrap()
        );
        assert_eq!(sending_first.finish().0, 0, "{what}");
        let first_file = if first_src.is_dir() {
            first_src.join("big.bin")
        } else {
            first_src.to_path_buf()
        };
        assert!(
            fs::read(first_file).unwrap() == fs::read(out.join("x/big.bin")).unwrap(),
            "{what}: the first receive's file was touched"
        );
        sending_second.abandon();
    }
}

#[test]
fn a_folder_above_locked_by_another_program_is_waited_for_a_moment_then_refused() {
    // Other programs lock folders too (systemd-tmpfiles, while it cleans one under /tmp;
    // scripts with flock(1)). A lock let go within a second delays a receive below it;
    // one kept refuses it, saying so.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.bin");
    random_file(&src, 1 << 20, 7);
    let above = dir.path().join("locked");
    fs::create_dir_all(&above).unwrap();
    for kept in [false, true] {
        let lock = fs::File::open(&above).unwrap();
        lock.lock().unwrap();
        let (letting_go, kept_lock) = if kept {
            (None, Some(lock))
        } else {
            let letting_go = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                drop(lock);
            });
            (Some(letting_go), None)
        };
        let sending = send(&["--pod"], &[&src], None);
        let out = above.join(format!("in-{kept}"));
        let received = receive(&sending.receive_args(None), &out, None);
        let text = stderr(&received);
        if kept {
            assert_eq!(received.status.code(), Some(6), "{text}");
            assert!(text.contains("another program keeps locked"), "{text}");
            sending.abandon();
            drop(kept_lock);
        } else {
            assert_eq!(received.status.code(), Some(0), "{text}");
            assert_eq!(sending.finish().0, 0);
            assert!(fs::read(&src).unwrap() == fs::read(out.join("small.bin")).unwrap());
            letting_go.unwrap().join().unwrap();
        }
    }
}

#[test]
fn receives_into_folders_side_by_side_run_together() {
    // The holds a receive keeps on the folders above its own are shared: receives into
    // sibling folders (each test here, in its own temporary folder, is one) go together.
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (dir.path().join("p.bin"), dir.path().join("q.bin"));
    random_file(&p, 48 << 20, 5);
    random_file(&q, 48 << 20, 6);
    let sending_p = send(&["--pod"], &[&p], None);
    let sending_q = send(&["--pod"], &[&q], None);
    let out = dir.path().join("out");
    // The first one's stream is held 8 MiB in until the second has finished.
    let mut args = sending_p.receive_args(None);
    let done = held_relay(&mut args, 8 << 20);
    let log = dir.path().join("p.log");
    let mut first = spawn_receive(&args, &out.join("p"), &log);
    wait_until(&mut first, &log, || {
        part_len(&out.join("p/p.bin.part")) >= 1 << 20
    });
    let second = receive(&sending_q.receive_args(None), &out.join("q"), None);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first receive ended before the second; the test proves nothing"
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(wait(&mut first, Duration::from_secs(120)), 0);
    assert_eq!(sending_p.finish().0, 0);
    assert_eq!(sending_q.finish().0, 0);
    assert!(fs::read(&p).unwrap() == fs::read(out.join("p/p.bin")).unwrap());
    assert!(fs::read(&q).unwrap() == fs::read(out.join("q/q.bin")).unwrap());
}

/// A file outside the output folder that a planted link points at; it must never change.
struct Victim {
    path: PathBuf,
}

impl Victim {
    const CONTENT: &'static [u8] = b"the victim's own content";

    fn new(dir: &Path) -> Self {
        let path = dir.join("victim");
        fs::write(&path, Self::CONTENT).unwrap();
        Victim { path }
    }

    fn assert_untouched(&self) {
        assert_eq!(
            fs::read(&self.path).unwrap(),
            Self::CONTENT,
            "the victim changed"
        );
    }
}

/// Receives `source` into `out`, in which `plant` has put something first; the receive
/// must fail with a clear error naming a link and leave the victim alone.
fn refused_because_of(name: &str, plant: impl FnOnce(&Path, &Victim)) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data.bin");
    random_file(&source, 3 << 20, 5);
    let victim = Victim::new(dir.path());
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    plant(&out, &victim);
    let sending = send(&["--pod"], &[&source], None);
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(6), "{name}: {log}");
    assert!(log.contains("symbolic link"), "{name}: {log}");
    victim.assert_untouched();
    assert!(
        fs::symlink_metadata(out.join("data.bin"))
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            || fs::symlink_metadata(out.join("data.bin")).is_ok_and(|m| m.file_type().is_symlink()),
        "{name}: committed anyway"
    );
    sending.abandon();
}

#[test]
fn a_link_planted_at_any_name_the_receiver_creates_is_refused_never_followed() {
    refused_because_of("the file's own name", |out, victim| {
        symlink(&victim.path, out.join("data.bin")).unwrap()
    });
    refused_because_of(".part", |out, victim| {
        symlink(&victim.path, out.join("data.bin.part")).unwrap()
    });
    refused_because_of("the lock file", |out, victim| {
        symlink(&victim.path, out.join(".transfer_lock.json")).unwrap()
    });
    refused_because_of("the lock's temporary file", |out, victim| {
        symlink(&victim.path, out.join(".transfer_lock.json.tmp")).unwrap()
    });
    refused_because_of("the lock's spare", |out, victim| {
        symlink(&victim.path, out.join(".transfer_lock.json.spare")).unwrap()
    });
}

#[test]
fn a_fifo_or_a_folder_planted_at_the_part_name_is_refused_at_once_and_left_alone() {
    // The receiver creates a fresh .part exclusively, and looks at what is there only when
    // that fails: a FIFO there must not be opened (an open would wait for a writer), a
    // folder not emptied; either is named and left as it was.
    for (what, plant) in [
        (
            "a FIFO",
            (|at: &Path| {
                nix::unistd::mkfifo(at, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
            }) as fn(&Path),
        ),
        ("a folder", |at: &Path| {
            fs::create_dir(at).unwrap();
            fs::write(at.join("inside"), b"kept").unwrap();
        }),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("data.bin");
        random_file(&source, 1 << 20, 6);
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let part = out.join("data.bin.part");
        plant(&part);
        let sending = send(&["--pod"], &[&source], None);
        let started = Instant::now();
        let received = receive(&sending.receive_args(None), &out, None);
        let log = stderr(&received);
        assert_eq!(received.status.code(), Some(6), "{what}: {log}");
        assert!(
            log.contains("data.bin.part"),
            "{what}: the error does not name it: {log}"
        );
        // Before any data moved.
        assert!(
            log.contains("has the name of its partial file") && !log.contains("Starting"),
            "{what}: {log}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: not at once"
        );
        let kind = fs::symlink_metadata(&part).unwrap().file_type();
        assert!(kind.is_fifo() || kind.is_dir(), "{what}: replaced");
        if kind.is_dir() {
            assert_eq!(fs::read(part.join("inside")).unwrap(), b"kept");
        }
        assert!(!out.join("data.bin").exists(), "{what}: committed anyway");
        sending.abandon();
    }
}

#[test]
fn a_link_planted_as_an_output_directory_is_refused_never_followed() {
    // At the top of the batch, and deep inside it: said before any data moves.
    for (planted, shown) in [
        ("tree", "tree cannot be received here:"),
        ("tree/deep/er", "tree/deep/er cannot be received here:"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("deep/er")).unwrap();
        fs::write(tree.join("deep/er/file"), b"payload").unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        let out = dir.path().join("out");
        let link = out.join(planted);
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(&outside, &link).unwrap();
        let sending = send(&["--pod"], &[&tree], None);
        let received = receive(&sending.receive_args(None), &out, None);
        let log = stderr(&received);
        assert_eq!(received.status.code(), Some(6), "{planted}: {log}");
        assert!(
            log.contains(&format!("{shown} a symbolic link")),
            "{planted}: {log}"
        );
        assert!(
            fs::read_dir(&outside).unwrap().next().is_none(),
            "{planted}: written through the link"
        );
        sending.abandon();
    }
}

#[test]
fn a_part_file_swapped_for_a_link_mid_transfer_is_never_renamed_or_written_through() {
    // The .part is Ferry's alone while it is written (mode 0600); another user of the
    // folder who moves it away and puts a link, or a file of their own of the same
    // length, in its place gets neither written through nor committed.
    for swap_in_a_link in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("big.bin");
        random_file(&source, 256 << 20, 9);
        let victim = Victim::new(dir.path());
        let out = dir.path().join("out");
        let sending = send(&["--pod"], &[&source], None);
        let log = dir.path().join("receive.log");
        let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
        let part = out.join("big.bin.part");
        wait_until(&mut child, &log, || part_len(&part) >= 4 << 20);
        let mode = fs::metadata(&part).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the .part is open to others: {mode:o}");
        fs::rename(&part, out.join("moved")).unwrap();
        if swap_in_a_link {
            symlink(&victim.path, &part).unwrap();
        } else {
            random_file(&part, 256 << 20, 10);
        }
        let status = wait(&mut child, Duration::from_secs(120));
        let log = fs::read_to_string(&log).unwrap();
        assert_eq!(status, 6, "link {swap_in_a_link}: {log}");
        assert!(log.contains("big.bin.part was replaced"), "{log}");
        victim.assert_untouched();
        assert!(
            !out.join("big.bin").exists(),
            "link {swap_in_a_link}: something was committed under the final name"
        );
        sending.abandon();
    }
}

/// A folder of the batch that another user of the output folder moves away mid-transfer,
/// putting a link to a folder of theirs in its place: nothing is written through the link,
/// what was on its way lands in the folder that was moved (the receive holds it open), and
/// the receive stops, naming the link, rather than put anything through it.
#[test]
fn a_folder_swapped_for_a_link_mid_transfer_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::create_dir_all(tree.join("zz")).unwrap();
    random_file(&tree.join("sub/big.bin"), 256 << 20, 11);
    fs::write(tree.join("sub/later.txt"), b"after the big one").unwrap();
    fs::write(tree.join("zz/last.txt"), b"in another folder").unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&tree], None);
    let log = dir.path().join("receive.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    let sub = out.join("tree/sub");
    wait_until(&mut child, &log, || {
        part_len(&sub.join("big.bin.part")) >= 4 << 20
    });
    let moved = out.join("tree/moved");
    fs::rename(&sub, &moved).unwrap();
    symlink(&outside, &sub).unwrap();
    let status = wait(&mut child, Duration::from_secs(120));
    let log = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 6, "{log}");
    assert!(
        log.contains("tree/sub: is a symbolic link; not following it"),
        "{log}"
    );
    let written: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(written.is_empty(), "written through the link: {written:?}");
    assert!(
        !out.join("tree/zz/last.txt").exists(),
        "went on past the link"
    );
    sending.abandon();
}

#[test]
fn a_peer_cannot_set_special_bits_and_the_receivers_umask_applies() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("shared")).unwrap();
    let mode = |path: &Path, bits: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(bits)).unwrap()
    };
    fs::write(tree.join("tool"), b"#!/bin/sh\n").unwrap();
    mode(&tree.join("tool"), 0o4755);
    mode(&tree.join("shared"), 0o1777);
    fs::write(tree.join("open"), b"world-writable").unwrap();
    mode(&tree.join("open"), 0o666);
    assert_eq!(
        fs::metadata(tree.join("tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755,
        "the source could not be given its setuid bit"
    );
    let got = |out: &Path, name: &str| {
        fs::metadata(out.join("tree").join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };

    let under_umask = |umask: &str| {
        let sending = send(&["--pod"], &[&tree], None);
        let out = dir.path().join(format!("out-{umask}"));
        let received = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(FERRY)
            .args(sending.receive_args(None))
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
        assert_eq!(sending.finish().0, 0);
        out
    };
    let out = under_umask("022");
    assert_eq!(got(&out, "tool"), 0o755, "setuid kept");
    assert_eq!(got(&out, "shared"), 0o755, "sticky kept");
    assert_eq!(got(&out, "open"), 0o644, "umask 022 ignored");
    let out = under_umask("077");
    assert_eq!(got(&out, "open"), 0o600, "umask 077 ignored");
    assert_eq!(got(&out, "tool"), 0o700);
    assert_eq!(got(&out, "shared"), 0o700);
}

#[test]
fn escape_sequences_in_a_peers_reason_never_reach_the_terminal() {
    let hostile = hostile_sender(Duration::from_secs(15), |link| {
        link.cancel(
            b"\x1b[31mred\x1b[0m \x07bell \x1b]0;new window title\x07 \xc2\x9b2J \xe2\x80\xaeevil",
        );
        link.idle_until_gone(Duration::from_secs(10));
    });
    let out = tempfile::tempdir().unwrap();
    let output = hostile.received_into(out.path());
    assert_eq!(output.status.code(), Some(8), "{}", stderr(&output));
    assert!(
        !output.stderr.iter().any(|&b| b == 0x1b || b == 0x07),
        "{:?}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains('\u{9b}') && !stderr(&output).contains('\u{202e}'),
        "{:?}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("\\x1b[31mred"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_sender_that_claims_more_than_a_million_entries_is_refused_before_any_is_listed() {
    // The README holds a batch to a million entries on both sides. A hostile sender that
    // announces one more (MANIFEST_BEGIN: entries, path bytes, total bytes, part size)
    // must be refused at that first message, before any list arrives or memory for it is
    // set aside, and nothing written.
    let hostile = hostile_sender(Duration::from_secs(15), |link| {
        let mut begin = vec![0x01];
        rmp::encode::write_array_len(&mut begin, 4).unwrap();
        for v in [1_000_001u64, 10, 0, 64 << 10] {
            rmp::encode::write_uint(&mut begin, v).unwrap();
        }
        link.send(&begin);
        link.idle_until_gone(Duration::from_secs(10));
    });
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = hostile.received_into(out.path());
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(5), "{log}");
    assert!(log.contains("the number of entries"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "{log}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0, "{log}");
}

#[test]
fn a_sender_that_never_answers_the_plan_is_given_up_on_within_the_timeout() {
    // Keepalives every 200 ms: the connection never looks idle, only the stall bound can
    // end the wait.
    let hostile = hostile_sender(Duration::from_millis(200), |link| {
        link.offer(&[Offered {
            path: "file",
            size: 1000,
            mode: 0o644,
        }]);
        link.idle_until_gone(Duration::from_secs(30));
    });
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = Command::new(FERRY)
        .args(&hostile.receive_args)
        .args(["--timeout", "3", "-o"])
        .arg(out.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    hostile.join();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("stopped making progress"),
        "{}",
        stderr(&output)
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "gave up after {took:?}"
    );
}

/// Free bytes on the file system holding `path`, as `df` shows them.
fn free_bytes(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df printed the free space")
}

#[test]
fn a_batch_larger_than_the_free_space_is_refused_before_any_data_moves() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    // A sparse file: large on paper, nothing on disk.
    let free = free_bytes(&out);
    let size = free + (64 << 30);
    let source = dir.path().join("huge.img");
    fs::File::create(&source).unwrap().set_len(size).unwrap();
    let sending = send(&["--pod"], &[&source], None);
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(6), "{log}");
    assert!(log.contains("not enough space"), "{log}");
    assert!(log.contains(&format!("({size} bytes) more")), "{log}");
    assert!(log.contains("bytes) are free"), "{log}");
    assert!(!out.join("huge.img.part").exists(), "data moved");
    let mut sending = sending;
    assert!(
        sending.child.try_wait().unwrap().is_none(),
        "the sender stopped waiting for the corrected rerun"
    );
    sending.abandon();
}

#[test]
fn a_file_larger_than_the_file_system_can_hold_is_refused_before_any_data_moves() {
    let hostile = hostile_sender(Duration::from_secs(15), |link| {
        link.offer(&[Offered {
            path: "impossible",
            size: 1 << 63,
            mode: 0o644,
        }]);
        link.idle_until_gone(Duration::from_secs(10));
    });
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(FERRY)
        .args(&hostile.receive_args)
        .arg("-o")
        .arg(out.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    hostile.join();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(6), "{log}");
    assert!(
        log.contains(&format!(
            "impossible is 8388608.00 TiB ({} bytes)",
            1u64 << 63
        )),
        "{log}"
    );
    assert!(!out.path().join("impossible.part").exists());
}

#[test]
fn a_bit_flipped_on_the_wire_stops_the_transfer_and_nothing_unverified_is_kept() {
    // One bit of the sender's stream flipped 8 MiB in, where records arrive whole in the
    // receiver's reads and are opened straight out of them: the receive stops with the
    // integrity error, commits nothing, and a receive straight from the sender resumes
    // to a byte-identical file.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 32 << 20, 91);
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    let (at, sender_port) = port_arg(&args);
    const FLIP_AT: u64 = 8 << 20;
    let relay = relay(sender_port, |index, carried, chunk| {
        let end = carried + chunk.len() as u64;
        if index == 0 && (carried..end).contains(&FLIP_AT) {
            chunk[(FLIP_AT - carried) as usize] ^= 0x10;
        }
        true
    });
    args[at] = relay.to_string();
    let tampered = receive(&args, &out, None);
    let log = stderr(&tampered);
    assert_eq!(
        tampered.status.code(),
        Some(3),
        "a tampered connection: {log}"
    );
    assert!(
        log.contains("corrupted or tampered with"),
        "the error does not say what happened: {log}"
    );
    assert!(!out.join("big.bin").exists(), "a file was committed: {log}");
    args[at] = sender_port.to_string();
    let again = receive(&args, &out, None);
    let log = stderr(&again);
    assert!(again.status.success(), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(
        fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap(),
        "big.bin differs"
    );
}

#[test]
fn a_file_or_link_that_appears_at_a_final_name_mid_transfer_is_never_replaced() {
    // The output folder does not exist, so the receive makes every folder of the batch
    // itself; while the file is on its way, another user of the folder puts a file (or a
    // link to a victim) at its final name. The commit must not replace it, but say so
    // (exit 6), and keep the verified .part as verified; a rerun with --overwrite puts it
    // in place without fetching it again, and never replaces the link.
    for planted_link in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        random_file(&tree.join("big.bin"), 32 << 20, 13);
        let victim = Victim::new(dir.path());
        let out = dir.path().join("out");
        let sending = send(&["--pod"], &[&tree], None);
        let mut args = sending.receive_args(None);
        // The sender's stream is held 8 MiB in until the name is planted, so that the
        // file cannot be committed first.
        let planted = held_relay(&mut args, 8 << 20);
        let log = dir.path().join("receive.log");
        let mut child = spawn_receive(&args, &out, &log);
        let part = out.join("tree/big.bin.part");
        wait_until(&mut child, &log, || part.exists());
        let final_name = out.join("tree/big.bin");
        const THEIRS: &[u8] = b"another user's file";
        if planted_link {
            symlink(&victim.path, &final_name).unwrap();
        } else {
            fs::write(&final_name, THEIRS).unwrap();
        }
        planted.store(true, std::sync::atomic::Ordering::SeqCst);
        let status = wait(&mut child, Duration::from_secs(120));
        let log = fs::read_to_string(&log).unwrap();
        assert_eq!(status, 6, "link {planted_link}: {log}");
        assert!(
            log.contains("tree/big.bin: appeared while it was being received"),
            "link {planted_link}: {log}"
        );
        victim.assert_untouched();
        if !planted_link {
            assert_eq!(
                fs::read(&final_name).unwrap(),
                THEIRS,
                "their file was replaced"
            );
        }
        assert_eq!(
            part_len(&part),
            32 << 20,
            "link {planted_link}: the verified .part is gone"
        );
        // The sender heard that the file is not in place (before, it said all was sent
        // and ended with 0: the receiver told it so before it had put the file there),
        // and waits for the rerun, which the user makes with --overwrite.
        let mut args = sending.receive_args(None);
        args.push("--overwrite".into());
        let again = receive(&args, &out, None);
        let again_log = stderr(&again);
        if planted_link {
            assert_eq!(again.status.code(), Some(6), "{again_log}");
            assert!(again_log.contains("symbolic link"), "{again_log}");
            assert!(
                fs::symlink_metadata(&final_name)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "the link was replaced"
            );
            victim.assert_untouched();
            sending.abandon();
        } else {
            assert!(again.status.success(), "{again_log}");
            assert_eq!(
                bytes_already_here(&again_log),
                32 << 20,
                "the verified .part was not taken up again: {again_log}"
            );
            let (status, sender_log) = sending.finish();
            assert_eq!(status, 0, "{sender_log}");
            assert!(
                fs::read(tree.join("big.bin")).unwrap() == fs::read(&final_name).unwrap(),
                "the rerun with --overwrite did not deliver big.bin"
            );
        }
    }
}

/// A receive stopped partway lists its file in the lock as in progress; a file the user
/// then puts at that file's name is theirs, not the receive's: the next receive refuses to
/// overwrite it before any data moves (exit 6), keeping both it and the `.part`, and
/// only `--overwrite` replaces it (resuming the `.part`).
#[test]
fn a_file_put_at_a_final_name_after_a_receive_was_stopped_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("report.bin");
    random_file(&source, 256 << 20, 17);
    let out = dir.path().join("out");
    let part = out.join("report.bin.part");
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.path().join("first.log");
    let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
    wait_until(&mut child, &log, || part_len(&part) >= 32 << 20);
    signal(&child, "INT");
    let status = wait(&mut child, Duration::from_secs(60));
    sending.abandon();
    assert_eq!(status, 8, "{}", fs::read_to_string(&log).unwrap());
    let kept = part_len(&part);
    const MINE: &[u8] = b"the user's own report";
    fs::write(out.join("report.bin"), MINE).unwrap();

    let sending = send(&["--pod"], &[&source], None);
    let again = receive(&sending.receive_args(None), &out, None);
    let again_log = stderr(&again);
    assert_eq!(again.status.code(), Some(6), "{again_log}");
    assert!(
        again_log.contains("report.bin already exist(s)") && again_log.contains("--overwrite"),
        "{again_log}"
    );
    sending.abandon();
    assert_eq!(
        fs::read(out.join("report.bin")).unwrap(),
        MINE,
        "overwritten"
    );
    assert_eq!(part_len(&part), kept, "the .part was touched");

    let sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    args.push("--overwrite".into());
    let replaced = receive(&args, &out, None);
    let replaced_log = stderr(&replaced);
    assert_eq!(replaced.status.code(), Some(0), "{replaced_log}");
    assert!(
        bytes_already_here(&replaced_log) > 0,
        "the .part was not resumed: {replaced_log}"
    );
    assert_eq!(sending.finish().0, 0);
    assert!(
        fs::read(&source).unwrap() == fs::read(out.join("report.bin")).unwrap(),
        "report.bin differs"
    );
}

/// Within a batch that is still being received, a file a receive put in place (here one
/// already there, copied without its mtime, that the receive verified) is the receive's
/// to replace when the sender's changes, without `--overwrite`: also by the run after one
/// that was stopped while the newer version was on its way. (Once a batch is all here,
/// its files are the user's: a newer version needs `--overwrite`.)
#[test]
fn a_newer_version_stopped_on_its_way_still_replaces_the_file_a_receive_put_there() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    let report = tree.join("a-report.bin");
    random_file(&report, 64 << 20, 21);
    let notes = tree.join("a-notes.bin");
    random_file(&notes, 1 << 20, 24);
    random_file(&tree.join("b-big.bin"), 256 << 20, 22);
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("tree")).unwrap();
    let copy = out.join("tree/a-report.bin");
    fs::copy(&report, &copy).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    fs::File::open(&copy)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    // Stops a receive of the tree once `part` holds 32 MiB.
    let stopped = |part: &Path, name: &str| {
        let sending = send(&["--pod"], &[&tree], None);
        let log = dir.path().join(name);
        let mut child = spawn_receive(&sending.receive_args(None), &out, &log);
        wait_until(&mut child, &log, || part_len(part) >= 32 << 20);
        signal(&child, "INT");
        let status = wait(&mut child, Duration::from_secs(60));
        sending.abandon();
        let text = fs::read_to_string(&log).unwrap();
        assert_eq!(status, 8, "{text}");
        text
    };

    let first = stopped(&out.join("tree/b-big.bin.part"), "first.log");
    assert!(
        first.contains("Resuming transfer: 1 completed, 0 partial, 2 fresh"),
        "{first}"
    );
    let (theirs, ours) = (fs::metadata(&report).unwrap(), fs::metadata(&copy).unwrap());
    assert_eq!(
        (ours.mtime(), ours.mtime_nsec()),
        (theirs.mtime(), theirs.mtime_nsec()),
        "the verified copy did not get the sender's mtime"
    );

    // The sender's files change (one keeps its size); the next receive is stopped while
    // the larger is on its way.
    random_file(&report, 256 << 20, 23);
    random_file(&notes, 1 << 20, 25);
    stopped(&out.join("tree/a-report.bin.part"), "second.log");
    assert_eq!(part_len(&copy), 64 << 20, "the old version is gone already");

    let sending = send(&["--pod"], &[&tree], None);
    let again = receive(&sending.receive_args(None), &out, None);
    let again_log = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{again_log}");
    assert!(
        bytes_already_here(&again_log) > 0,
        "nothing was resumed: {again_log}"
    );
    assert_eq!(sending.finish().0, 0);
    assert_same_tree(&tree, &out.join("tree"));
}

#[test]
fn a_receiver_that_stops_reading_is_given_up_on_within_the_senders_timeout() {
    // The receiver asks for 40 MiB and then reads nothing more, more than the sockets can
    // hold between them: the sender's writes wait. With --timeout 3 the sender must give
    // up on it (not wait on the write for ever) and serve the next receiver, who gets
    // the file whole.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 96 << 20, 17);
    let sending = send(&["--pod", "--timeout", "3"], &[&source], None);
    let args = sending.receive_args(None);
    let (_, port) = port_arg(&args);
    let stuck = greedy_receiver_that_stops_reading(&args[1], port, 1 << 20);
    let started = Instant::now();
    let out = dir.path().join("out");
    let received = receive(&args, &out, None);
    let log = stderr(&received);
    assert!(received.status.success(), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the next receiver waited {:?} for a sender held by one that stopped reading",
        started.elapsed()
    );
    drop(stuck);
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(
        sender_log.contains("stopped making progress"),
        "the sender did not say why it gave up: {sender_log}"
    );
    assert!(fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap());
}
