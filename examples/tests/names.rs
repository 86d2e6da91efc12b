//! Every name the protocol allows (PROTOCOL.md §6.1: a component of up to 255 bytes, a
//! relative path of up to 4,096) arrives, through the real binary, with its modification
//! time to the nanosecond, for files and for directories.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Runs `script` in bash after `cd`-ing into `base`, then down `components` one at a
/// time: the way to reach a path longer than the system takes whole.
fn deep(base: &Path, components: &[String], script: &str) -> String {
    let mut line = format!("set -e; cd '{}'", base.display());
    for name in components {
        line.push_str(&format!("; cd {name}"));
    }
    line.push_str("; ");
    line.push_str(script);
    let output = Command::new("bash").arg("-c").arg(&line).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Directory names of 250 bytes that, under a root called `src` and with a file of
/// `file_len` bytes at the bottom, make a relative path of exactly 4,096 bytes.
fn components_for_4096(file_len: usize) -> Vec<String> {
    // "src" + 16 × ("/" + 250 bytes) + "/" + the file's name
    assert_eq!(3 + 16 * 251 + 1 + file_len, 4096);
    (0..16).map(|i| format!("{:d>248}{i:02}", "")).collect()
}

#[test]
fn a_255_byte_name_and_a_4096_byte_path_arrive_intact() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let long_name = "n".repeat(255);
    random_file(&src.join(&long_name), 300_000, 1);
    // Another 255-byte name that shares its first 233 bytes: the two `.part` files must
    // not be one.
    let twin = format!("{}{}", "n".repeat(233), "t".repeat(22));
    random_file(&src.join(&twin), 200_000, 2);
    let file_name = "f".repeat(76);
    let components = components_for_4096(file_name.len());
    let mkdirs: Vec<String> = components
        .iter()
        .map(|c| format!("mkdir {c} && cd {c}"))
        .collect();
    deep(
        &src,
        &[],
        &format!(
            "{}; head -c 100000 /dev/urandom > {file_name}",
            mkdirs.join(" && ")
        ),
    );
    let sum = format!("sha256sum {file_name}");
    let sent_sum = deep(&src, &components, &sum);

    let sending = send(&["--pod"], &[&src], None);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&received);
    assert_eq!(received.status.code(), Some(0), "{log}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");

    for name in [&long_name, &twin] {
        assert_eq!(
            fs::read(out.join("src").join(name)).unwrap(),
            fs::read(src.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(deep(&out.join("src"), &components, &sum), sent_sum);
    let leftovers = deep(&out, &[], "find . -name '*.part' | wc -l");
    assert_eq!(leftovers.trim(), "0", "no .part file is left");
}

#[test]
fn a_255_byte_name_resumes_from_its_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let long_name = "r".repeat(255);
    random_file(&src.join(&long_name), 64 << 20, 3);
    let out = dir.path().join("out");
    let log_path = dir.path().join("first.log");
    let sending = send(&["--pod"], &[&src], None);
    let mut first = spawn_receive(&sending.receive_args(None), &out, &log_path);
    let part = || {
        fs::read_dir(out.join("src"))
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .map(|e| e.path())
    };
    wait_until(&mut first, &log_path, || {
        part().is_some_and(|p| part_len(&p) >= 8 << 20)
    });
    let part_file = part().unwrap();
    assert!(part_file.file_name().unwrap().len() <= 255);
    signal(&first, "INT");
    let status = wait(&mut first, Duration::from_secs(60));
    assert_eq!(status, 8, "{}", fs::read_to_string(&log_path).unwrap());
    let mut sending = sending;
    signal(&sending.child, "INT");
    wait(&mut sending.child, Duration::from_secs(60));

    let sending = send(&["--pod"], &[&src], None);
    let again = receive(&sending.receive_args(None), &out, None);
    let log = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{log}");
    let _ = sending.finish();
    assert!(bytes_already_here(&log) >= 4 << 20, "{log}");
    assert_eq!(
        fs::read(out.join("src").join(&long_name)).unwrap(),
        fs::read(src.join(&long_name)).unwrap()
    );
}

fn set_mtime(path: &Path, at: SystemTime) {
    File::open(path).unwrap().set_modified(at).unwrap();
}

fn mtime_ns(path: &Path) -> (i64, i64) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.mtime(), meta.mtime_nsec())
}

#[test]
fn files_and_directories_keep_their_modification_times_to_the_nanosecond() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("inner/deeper")).unwrap();
    fs::write(src.join("inner/file.txt"), b"contents").unwrap();
    fs::write(src.join("inner/deeper/other.txt"), b"more").unwrap();
    let base = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let times = [
        ("inner/file.txt", base + Duration::from_nanos(123_456_789)),
        ("inner/deeper/other.txt", base + Duration::from_nanos(1)),
        ("inner/deeper", base + Duration::from_nanos(987_654_321)),
        ("inner", base + Duration::from_nanos(555_000_001)),
        ("", base + Duration::from_nanos(42)),
    ];
    for (path, at) in times {
        set_mtime(&src.join(path), at);
    }
    let sending = send(&["--pod"], &[&src], None);
    let out = dir.path().join("out");
    let received = receive(&sending.receive_args(None), &out, None);
    assert_eq!(received.status.code(), Some(0), "{}", stderr(&received));
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    for (path, _) in times {
        assert_eq!(
            mtime_ns(&out.join("src").join(path)),
            mtime_ns(&src.join(path)),
            "mtime of src/{path}"
        );
    }
}

/// A file whose partial file takes another name (`log~2.part`: the batch holds `log.part`
/// and `log~1.part` too) resumes from it like any other: a receive stopped midway, then
/// run again, finds what it verified there and sends only the rest.
#[test]
fn a_partial_file_under_another_name_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("downloads");
    fs::create_dir_all(&tree).unwrap();
    random_file(&tree.join("log"), 128 << 20, 7);
    random_file(&tree.join("log.part"), 3 << 20, 8);
    random_file(&tree.join("log~1.part"), 1000, 9);
    let out = dir.path().join("out");
    let partial = out.join("downloads/log~2.part");
    stopped_midway(&tree, &out, &partial, 32 << 20, 48 << 20);
    let sending = send(&["--pod"], &[&tree], None);
    let again = receive(&sending.receive_args(None), &out, None);
    let text = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{text}");
    let (status, sender_log) = sending.finish();
    assert_eq!(status, 0, "{sender_log}");
    assert!(
        bytes_already_here(&text) >= 16 << 20,
        "log~2.part was not resumed: {text}"
    );
    assert!(
        wire_bytes(&sender_log) < (128 << 20) - (16 << 20),
        "sent it all again: {sender_log}"
    );
    assert_same_tree(&tree, &out.join("downloads"));
}

/// A batch may hold both `x` and `x.part` (a browser's download folder does, mid-download):
/// each arrives as itself, nothing of one is taken for the other's partial file, and a
/// second receive into the same folder finds them all already here.
#[test]
fn a_file_and_one_named_like_its_part_file_both_arrive_and_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("downloads");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("v.mkv"), b"").unwrap();
    random_file(&tree.join("v.mkv.part"), 1 << 20, 3);
    random_file(&tree.join("log"), 8 << 20, 4);
    random_file(&tree.join("log.part"), 3 << 20, 5);
    // The first other name for log's partial file is taken as well.
    random_file(&tree.join("log~1.part"), 1000, 6);
    let out = dir.path().join("out");
    for run in ["first", "second"] {
        let sending = send(&["--pod"], &[&tree], None);
        let received = receive(&sending.receive_args(None), &out, None);
        let log = stderr(&received);
        assert_eq!(received.status.code(), Some(0), "{run} receive: {log}");
        let (status, sender_log) = sending.finish();
        assert_eq!(status, 0, "{run} send: {sender_log}");
        assert_same_tree(&tree, &out.join("downloads"));
        if run == "second" {
            assert!(log.contains("Already here: "), "{log}");
        }
    }
}
