//! The `ferry` command as a user runs it: real processes on loopback.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use ferry_core::transfer::TransferConfig;

use common::*;

fn sample_tree(root: &Path) -> PathBuf {
    let tree = root.join("tree");
    fs::create_dir_all(tree.join("nested/deeper/deepest")).unwrap();
    fs::create_dir_all(tree.join("empty/also-empty")).unwrap();
    random_file(&tree.join("nested/deeper/big.bin"), 20_000_000, 1);
    fs::write(tree.join("zero"), b"").unwrap();
    fs::write(tree.join("nested/zero-too"), b"").unwrap();
    fs::write(tree.join("run.sh"), b"#!/bin/sh\necho ferry\n").unwrap();
    fs::set_permissions(tree.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(tree.join("nested/private"), b"secret").unwrap();
    fs::set_permissions(
        tree.join("nested/private"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    tree
}

#[test]
fn a_tree_arrives_identical_with_modes_kept() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    let out = dir.path().join("out");
    let sending = send(&["--pod"], &[&tree], None);
    let received = receive(&sending.receive_args(None), &out, None);
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_same_tree(&tree, &out.join("tree"));
    assert!(
        !out.join(".transfer_lock.json").exists(),
        "the lock file is removed on success"
    );
    assert!(
        stderr(&received).contains("Transfer complete:"),
        "{}",
        stderr(&received)
    );
}

#[test]
fn a_wrong_token_is_refused_and_the_sender_serves_the_right_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let tree = sample_tree(dir.path());
    let sending = send(&["--pod"], &[&tree], None);
    let wrong_out = dir.path().join("wrong");
    let wrong = receive(
        &sending.receive_args(Some("00000000000000000000000000")),
        &wrong_out,
        None,
    );
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("authentication failed: wrong token"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        !stderr(&wrong).contains(&sending.command[2]),
        "the token leaked into an error message"
    );
    let written: Vec<_> = fs::read_dir(&wrong_out)
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "the refused receiver wrote {written:?}");
    let out = dir.path().join("out");
    let right = receive(&sending.receive_args(None), &out, None);
    assert_eq!(right.status.code(), Some(0), "{}", stderr(&right));
    let (status, log) = sending.finish();
    assert_eq!(status, 0, "{log}");
    assert!(log.contains("failed authentication"), "{log}");
    assert_same_tree(&tree, &out.join("tree"));
}

/// Starts a receive of a 512 MiB file and kills it with SIGKILL once its first checkpoint
/// is published (a lock file exists) and at least 64 MiB are in its `.part` file.
fn crash_midway(dir: &Path) -> (Sending, PathBuf, PathBuf) {
    let source = dir.join("big.bin");
    random_file(&source, 512 << 20, 7);
    // The receiver's checkpoints sync the whole file system: left dirty, the source would
    // delay the first lock until the transfer had nearly finished.
    fs::File::open(&source).unwrap().sync_all().unwrap();
    let out = dir.join("out");
    let sending = send(&["--pod"], &[&source], None);
    let log = dir.join("first-receive.log");
    // The stream is held at 192 MiB until the kill, so that a fast machine cannot finish
    // the transfer before the first lock is published (never released: the kill ends it).
    let mut args = sending.receive_args(None);
    let _held = held_relay(&mut args, 192 << 20);
    args.extend(["--connections".to_owned(), "1".to_owned()]);
    let mut child = Command::new(FERRY)
        .args(args)
        .arg("-o")
        .arg(&out)
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let part = out.join("big.bin.part");
    let start = Instant::now();
    loop {
        let len = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if len >= 64 << 20 && out.join(".transfer_lock.json").exists() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the receive never got far enough"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the receive ended ({status}) before it could be killed, at {len} bytes:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (sending, source, out)
}

#[test]
fn a_receiver_killed_midway_resumes_sending_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (sending, source, out) = crash_midway(dir.path());
    let again = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{log}");
    assert!(
        log.contains("Resuming transfer: 0 completed, 1 partial, 0 fresh"),
        "{log}"
    );
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(
        fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap(),
        "resumed file differs"
    );
    let present = bytes_already_here(&log);
    let missing = (512u64 << 20) - present;
    let sent = wire_bytes(&sender_log);
    assert!(present > 0, "nothing was resumed: {log}");
    // Part headers, record framing and segment announcements cost about 0.1%.
    let segment = TransferConfig::default().segment_size as u64;
    let framing = missing / 500;
    assert!(
        sent <= missing + segment + framing,
        "sent {sent} bytes for {missing} missing (+ one {segment}-byte segment + {framing} framing)"
    );
}

#[test]
fn a_part_file_tampered_between_runs_is_detected_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let (sending, source, out) = crash_midway(dir.path());
    // Flip a byte near the start of what the lock file claims is verified.
    let part = out.join("big.bin.part");
    let mut data = fs::read(&part).unwrap();
    data[1000] ^= 0xff;
    fs::write(&part, data).unwrap();
    let again = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{log}");
    assert!(
        log.contains("Starting fresh transfer"),
        "the tampered prefix was trusted: {log}"
    );
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(fs::read(&source).unwrap() == fs::read(out.join("big.bin")).unwrap());
}

/// A `tailscale` on PATH that lists `peer` as this machine's peer and says its own
/// address is 127.0.0.1.
fn fake_tailscale(dir: &Path, peer: &str) -> PathBuf {
    let bin = dir.join(format!("bin-{peer}"));
    fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  ip) echo 127.0.0.1 ;;\n  status) echo '{{\"Self\":{{\"TailscaleIPs\":[\"100.64.0.1\"]}},\"Peer\":{{\"k\":{{\"TailscaleIPs\":[\"{peer}\"]}}}}}}' ;;\nesac\n"
    );
    let path = bin.join("tailscale");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn the_tailscale_peer_check_refuses_strangers_and_admits_peers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    fs::write(&file, b"over tailscale").unwrap();
    let stranger = fake_tailscale(dir.path(), "100.64.0.9");
    let peer = fake_tailscale(dir.path(), "127.0.0.1");
    // The sender itself accepts loopback as its peer; the receiver's check is the one
    // under test.
    let sending = send(&[], &[&file], Some(&peer));
    assert!(!sending.command.contains(&"--pod".to_owned()));
    let refused = receive(
        &sending.receive_args(None),
        &dir.path().join("no"),
        Some(&stranger),
    );
    assert_eq!(refused.status.code(), Some(7), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("not one of your Tailscale peers"),
        "{}",
        stderr(&refused)
    );
    let admitted = receive(
        &sending.receive_args(None),
        &dir.path().join("yes"),
        Some(&peer),
    );
    assert_eq!(admitted.status.code(), Some(0), "{}", stderr(&admitted));
    assert_eq!(sending.finish().0, 0);
    assert_eq!(
        fs::read(dir.path().join("yes/note.txt")).unwrap(),
        b"over tailscale"
    );
    // No tailscale at all: a clear error suggesting --pod.
    let empty = dir.path().join("empty-bin");
    fs::create_dir_all(&empty).unwrap();
    let missing = Command::new(FERRY)
        .args(["receive", "127.0.0.1:00000000000000000000000000", "-o"])
        .arg(dir.path().join("x"))
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(7));
    assert!(stderr(&missing).contains("--pod"), "{}", stderr(&missing));
}

#[test]
fn nothing_listening_is_a_network_error_at_once() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let output = Command::new(FERRY)
        .args([
            "receive",
            "--pod",
            "--port",
            &port.to_string(),
            "127.0.0.1:00000000000000000000000000",
            "-o",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("nothing is listening"),
        "{}",
        stderr(&output)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A second sender on a port already taken says so, and what to do, and prints no receive
/// command (which would lead a receiver to the first sender).
#[test]
fn a_port_in_use_is_refused_with_a_hint_and_no_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    fs::write(&file, b"first").unwrap();
    let first = send(&["--pod"], &[&file], None);
    let (_, port) = port_arg(&first.receive_args(None));
    let second = Command::new(FERRY)
        .args(["send", "--pod", "--port", &port.to_string()])
        .arg(&file)
        .output()
        .unwrap();
    let log = stderr(&second);
    assert_eq!(second.status.code(), Some(4), "{log}");
    assert!(
        log.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && log.contains("--port 0 for any free port"),
        "{log}"
    );
    assert!(
        second.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&second.stdout)
    );
    first.abandon();
    // A port an ordinary user may not take is not blamed on another sender (unless this
    // system lets anyone take it).
    let unprivileged_from = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    if unprivileged_from > 80 {
        give_to_the_user(dir.path(), &file);
        let privileged = as_the_user()
            .args(["send", "--pod", "--port", "80"])
            .arg(&file)
            .output()
            .unwrap();
        let log = stderr(&privileged);
        assert_eq!(privileged.status.code(), Some(4), "{log}");
        assert!(
            log.contains("ports below 1024 need privileges.") && !log.contains("another ferry"),
            "{log}"
        );
    }
    // A receiver has no use for port 0: a usage error, not a refused connection.
    let zero = Command::new(FERRY)
        .args([
            "receive",
            "127.0.0.1:abspsg6zdxftw42aen357ct6wg",
            "--pod",
            "--port",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
}

#[test]
fn a_silent_peer_is_a_timeout_not_a_hang() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(15));
        drop(stream);
    });
    let out = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let output = Command::new(FERRY)
        .args([
            "receive",
            "--pod",
            "--port",
            &port.to_string(),
            "127.0.0.1:00000000000000000000000000",
            "-o",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("timed out"), "{}", stderr(&output));
    assert!(start.elapsed() < Duration::from_secs(14));
    holder.join().unwrap();
}

#[test]
fn bad_connection_strings_are_usage_errors_naming_the_part() {
    let output = Command::new(FERRY)
        .args(["receive", "--pod", "127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("IP:TOKEN"), "{}", stderr(&output));
    let output = Command::new(FERRY)
        .args(["receive", "--pod", "127.0.0.1:short"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("token"), "{}", stderr(&output));
    // Numbers out of their range are usage errors too, naming the option.
    for n in ["0", "9", "x"] {
        let output = Command::new(FERRY)
            .args(["receive", "--pod", "--connections", n])
            .arg("127.0.0.1:00000000000000000000000000")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("--connections"),
            "{}",
            stderr(&output)
        );
    }
    // With --json, a program reads why on stdout too: the `failed` event that always ends
    // it (and nothing else there).
    for args in [
        &[
            "receive",
            "--json",
            "--connections",
            "9",
            "127.0.0.1:00000000000000000000000000",
        ][..],
        &["send", "--json", "--timeout", "0", "."][..],
        &["send", "--json", "--no-such-option", "."][..],
    ] {
        let output = Command::new(FERRY).args(args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stdout}");
        assert_eq!(lines[0]["event"], "failed", "{args:?}: {stdout}");
        assert_eq!(lines[0]["exit_code"], 2, "{args:?}: {stdout}");
        let option = args[2];
        assert!(
            lines[0]["error"].as_str().unwrap().contains(option),
            "{args:?}: {stdout}"
        );
    }
    let help = Command::new(FERRY).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("3  authentication failed"));
}

#[test]
fn a_mistyped_path_to_send_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("report.txt"), b"here").unwrap();
    let typo = dir.path().join("reprot.txt");
    let output = Command::new(FERRY)
        .args(["send", "--pod", "--port", "0"])
        .arg(dir.path().join("report.txt"))
        .arg(&typo)
        .output()
        .unwrap();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "cannot send {}: there is no such file or folder",
            typo.display()
        )),
        "{log}"
    );
    assert!(
        output.stdout.is_empty(),
        "a receive command was printed anyway"
    );
}

/// Paths that cannot be sent as given are usage errors (exit 2) that name them, said
/// before anything is listed or sent: two that would arrive under one name (the same
/// folder twice, or two files of one name from two folders), and `/`.
#[test]
fn paths_that_would_arrive_as_one_or_as_nothing_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["a", "b"] {
        fs::create_dir_all(dir.path().join(folder)).unwrap();
        fs::write(dir.path().join(folder).join("notes.txt"), folder).unwrap();
    }
    let (a, b) = (
        dir.path().join("a/notes.txt"),
        dir.path().join("b/notes.txt"),
    );
    let twice = dir.path().join("a");
    let slashed = format!("{}/", twice.display());
    for (paths, says) in [
        (
            vec![a.display().to_string(), b.display().to_string()],
            "would both arrive as notes.txt",
        ),
        (
            vec![twice.display().to_string(), slashed],
            "would both arrive as a",
        ),
        (vec!["/".to_owned()], "it has no name to send it under"),
    ] {
        let output = Command::new(FERRY)
            .args(["send", "--pod", "--port", "0"])
            .args(&paths)
            .output()
            .unwrap();
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{paths:?}: {log}");
        assert!(log.contains(says), "{paths:?}: {log}");
        assert!(
            output.stdout.is_empty(),
            "{paths:?}: a receive command was printed"
        );
    }
}

/// A file named like the lock Ferry keeps at the top of the output folder, sent by
/// itself, is refused before any data moves (it would be taken for the lock, and removed
/// with it), and the sender waits for a receiver it can serve.
#[test]
fn a_file_named_like_the_lock_is_refused_at_the_top_of_the_output_folder() {
    for name in [
        ".transfer_lock.json",
        ".transfer_lock.json.tmp",
        ".transfer_lock.json.spare",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        let shared = src.join(name);
        fs::write(&shared, b"someone's lock, sent for a bug report").unwrap();
        let sending = send(&["--pod"], &[&shared], None);
        let out = dir.path().join("out");
        let received = receive(&sending.receive_args(None), &out, None);
        let log = stderr(&received);
        assert_eq!(received.status.code(), Some(6), "{log}");
        assert!(
            log.contains(&format!(
                "{name} cannot be received at the top of the output folder"
            )),
            "{log}"
        );
        assert!(!out.join(name).exists(), "{name}: something arrived");
        sending.abandon();
        // In a folder, it arrives as any other file.
        let sending = send(&["--pod"], &[&src], None);
        let received = receive(&sending.receive_args(None), &out, None);
        assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
        assert_eq!(sending.finish().0, 0);
        assert_eq!(
            fs::read(out.join("src").join(name)).unwrap(),
            fs::read(&shared).unwrap()
        );
    }
}

/// Every receive command the README shows carries a connection string `ferry receive`
/// accepts: a user who types one in to try it meets the transfer, not a usage error.
#[test]
fn the_readmes_connection_strings_all_parse() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let shown: Vec<&str> = readme
        .split("ferry receive ")
        .skip(1)
        .filter_map(|after| after.split_whitespace().next())
        .filter(|word| word.contains(':') && !word.starts_with('-'))
        .collect();
    assert!(shown.len() >= 3, "no receive commands found in the README");
    for connection in shown {
        let parsed = connection.parse::<ferry_core::token::ConnectionString>();
        assert!(parsed.is_ok(), "{connection}: {parsed:?}");
    }
}

#[test]
fn ferry_help_gives_the_readmes_exit_codes_word_for_word() {
    // What scripts rely on must not say one thing in the README and another in --help.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table: Vec<(String, String)> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| code | meaning |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].replace('`', ""))
        })
        .collect();
    assert!(table.len() >= 10, "no exit code table in the README");
    let help = Command::new(FERRY).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Exit codes:"))
        .skip(1)
        .collect();
    assert_eq!(
        listed.len(),
        table.len(),
        "--help lists other codes:\n{help}"
    );
    for (code, meaning) in &table {
        assert!(
            listed.contains(&format!("  {code}  {meaning}").as_str()),
            "--help does not say \"{code}  {meaning}\":\n{help}"
        );
    }
}

/// Many files in the way, of another size (refused from the listing) or the same size
/// (refused once hashed): the refusal names five and says how many more, so that a user
/// who moves those five away is not refused again for the next.
#[test]
fn a_refusal_of_many_files_in_the_way_says_how_many() {
    for same_size in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let out = dir.path().join("out");
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(out.join("src")).unwrap();
        for i in 0..8 {
            let name = format!("f{i}.txt");
            fs::write(src.join(&name), format!("the sender's {i}")).unwrap();
            let mine = if same_size { "the SENDER's" } else { "mine" };
            fs::write(out.join("src").join(&name), format!("{mine} {i}")).unwrap();
        }
        let sending = send(&["--pod"], &[&src], None);
        let received = receive(&sending.receive_args(None), &out, None);
        let log = stderr(&received);
        assert_eq!(
            received.status.code(),
            Some(6),
            "same size {same_size}: {log}"
        );
        assert!(
            log.contains(" and 3 more already exist(s)"),
            "same size {same_size}: {log}"
        );
        sending.abandon();
    }
}

#[test]
fn an_existing_different_file_is_not_overwritten() {
    // Of another size (refused from the listing alone), and of the same size with one
    // byte changed in its middle (refused once the resume check has hashed it): kept
    // byte for byte, no .part left beside it, and replaced only with --overwrite.
    for same_size in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("report.bin");
        random_file(&file, 4 << 20, 21);
        let mut mine = fs::read(&file).unwrap();
        if same_size {
            mine[2 << 20] ^= 1;
        } else {
            mine.truncate(1000);
        }
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("report.bin"), &mine).unwrap();
        let sending = send(&["--pod"], &[&file], None);
        let received = receive(&sending.receive_args(None), &out, None);
        let log = stderr(&received);
        assert_eq!(
            received.status.code(),
            Some(6),
            "same size {same_size}: {log}"
        );
        assert!(
            log.contains("report.bin") && log.contains("--overwrite"),
            "same size {same_size}: {log}"
        );
        assert!(
            fs::read(out.join("report.bin")).unwrap() == mine,
            "same size {same_size}: the existing file changed"
        );
        assert!(
            !out.join("report.bin.part").exists(),
            "same size {same_size}: a .part was left"
        );
        // With --overwrite the same command replaces it.
        let mut args = sending.receive_args(None);
        args.push("--overwrite".into());
        let replaced = receive(&args, &out, None);
        assert_eq!(replaced.status.code(), Some(0), "{}", stderr(&replaced));
        assert!(fs::read(out.join("report.bin")).unwrap() == fs::read(&file).unwrap());
        sending.abandon();
    }
}

#[test]
fn a_hostile_sender_cannot_write_outside_the_output_directory() {
    for path in ["../x", "/etc/x", "a/../../x"] {
        let dir = tempfile::tempdir().unwrap();
        let hostile = hostile_sender(Duration::from_secs(15), move |link| {
            link.offer(&[Offered {
                path,
                size: 5,
                mode: 0o644,
            }]);
            link.idle_until_gone(Duration::from_secs(10));
        });
        let out = dir.path().join("out");
        let output = hostile.received_into(&out);
        assert_eq!(output.status.code(), Some(5), "{path}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("is refused"),
            "{path}: {}",
            stderr(&output)
        );
        assert!(!dir.path().join("x").exists());
        let inside: Vec<_> = fs::read_dir(&out).map(|d| d.collect()).unwrap_or_default();
        assert!(inside.is_empty(), "{path}: wrote {inside:?}");
    }
}

#[test]
fn a_stale_longer_part_file_without_a_lock_leaves_no_tail() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    random_file(&file, 100_000, 21);
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    random_file(&out.join("data.bin.part"), 300_000, 22);
    let sending = send(&["--pod"], &[&file], None);
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    // Named as it goes: it may have been someone's own file.
    assert!(
        log.contains("replacing data.bin.part: no resume state here vouches for any of it"),
        "{log}"
    );
    assert_eq!(sending.finish().0, 0);
    assert!(fs::read(&file).unwrap() == fs::read(out.join("data.bin")).unwrap());
    assert!(!out.join("data.bin.part").exists());
}

/// A `tailscale` on PATH whose `status --json` prints `status` and exits `code`, and
/// whose `ip -4` fails as it does when there is no address.
fn tailscale_saying(dir: &Path, name: &str, status: &str, code: i32, complaint: &str) -> PathBuf {
    let bin = dir.join(format!("bin-{name}"));
    fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  ip) echo 'no current Tailscale IPs' >&2; exit 1 ;;\n  status) printf '%s\\n' '{status}'; [ -z '{complaint}' ] || echo '{complaint}' >&2; exit {code} ;;\nesac\n"
    );
    let path = bin.join("tailscale");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn tailscale_not_installed_not_running_and_logged_out_each_say_their_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    fs::write(&file, b"x").unwrap();
    let empty = dir.path().join("empty-bin");
    fs::create_dir_all(&empty).unwrap();
    let cases = [
        (empty, "not installed", "https://tailscale.com/download"),
        (
            tailscale_saying(
                dir.path(),
                "down",
                "",
                1,
                "failed to connect to local tailscaled; it does not appear to be running",
            ),
            "installed but not running",
            "systemctl start tailscaled",
        ),
        (
            tailscale_saying(dir.path(), "out", r#"{"BackendState":"NeedsLogin"}"#, 0, ""),
            "logged out",
            "tailscale up",
        ),
        // A status printed with a failing exit, and nothing on stderr: the status says.
        (
            tailscale_saying(
                dir.path(),
                "out-1",
                r#"{"BackendState":"NeedsLogin"}"#,
                1,
                "",
            ),
            "logged out",
            "tailscale up",
        ),
        // Nothing said at all: the exit status is, not an empty reason.
        (
            tailscale_saying(dir.path(), "mute", "", 3, ""),
            "`tailscale status --json` failed: exit status: 3",
            "--pod",
        ),
        (
            tailscale_saying(
                dir.path(),
                "stopped",
                r#"{"BackendState":"Stopped"}"#,
                0,
                "",
            ),
            "stopped",
            "tailscale up",
        ),
    ];
    for (bin, what, fix) in cases {
        for side in ["send", "receive"] {
            let mut command = Command::new(FERRY);
            command.env("PATH", &bin).arg(side);
            if side == "send" {
                command.args(["--port", "0"]).arg(&file);
            } else {
                command
                    .args(["127.0.0.1:00000000000000000000000000", "-o"])
                    .arg(dir.path().join("x"));
            }
            let output = command.output().unwrap();
            let log = stderr(&output);
            assert_eq!(output.status.code(), Some(7), "{side}, {what}: {log}");
            for words in [what, fix, "--pod"] {
                assert!(log.contains(words), "{side}, {what}: no {words:?} in {log}");
            }
        }
    }
}

#[test]
fn compress_shrinks_text_on_the_wire_and_never_grows_random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let mut text = Vec::new();
    let mut i = 0u64;
    while text.len() < 4 << 20 {
        text.extend_from_slice(format!("{i} GET /index.html 200 {}\n", i * 7919 % 1000).as_bytes());
        i += 1;
    }
    for name in ["a.log", "b.log", "c.log"] {
        fs::write(src.join(name), &text).unwrap();
    }
    random_file(&src.join("random.bin"), 4 << 20, 8);
    let sending = send(&["--pod", "--compress"], &[&src], None);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert_same_tree(&src, &out.join("src"));
    let (text_bytes, random_bytes) = (3 * text.len() as u64, 4u64 << 20);
    let sent = wire_bytes(&sender_log);
    assert!(
        sent <= text_bytes / 3 + random_bytes * 1002 / 1000,
        "{sent} bytes on the wire for {text_bytes} of text and {random_bytes} random"
    );
}

/// The sender checks too: a receiver that is not one of its Tailscale peers is refused by
/// name, and the sender goes on waiting for one that is; so does one serving several
/// receivers on its event loop (`--receivers`).
#[test]
fn the_sender_refuses_a_receiver_that_is_not_its_tailscale_peer_and_keeps_waiting() {
    for args in [&[][..], &["--receivers", "2"]] {
        a_sender_refuses_a_stranger(args);
    }
}

fn a_sender_refuses_a_stranger(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    fs::write(&file, b"over tailscale").unwrap();
    let stranger = fake_tailscale(dir.path(), "100.64.0.9");
    let peer = fake_tailscale(dir.path(), "127.0.0.1");
    let mut sending = send(args, &[&file], Some(&stranger));
    let refused = receive(
        &sending.receive_args(None),
        &dir.path().join("no"),
        Some(&peer),
    );
    assert_eq!(
        refused.status.code(),
        Some(4),
        "{args:?}: {}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains(
            "it may have refused this machine (each side admits only its Tailscale peers)"
        ),
        "{args:?}: {}",
        stderr(&refused)
    );
    assert!(!dir.path().join("no/note.txt").exists());
    assert!(
        sending.child.try_wait().unwrap().is_none(),
        "{args:?}: the sender stopped waiting"
    );
    signal(&sending.child, "INT");
    let (status, log) = sending.finish();
    assert_eq!(status, 8, "{args:?}: {log}");
    assert!(
        log.contains("refused a connection from 127.0.0.1"),
        "{args:?}: {log}"
    );
}

/// `--pod` is loopback only: the sender listens on 127.0.0.1, and a receiver given any
/// other address refuses to connect to it, before a byte goes out.
#[test]
fn pod_mode_never_connects_beyond_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    fs::write(&file, b"in the pod").unwrap();
    let sending = send(&["--pod"], &[&file], None);
    assert!(
        sending
            .command
            .iter()
            .any(|arg| arg.starts_with("127.0.0.1:")),
        "{:?}",
        sending.command
    );
    // A listener on every address, so that a receiver that did connect would be seen to.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let token = "00000000000000000000000000";
    for address in ["192.0.2.1", "10.1.2.3", "[2001:db8::1]", "0.0.0.0"] {
        let started = Instant::now();
        let refused = Command::new(FERRY)
            .args([
                "receive",
                &format!("{address}:{token}"),
                "--pod",
                "--port",
                &port,
            ])
            .arg("-o")
            .arg(dir.path().join("x"))
            .output()
            .unwrap();
        let log = stderr(&refused);
        assert_eq!(refused.status.code(), Some(7), "{address}: {log}");
        assert!(
            log.contains("is not a loopback address; --pod connects only within this machine"),
            "{address}: {log}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{address}: tried first"
        );
        assert!(
            !dir.path().join("x").exists(),
            "{address}: made the output folder"
        );
    }
    assert!(
        listener.accept().is_err(),
        "a receiver connected beyond loopback"
    );
    sending.abandon();
}
