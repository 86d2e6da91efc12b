//! The `ferry` command as a person and as a program meet it: `--json` events a program
//! can follow to `finished`, `--quiet` that prints nothing, progress that never passes
//! its total when a file is sent again, Ctrl-C on either side that both sides call a
//! cancel, a sender that clears its bar when its receiver drops, and an empty batch
//! refused before anything listens.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `ferry send --pod --port 0 ARGS PATHS` with its stdout and stderr piped (no `-v`).
fn spawn_send(args: &[&str], paths: &[&Path]) -> Child {
    Command::new(FERRY)
        .args(["send", "--pod", "--port", "0"])
        .args(args)
        .args(paths)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The receive arguments from a `--json` sender's first event.
fn listening(child: &mut Child) -> (Vec<String>, BufReader<std::process::ChildStdout>) {
    let (args, stdout, earlier) = listening_after(child);
    assert!(earlier.is_empty(), "events before listening: {earlier:?}");
    (args, stdout)
}

/// The receive arguments from a `--json` sender's `listening` event, and the events
/// before it (what its listing had to say).
fn listening_after(
    child: &mut Child,
) -> (
    Vec<String>,
    BufReader<std::process::ChildStdout>,
    Vec<Value>,
) {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut earlier = Vec::new();
    loop {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let event: Value = serde_json::from_str(&line).expect("every line is JSON");
        if event["event"] != "listening" {
            earlier.push(event);
            continue;
        }
        let command = event["command"].as_str().unwrap();
        let args = command.split_whitespace().skip(1).map(str::to_owned);
        return (args.collect(), stdout, earlier);
    }
}

/// The receive arguments from the command a plain sender prints first.
fn printed_command(child: &mut Child) -> (Vec<String>, BufReader<std::process::ChildStdout>) {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("ferry receive "), "{line}");
    let args = line.split_whitespace().skip(1).map(str::to_owned);
    (args.collect(), stdout)
}

fn events(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn tree(root: &Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    random_file(&root.join("a.bin"), 300_000, 1);
    random_file(&root.join("sub/b.bin"), 200_000, 2);
}

/// A folder with two files, one in a subfolder, under a temporary directory.
fn batch() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src);
    (dir, src)
}

#[test]
fn json_events_are_parseable_and_end_with_finished_and_the_right_counts() {
    let (dir, src) = batch();
    let mut sender = spawn_send(&["--json"], &[&src]);
    let (args, mut sender_out) = listening(&mut sender);
    let out = dir.path().join("out");
    let received = Command::new(FERRY)
        .args(&args)
        .args(["--json", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    assert!(received.stderr.is_empty(), "{}", stderr(&received));
    let got = events(&String::from_utf8(received.stdout).unwrap());
    let kinds: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    for kind in ["offered", "plan", "progress", "file_done", "finished"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let offered = &got[kinds.iter().position(|k| *k == "offered").unwrap()];
    assert_eq!(
        (offered["files"].as_u64(), offered["folders"].as_u64()),
        (Some(2), Some(2))
    );
    let last = got.last().unwrap();
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(last["files"], 2, "{last}");
    assert_eq!(last["folders"], 2, "{last}");
    assert_eq!(last["failed"], 0, "{last}");
    assert_eq!(last["bytes"], 500_000, "{last}");
    // What came off the wire: the data, sealed and framed.
    assert!(
        last["wire_bytes"]
            .as_u64()
            .is_some_and(|wire| wire > 500_000),
        "{last}"
    );
    let done: Vec<&str> = got
        .iter()
        .filter(|e| e["event"] == "file_done")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(done.len(), 2, "{done:?}");
    let progress = |events: &[Value]| -> Value {
        events
            .iter()
            .rfind(|e| e["event"] == "progress")
            .cloned()
            .expect("no progress")
    };
    let receiving = progress(&got);
    assert_eq!(receiving["files_total"], 2, "{receiving}");
    // The last says every file done: files are done once in place, after their bytes.
    assert_eq!(receiving["files_done"], 2, "{receiving}");

    let status = wait(&mut sender, Duration::from_secs(60));
    assert_eq!(status, 0);
    let mut rest = String::new();
    sender_out.read_to_string(&mut rest).unwrap();
    let sent = events(&rest);
    let last = sent.last().unwrap();
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(
        (last["files"].as_u64(), last["folders"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(last["bytes"], 500_000, "{last}");
    // The sender hears which files arrived only at the end: no count that stays at 0.
    let sending = progress(&sent);
    assert!(sending["files_done"].is_null(), "{sending}");
    assert_eq!(sending["bytes"], sending["bytes_total"], "{sending}");
}

/// The last `--json` event of a run.
fn last_event(stdout: &str) -> Value {
    events(stdout).pop().expect("no JSON event at all")
}

/// A resumed receive's `plan` counts what is here exactly: the whole file, the partial
/// one and what its lock vouches for, and what is left to send.
#[test]
fn json_plan_of_a_resume_counts_what_is_here() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("a.bin"), 8 << 20, 51);
    random_file(&src.join("z.bin"), 128 << 20, 52);
    let out = dir.path().join("out");
    stopped_midway(&src, &out, &out.join("src/z.bin.part"), 32 << 20, 64 << 20);
    let lock: Value =
        serde_json::from_slice(&fs::read(out.join(".transfer_lock.json")).unwrap()).unwrap();
    let partial = lock["files"]["src/z.bin"]["transferred_bytes"]
        .as_u64()
        .unwrap();
    assert!(partial > 0, "{lock}");

    let sending = send(&["--pod"], &[&src], None);
    let received = Command::new(FERRY)
        .args(sending.receive_args(None))
        .args(["--json", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    let _ = sending.finish();
    let got = events(&String::from_utf8(received.stdout).unwrap());
    let plan = got.iter().find(|e| e["event"] == "plan").expect("a plan");
    let present = (8 << 20) + partial;
    assert_eq!(plan["files_complete"], 1, "{plan}");
    assert_eq!(plan["files_partial"], 1, "{plan}");
    assert_eq!(plan["files_fresh"], 0, "{plan}");
    assert_eq!(plan["bytes_present"], present, "{plan}");
    assert_eq!(plan["bytes_to_send"], (128 << 20) - partial, "{plan}");
    let last = got.last().unwrap();
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(last["bytes_present"], present, "{last}");
    assert_same_tree(&src, &out.join("src"));
}

#[test]
fn json_ends_with_failed_or_finished_however_the_run_ends() {
    // A file that cannot be sent (a FIFO put in its place once listed): both sides end
    // with `failed` and exit code 5.
    let (dir, src) = batch();
    let mut sender = spawn_send(&["--json"], &[&src]);
    let (args, mut sender_out) = listening(&mut sender);
    fs::remove_file(src.join("sub/b.bin")).unwrap();
    nix::unistd::mkfifo(
        &src.join("sub/b.bin"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let received = Command::new(FERRY)
        .args(&args)
        .args(["--json", "-o"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(received.status.code(), Some(5), "{}", stderr(&received));
    let last = last_event(&String::from_utf8(received.stdout).unwrap());
    assert_eq!(
        (last["event"].as_str(), last["exit_code"].as_u64()),
        (Some("failed"), Some(5)),
        "{last}"
    );
    assert_eq!(wait(&mut sender, Duration::from_secs(60)), 5);
    let mut rest = String::new();
    sender_out.read_to_string(&mut rest).unwrap();
    assert!(
        events(&rest)
            .iter()
            .any(|e| e["event"] == "file_failed" && e["path"] == "src/sub/b.bin"),
        "the sender gave no file_failed for src/sub/b.bin: {rest}"
    );
    let last = last_event(&rest);
    assert_eq!(
        (last["event"].as_str(), last["exit_code"].as_u64()),
        (Some("failed"), Some(5)),
        "{last}"
    );

    // Two receivers served at once: the sender ends with `finished` for both.
    let (dir, src) = batch();
    let mut sender = spawn_send(&["--json", "--receivers", "2"], &[&src]);
    let (args, mut sender_out) = listening(&mut sender);
    let receivers: Vec<Child> = (0..2)
        .map(|i| {
            Command::new(FERRY)
                .args(&args)
                .arg("-o")
                .arg(dir.path().join(format!("out{i}")))
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut receiver in receivers {
        assert_eq!(wait(&mut receiver, Duration::from_secs(60)), 0);
    }
    assert_eq!(wait(&mut sender, Duration::from_secs(60)), 0);
    let mut rest = String::new();
    sender_out.read_to_string(&mut rest).unwrap();
    let last = last_event(&rest);
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(
        (last["receivers"].as_u64(), last["files"].as_u64()),
        (Some(2), Some(2)),
        "{last}"
    );
    for field in ["folders", "failed", "bytes", "seconds"] {
        assert!(last[field].is_number(), "no {field}: {last}");
    }
    // Each receiver's own events name it: its plan, and its last progress, which says
    // the whole batch moved. (A sender's files are done together, with `finished`.)
    let all = events(&rest);
    let mut named: Vec<&str> = all.iter().filter_map(|e| e["receiver"].as_str()).collect();
    named.sort_unstable();
    named.dedup();
    assert_eq!(named.len(), 2, "{rest}");
    for receiver in named {
        let its: Vec<&Value> = all.iter().filter(|e| e["receiver"] == receiver).collect();
        let plans = its.iter().filter(|e| e["event"] == "plan").count();
        assert_eq!(plans, 1, "{receiver}: {rest}");
        let progress = its
            .iter()
            .rev()
            .find(|e| e["event"] == "progress")
            .unwrap_or_else(|| panic!("no progress for {receiver}: {rest}"));
        assert_eq!(
            (progress["bytes"].as_u64(), progress["bytes_total"].as_u64()),
            (Some(500_000), Some(500_000)),
            "{receiver}: {rest}"
        );
    }

    // Nothing that can be sent: `failed`, a usage error.
    let fifo = dir.path().join("only-a-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let nothing = Command::new(FERRY)
        .args(["send", "--pod", "--port", "0", "--json"])
        .arg(&fifo)
        .output()
        .unwrap();
    assert_eq!(nothing.status.code(), Some(2), "{}", stderr(&nothing));
    let last = last_event(&String::from_utf8(nothing.stdout).unwrap());
    assert_eq!(
        (last["event"].as_str(), last["exit_code"].as_u64()),
        (Some("failed"), Some(2)),
        "{last}"
    );
}

#[test]
fn quiet_prints_nothing_on_success_and_plain_output_has_no_debug_lines() {
    let (dir, src) = batch();
    // --quiet: the sender prints only the command to run; the receiver nothing at all.
    let mut sender = spawn_send(&["--quiet"], &[&src]);
    let (args, mut stdout) = printed_command(&mut sender);
    let received = Command::new(FERRY)
        .args(&args)
        .args(["--quiet", "-o"])
        .arg(dir.path().join("quiet"))
        .output()
        .unwrap();
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    assert!(received.stdout.is_empty() && received.stderr.is_empty());
    assert_eq!(wait(&mut sender, Duration::from_secs(60)), 0);
    let (mut out, mut err) = (String::new(), String::new());
    stdout.read_to_string(&mut out).unwrap();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(out.is_empty() && err.is_empty(), "{out}{err}");

    // Plain: a summary in words, no byte counts for debugging.
    let mut sender = spawn_send(&[], &[&src]);
    let (args, _stdout) = printed_command(&mut sender);
    let received = Command::new(FERRY)
        .args(&args)
        .arg("-o")
        .arg(dir.path().join("plain"))
        .output()
        .unwrap();
    let log = stderr(&received);
    assert!(
        log.contains("Transfer complete: 2 files and 2 folders"),
        "{log}"
    );
    assert_eq!(wait(&mut sender, Duration::from_secs(60)), 0);
    let mut err = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("Sent: 2 files and 2 folders"), "{err}");
    assert!(
        !err.contains("wire bytes") && !log.contains("wire bytes"),
        "{err}"
    );
}

#[test]
fn an_empty_batch_is_refused_at_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for path in [Path::new("/dev/null"), fifo.as_path()] {
        let output = Command::new(FERRY)
            .args(["send", "--pod", "--port", "0"])
            .arg(path)
            .output()
            .unwrap();
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{log}");
        assert!(log.contains("nothing to send"), "{log}");
        assert!(
            output.stdout.is_empty(),
            "no receive command for an empty batch"
        );
    }
}

#[test]
fn progress_never_passes_its_total_when_a_file_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 200 << 20, 7);
    let mut sender = spawn_send(&["--json"], &[&source]);
    let (args, _sender_out) = listening(&mut sender);
    let out = dir.path().join("out");
    let mut receiver = Command::new(FERRY)
        .args(&args)
        .args(["--json", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let part = out.join("big.bin.part");
    let start = Instant::now();
    while part_len(&part) < 32 << 20 {
        assert!(start.elapsed() < Duration::from_secs(60), "never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut file = OpenOptions::new().append(true).open(&source).unwrap();
    file.write_all(b"one more line\n").unwrap();
    drop(file);
    let mut text = String::new();
    receiver
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(wait(&mut receiver, Duration::from_secs(120)), 0);
    let got = events(&text);
    assert!(
        got.iter().any(|e| e["event"] == "file_retry"),
        "the file was not sent again: {text}"
    );
    let mut totals = Vec::new();
    for event in got.iter().filter(|e| e["event"] == "progress") {
        let (bytes, total) = (event["bytes"].as_u64(), event["bytes_total"].as_u64());
        assert!(bytes <= total, "{event}");
        totals.push(total.unwrap());
    }
    assert!(
        totals.last() > totals.first(),
        "the total grew by the file sent again: {totals:?}"
    );
    // At most 5 a second (the receive ran no longer than since `start`, and one more
    // comes at once and one at the end), and the last says all of it arrived.
    let progress: Vec<&Value> = got.iter().filter(|e| e["event"] == "progress").collect();
    let bound = 5.0 * start.elapsed().as_secs_f64() + 2.0;
    assert!(
        progress.len() as f64 <= bound,
        "{} progress events in {:?}",
        progress.len(),
        start.elapsed()
    );
    let last = progress.last().unwrap();
    assert_eq!(last["bytes"], last["bytes_total"], "{last}");
    let _ = wait(&mut sender, Duration::from_secs(60));
}

/// How a Ctrl-C test's stream goes: as fast as it can, or through a relay at a rate in
/// bytes a second (megabytes still on their way in the sockets when the stop comes, or,
/// slower still, less than the sockets hold).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    Fast,
    Slow(u64),
}

/// Ctrl-C (or `kill`, with `signal_name` TERM) on `side` mid-transfer (the sender given
/// `extra`): both sides end as cancelled (exit 8), each naming who cancelled, a receiver
/// stopped ends soon, and the same receive afterwards resumes.
fn ctrl_c_on(side: &str, signal_name: &str, link: Link, extra: &[&str]) {
    let what = format!("{side}, {signal_name}, {extra:?}, {link:?}");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 200 << 20, 9);
    let mut sender = spawn_send(extra, &[&source]);
    let (mut args, _stdout) = printed_command(&mut sender);
    let stop_at = match link {
        Link::Fast => 32 << 20,
        Link::Slow(rate) => {
            at_a_rate(&mut args, rate);
            args.extend(["--connections".to_owned(), "1".to_owned()]);
            4 * rate
        }
    };
    let out = dir.path().join("out");
    let log = dir.path().join("receive.log");
    let mut receiver = spawn_receive(&args, &out, &log);
    wait_until(&mut receiver, &log, || {
        part_len(&out.join("big.bin.part")) >= stop_at
    });
    let asked = Instant::now();
    signal(
        if side == "sender" { &sender } else { &receiver },
        signal_name,
    );
    let receiver_status = wait(&mut receiver, Duration::from_secs(60));
    let receiver_took = asked.elapsed();
    let sender_status = wait(&mut sender, Duration::from_secs(60));
    let receiver_log = fs::read_to_string(&log).unwrap();
    let mut sender_log = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut sender_log)
        .unwrap();
    assert_eq!(receiver_status, 8, "{what}: {receiver_log}");
    assert_eq!(sender_status, 8, "{what}: {sender_log}");
    let (here, there, by) = if side == "sender" {
        (&sender_log, &receiver_log, "by the sender")
    } else {
        (&receiver_log, &sender_log, "by the receiver")
    };
    assert!(here.contains("ferry: cancelled here"), "{what}: {here}");
    assert!(
        there.contains(&format!("ferry: cancelled {by}")),
        "{what}: {there}"
    );
    // Each side says what stopped it: `kill` is no Ctrl-C.
    let why = match signal_name {
        "TERM" => "stopped by SIGTERM; run the same command again to resume",
        _ => "interrupted by the user (Ctrl-C); run the same command again to resume",
    };
    // On the lines that end each side (with --receivers, a lost receiver's line says it
    // too; the last must as well).
    let said = |log: &str, prefix: &str| {
        log.lines()
            .find(|l| l.starts_with(prefix))
            .is_some_and(|l| l.ends_with(why))
    };
    assert!(
        said(here, "ferry: cancelled here: ") && said(there, &format!("ferry: cancelled {by}: ")),
        "{what}: {here}\n{there}"
    );
    // A path this slow is measured in KiB/s, not shown as "0 MiB/s".
    if matches!(link, Link::Slow(rate) if rate < 1 << 20) {
        assert!(
            receiver_log.contains("of 200.0 MiB, 0/1 file, ")
                && receiver_log.contains(" KiB/s, ETA ")
                && !receiver_log.contains(" 0 MiB/s"),
            "{what}: {receiver_log}"
        );
    }
    // Its user pressed Ctrl-C: not held until the megabytes on their way have drained.
    if side == "receiver" {
        assert!(
            receiver_took < Duration::from_secs(5),
            "{what}: the receiver took {receiver_took:?} to end"
        );
    }

    let sending = send(&["--pod"], &[&source], None);
    let again = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{what}: {log}");
    assert!(bytes_already_here(&log) >= stop_at / 2, "{what}: {log}");
    let _ = sending.finish();
}

/// A sender stopped while it still waits for a receiver (by Ctrl-C or by `kill`, blocking
/// or `--receivers`) ends as cancelled and says so, with no word of a resume: nothing was
/// under way.
#[test]
fn a_sender_stopped_while_waiting_says_so_and_promises_no_resume() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("small.bin");
    fs::write(&source, b"waiting").unwrap();
    for (signal_name, says) in [("INT", "(Ctrl-C)"), ("TERM", "by SIGTERM")] {
        for extra in [&[][..], &["--receivers", "2"]] {
            let mut sender = spawn_send(extra, &[&source]);
            let _ = printed_command(&mut sender);
            signal(&sender, signal_name);
            let status = wait(&mut sender, Duration::from_secs(10));
            let mut log = String::new();
            sender
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut log)
                .unwrap();
            assert_eq!(status, 8, "{signal_name} {extra:?}: {log}");
            assert!(
                log.contains(&format!("{says} while waiting for a receiver"))
                    && !log.contains("resume"),
                "{signal_name} {extra:?}: {log}"
            );
        }
    }
}

#[test]
fn ctrl_c_on_the_sender_is_a_cancel_on_both_sides_and_a_rerun_resumes() {
    ctrl_c_on("sender", "INT", Link::Fast, &[]);
}

#[test]
fn sigterm_on_the_sender_is_a_cancel_on_both_sides_as_ctrl_c_is() {
    ctrl_c_on("sender", "TERM", Link::Fast, &[]);
}

/// Ctrl-C on a sender whose path is slow: the cancel goes after what is on its way, and
/// the receiver still hears why.
#[test]
fn ctrl_c_on_a_sender_over_a_slow_path_still_tells_the_receiver() {
    // The blocking sender, and the event loop's (`--receivers`).
    for rate in [1 << 20, 256 << 10] {
        for extra in [&[][..], &["--receivers", "1"]] {
            ctrl_c_on("sender", "INT", Link::Slow(rate), extra);
        }
    }
}

/// Ctrl-C on a receiver over a slow path: the sender hears why, and the receiver ends
/// soon.
#[test]
fn ctrl_c_on_a_receiver_over_a_slow_path_ends_it_soon() {
    ctrl_c_on("receiver", "INT", Link::Slow(1 << 20), &[]);
}

#[test]
fn ctrl_c_on_the_receiver_is_a_cancel_on_both_sides_and_a_rerun_resumes() {
    ctrl_c_on("receiver", "INT", Link::Fast, &[]);
}

#[test]
fn a_sender_whose_receiver_drops_clears_its_bar_and_says_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 300 << 20, 11);
    // The sender on a pseudo-terminal (`script`), as a person would run it.
    let screen = dir.path().join("screen");
    let command = format!("{FERRY} send --pod --port 0 {}", source.display());
    let mut terminal = Command::new("script")
        .args(["-qfec", &command])
        .arg(&screen)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let args = loop {
        let text = fs::read_to_string(&screen).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("ferry receive ")) {
            break line
                .split_whitespace()
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no command: {text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = dir.path().join("out");
    let log = dir.path().join("receive.log");
    let mut receiver = spawn_receive(&args, &out, &log);
    wait_until(&mut receiver, &log, || {
        part_len(&out.join("big.bin.part")) >= 64 << 20
    });
    // The bar is on the sender's screen; the receiver dies.
    let _ = receiver.kill();
    let _ = receiver.wait();
    let start = Instant::now();
    let text = loop {
        let text = fs::read_to_string(&screen).unwrap_or_default();
        if text.contains("waiting for a receiver") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no word of waiting: {text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(300));
    let later = fs::read_to_string(&screen).unwrap_or_default();
    let _ = Command::new("pkill")
        .args(["-INT", "-f", &source.display().to_string()])
        .status();
    let _ = terminal.wait();
    let before = &text[..text.find("waiting for a receiver").unwrap()];
    assert!(before.contains("ETA"), "a bar was drawn before: {text:?}");
    let after = &later[text.find("waiting for a receiver").unwrap()..];
    assert!(
        !after.contains("ETA"),
        "a bar was drawn again after: {after:?}"
    );
    // The bar was cleared: the line that says so starts on a line of its own (the
    // terminal's clear-line sequence precedes it).
    let line_start = before.rfind(['\n', '\r']).map_or(0, |i| i + 1);
    let waiting_line = &text[line_start..];
    assert!(
        !waiting_line.contains("ETA"),
        "the waiting line is drawn over a stale bar: {waiting_line:?}"
    );
}

#[test]
fn messages_name_the_path_and_say_the_system_reason_once() {
    let (dir, src) = batch();
    // -o naming a file.
    let afile = dir.path().join("afile");
    fs::write(&afile, b"x").unwrap();
    let sending = send(&["--pod"], &[&src], None);
    let output = receive(&sending.receive_args(None), &afile, None);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(6), "{log}");
    assert!(log.contains("afile is not a folder"), "{log}");
    sending.abandon();
    // A folder the receiver cannot write into: the path, and the reason once.
    let locked = dir.path().join("locked");
    fs::create_dir_all(locked.join("src")).unwrap();
    let mode = |path: &Path, bits| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(bits)).unwrap();
    };
    mode(&locked.join("src"), 0o555);
    // As an ordinary user (root writes anywhere), whose output folder it is.
    give_to_the_user(dir.path(), &locked);
    give_to_the_user(dir.path(), &locked.join("src"));
    let sending = send(&["--pod"], &[&src], None);
    let mut receiving = as_the_user();
    receiving
        .args(sending.receive_args(None))
        .arg("-v")
        .arg("-o")
        .arg(&locked);
    let output = receiving.output().unwrap();
    mode(&locked.join("src"), 0o755);
    sending.abandon();
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(6), "{log}");
    // The batch's folders come first: the first thing it cannot make is named.
    let named = format!("creating src/sub: {}: ", locked.join("src/sub").display());
    assert!(log.contains(&named), "{log}");
    assert_eq!(log.matches("ermission denied").count(), 1, "{log}");
}

#[test]
fn things_in_the_way_are_reported_before_any_data_moves() {
    type Plant = fn(&Path);
    let cases: [(&str, Plant, &str); 3] = [
        (
            "src/a.bin",
            |at| {
                fs::create_dir_all(at).unwrap();
                fs::write(at.join("keep.txt"), b"the user's").unwrap();
            },
            "src/a.bin cannot be received here: the sender sends a file, and a folder has its name here",
        ),
        (
            "src/sub",
            |at| fs::write(at, b"a file").unwrap(),
            "src/sub cannot be received here: the sender sends a folder, and a file has its name here",
        ),
        (
            "src/a.bin",
            |at| std::os::unix::fs::symlink("/etc/passwd", at).unwrap(),
            "src/a.bin cannot be received here: a symbolic link has its name here (never followed)",
        ),
    ];
    // --overwrite replaces files that differ; it never deletes a folder or a file to make
    // room for the other kind, nor replaces a link.
    for ((path, plant, said), overwrite) in cases
        .into_iter()
        .flat_map(|case| [(case, false), (case, true)])
    {
        let (dir, src) = batch();
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("src")).unwrap();
        plant(&out.join(path));
        let planted = |out: &Path| {
            let at = out.join(path);
            let meta = fs::symlink_metadata(&at).unwrap();
            let content = if meta.is_dir() {
                fs::read(at.join("keep.txt")).unwrap()
            } else if meta.is_symlink() {
                fs::read_link(&at)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                fs::read(&at).unwrap()
            };
            (meta.file_type(), content)
        };
        let before = planted(&out);
        let sending = send(&["--pod"], &[&src], None);
        let mut args = sending.receive_args(None);
        if overwrite {
            args.push("--overwrite".into());
        }
        let output = receive(&args, &out, None);
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(6), "{overwrite}: {log}");
        assert!(log.contains(said), "{said}, {overwrite}: {log}");
        assert!(
            !log.contains("Starting fresh transfer"),
            "checked before the plan: {log}"
        );
        sending.abandon();
        let names: Vec<_> = fs::read_dir(out.join("src"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{said}: something was received: {names:?}");
        assert!(
            planted(&out) == before,
            "{said}, {overwrite}: what was there changed"
        );
    }
}

/// Ctrl-C twice: the first cancels (the sender is told, and ends), the second, while the
/// receiver still waits for the sender's side to close, ends it at once with 130, saying
/// so on stderr.
#[test]
fn a_second_ctrl_c_ends_the_receiver_at_once_with_130() {
    second_ctrl_c_on_the_receiver(false);
}

/// As above with `--json`: even so, the last line on stdout is the `failed` event.
#[test]
fn a_second_ctrl_c_still_ends_json_with_a_failed_event() {
    second_ctrl_c_on_the_receiver(true);
}

fn second_ctrl_c_on_the_receiver(json: bool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    random_file(&source, 200 << 20, 17);
    let mut sending = send(&["--pod"], &[&source], None);
    let mut args = sending.receive_args(None);
    let (at, sender_port) = port_arg(&args);
    // Once held, the sender's bytes (and its close) never reach the receiver.
    let hold = Arc::new(AtomicBool::new(false));
    let relay_hold = Arc::clone(&hold);
    args[at] = relay(sender_port, move |_, _, _| {
        while relay_hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    })
    .to_string();
    let out = dir.path().join("out");
    let log = dir.path().join("receive.log");
    let events = dir.path().join("events.json");
    let mut command = Command::new(FERRY);
    if json {
        command.arg("--json");
    }
    command.stdout(fs::File::create(&events).unwrap());
    let mut receiver = spawn_receive_with(command, &args, &out, &log);
    wait_until(&mut receiver, &log, || {
        part_len(&out.join("big.bin.part")) >= 32 << 20
    });
    hold.store(true, Ordering::SeqCst);
    signal(&receiver, "INT");
    // The cancel reached the sender: the receiver has heard the first Ctrl-C.
    assert_eq!(wait(&mut sending.child, Duration::from_secs(60)), 8);
    // It now waits up to 2 s for the sender's side to close, which the relay holds back.
    assert!(
        receiver.try_wait().unwrap().is_none(),
        "the receiver ended before the second Ctrl-C: {}",
        fs::read_to_string(&log).unwrap()
    );
    let second = Instant::now();
    signal(&receiver, "INT");
    let status = wait(&mut receiver, Duration::from_secs(60));
    let took = second.elapsed();
    hold.store(false, Ordering::SeqCst);
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(status, 130, "{text}");
    assert!(
        took < Duration::from_secs(1),
        "ended {took:?} after the second Ctrl-C"
    );
    let said = "ferry: interrupted twice: ended at once, without a last checkpoint";
    assert_eq!(text.lines().last(), Some(said), "{text}");
    let events = fs::read_to_string(&events).unwrap();
    if json {
        let last: Value = serde_json::from_str(events.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {events}"));
        assert_eq!(last["event"], "failed", "{events}");
        assert_eq!(last["exit_code"], 130, "{events}");
        assert!(said.ends_with(last["error"].as_str().unwrap()), "{events}");
    } else {
        assert_eq!(events, "", "stdout without --json");
    }
}

/// Without `--port` or `-o`, as the README's first example runs it: the sender listens on
/// 15820 and prints a command without a port, and the receiver writes into the folder it
/// runs in.
#[test]
fn the_defaults_port_15820_and_the_current_folder_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    fs::write(&file, b"defaults").unwrap();
    let mut sender = Command::new(FERRY)
        .args(["send", "--pod"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (args, _stdout) = printed_command(&mut sender);
    assert!(!args.contains(&"--port".to_owned()), "{args:?}");
    let here = dir.path().join("here");
    fs::create_dir_all(&here).unwrap();
    let received = Command::new(FERRY)
        .args(&args)
        .current_dir(&here)
        .output()
        .unwrap();
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    assert_eq!(wait(&mut sender, Duration::from_secs(60)), 0);
    assert_eq!(fs::read(here.join("note.txt")).unwrap(), b"defaults");
}

/// `--json` on a sender whose first receiver dies midway: `receiver_lost` with the reason,
/// then the next receiver gets the batch and `finished` comes last; a name the protocol
/// cannot carry is an `info` event, and nothing goes to stderr.
#[test]
fn json_says_a_receiver_was_lost_and_what_was_skipped_and_stays_off_stderr() {
    let (dir, src) = batch();
    fs::write(src.join("back\\slash"), b"x").unwrap();
    random_file(&src.join("big.bin"), 200 << 20, 19);
    let mut sender = spawn_send(&["--json"], &[&src]);
    let (args, mut sender_out, earlier) = listening_after(&mut sender);
    let out = dir.path().join("out");
    let log = dir.path().join("receive.log");
    let mut first = spawn_receive(&args, &out, &log);
    wait_until(&mut first, &log, || {
        part_len(&out.join("src/big.bin.part")) >= 32 << 20
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let again = Command::new(FERRY)
        .args(&args)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(wait(&mut sender, Duration::from_secs(60)), 0);
    let mut text = String::new();
    sender_out.read_to_string(&mut text).unwrap();
    let mut got = earlier;
    got.extend(events(&text));
    let lost = got
        .iter()
        .find(|e| e["event"] == "receiver_lost")
        .unwrap_or_else(|| panic!("no receiver_lost: {text}"));
    assert!(
        lost["reason"]
            .as_str()
            .is_some_and(|r| r.contains("a receiver from 127.0.0.1")),
        "{lost}"
    );
    assert!(
        got.iter().any(|e| e["event"] == "info"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("backslashes are not allowed"))),
        "{text}"
    );
    assert_eq!(got.last().unwrap()["event"], "finished", "{text}");
    let mut errors = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert!(errors.is_empty(), "{errors}");
}
