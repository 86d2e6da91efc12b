//! The lock file: the seed's schema on disk, resume state per file (path, size, mtime),
//! and checkpoints that publish it only through an atomic rename.

use std::collections::HashMap;

use ferry_core::transfer::{
    EntryKind, FileProgress, FileStatus, Manifest, ManifestEntry, ManifestLimits,
};
use ferry_std::checkpoint::Checkpointer;
use ferry_std::lock::{LOCK_NAME, LockHeader, Previous, Replaces, write_lock};
use ferry_std::os::dir::Dir;

fn manifest_with(files: usize, mtime: i64) -> Manifest {
    let entries: Vec<ManifestEntry> = (0..files)
        .map(|i| ManifestEntry {
            path: format!("f{i:05}"),
            kind: EntryKind::File,
            size: 4096,
            mode: 0o644,
            mtime_ns: mtime,
            sha256: None,
        })
        .collect();
    Manifest::from_entries(&entries, &ManifestLimits::default()).unwrap()
}

fn open(path: &std::path::Path) -> Dir {
    Dir::open_path(path).unwrap()
}

fn read_json(root: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.join(LOCK_NAME)).unwrap()).unwrap()
}

fn header() -> LockHeader {
    LockHeader {
        session_id: "abc".into(),
        sender_ip: "127.0.0.1".into(),
    }
}

/// Saves a lock for `manifest` in which the given entries have the given progress.
fn save(dir: &std::path::Path, manifest: &Manifest, progress: &HashMap<usize, FileProgress>) {
    let mut checkpoints = Checkpointer::new(&open(dir)).unwrap();
    checkpoints.finish().unwrap();
    checkpoints
        .save_now(Default::default(), &mut |out| {
            write_lock(
                out,
                &header(),
                manifest,
                |i| progress.get(&i).copied(),
                |_| None,
            )
        })
        .unwrap();
}

fn progress() -> HashMap<usize, FileProgress> {
    HashMap::from([
        (
            0,
            FileProgress {
                status: FileStatus::Completed,
                verified_bytes: 4096,
                sha256: Some([0xab; 32]),
            },
        ),
        (
            1,
            FileProgress {
                status: FileStatus::InProgress,
                verified_bytes: 1000,
                sha256: Some([0x01; 32]),
            },
        ),
        (
            2,
            FileProgress {
                status: FileStatus::InProgress,
                verified_bytes: 0,
                sha256: None,
            },
        ),
    ])
}

#[test]
fn the_lock_is_written_in_the_seed_schema_and_read_back_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with(3, 1_700_000_000);
    save(dir.path(), &manifest, &progress());
    let json = read_json(dir.path());
    for field in [
        "version",
        "session_id",
        "timestamp",
        "sender_ip",
        "total_files",
        "total_size",
    ] {
        assert!(json.get(field).is_some(), "{field} missing: {json}");
    }
    assert_eq!(json["total_files"], 3);
    let done = &json["files"]["f00000"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["original_hash"], "ab".repeat(32));
    assert_eq!(done["mtime_ns"], 1_700_000_000);
    let partial = &json["files"]["f00001"];
    assert_eq!(partial["status"], "in_progress");
    assert_eq!(partial["transferred_bytes"], 1000);
    assert_eq!(partial["partial_hash"], "01".repeat(32));
    assert!(partial.get("original_hash").is_none());
    assert!(
        json["files"].get("f00002").is_none(),
        "a file with nothing verified has nothing to resume"
    );

    let previous = Previous::load(&open(dir.path()), &manifest)
        .unwrap()
        .unwrap();
    assert_eq!((previous.described, previous.matching), (2, 2));
    // The completed file is ours while it is as the receive left it; the final name of a
    // file still in progress never is.
    let (size, mtime) = (4096, 1_700_000_000);
    assert!(previous.put_here(0, size, mtime, size, mtime));
    assert!(
        previous.put_here(0, size, mtime, size, mtime + 1_000_000_000),
        "FAT's 2 s"
    );
    assert!(
        !previous.put_here(0, size, mtime, size, mtime + 60_000_000_000),
        "touched since"
    );
    assert!(
        !previous.put_here(0, size, mtime, size + 1, mtime),
        "written since"
    );
    assert!(
        !previous.put_here(1, size, mtime, size, mtime),
        "in progress"
    );
    assert!(
        !previous.put_here(2, size, mtime, size, mtime),
        "not in the lock"
    );
    assert_eq!(previous.verified(1), 1000);
    assert_eq!(
        previous.verified(0),
        0,
        "a completed file resumes from its final file"
    );
}

#[test]
fn resume_state_applies_only_to_files_whose_path_size_and_mtime_still_match() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &manifest_with(3, 1_700_000_000), &progress());
    // The sender's batch now has another file in front and one file touched since.
    let entries: Vec<ManifestEntry> = [
        ("a-new-file", 4096, 5),
        ("f00000", 4096, 1_700_000_000),
        ("f00001", 4096, 1_700_000_001),
    ]
    .iter()
    .map(|&(path, size, mtime)| ManifestEntry {
        path: path.into(),
        kind: EntryKind::File,
        size,
        mode: 0o644,
        mtime_ns: mtime,
        sha256: None,
    })
    .collect();
    let manifest = Manifest::from_entries(&entries, &ManifestLimits::default()).unwrap();
    let previous = Previous::load(&open(dir.path()), &manifest)
        .unwrap()
        .unwrap();
    assert_eq!((previous.described, previous.matching), (2, 1));
    let mtime = 1_700_000_000;
    assert!(!previous.put_here(0, 4096, 5, 4096, 5), "not in the lock");
    assert!(
        previous.put_here(1, 4096, mtime, 4096, mtime),
        "completed, as it was left"
    );
    assert!(
        !previous.put_here(2, 4096, mtime + 1, 4096, mtime + 1),
        "in progress: its final name was never ours"
    );
    assert_eq!(previous.verified(2), 0, "f00001 changed since: not resumed");
}

#[test]
fn a_lock_with_a_malformed_hash_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with(3, 0);
    save(dir.path(), &manifest, &progress());
    let text = std::fs::read_to_string(dir.path().join(LOCK_NAME)).unwrap();
    let broken = text.replace(&"01".repeat(32), "not-hex");
    assert_ne!(broken, text);
    std::fs::write(dir.path().join(LOCK_NAME), broken).unwrap();
    let error = Previous::load(&open(dir.path()), &manifest).unwrap_err();
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[test]
fn checkpoints_publish_the_latest_state_and_leave_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with(2, 0);
    let mut checkpoints = Checkpointer::new(&open(dir.path())).unwrap();
    let mut last = 0;
    for verified_bytes in [1024, 2048, 4096] {
        last = verified_bytes;
        let state = FileProgress {
            status: FileStatus::InProgress,
            verified_bytes,
            sha256: Some([7; 32]),
        };
        // Back to back: some of these find the worker busy and are skipped.
        checkpoints
            .checkpoint(Default::default(), &mut |out| {
                write_lock(
                    out,
                    &header(),
                    &manifest,
                    |i| (i == 0).then_some(state),
                    |_| None,
                )
            })
            .unwrap();
    }
    checkpoints.finish().unwrap();
    if checkpoints.is_behind() {
        let state = FileProgress {
            status: FileStatus::InProgress,
            verified_bytes: last,
            sha256: Some([7; 32]),
        };
        checkpoints
            .save_now(Default::default(), &mut |out| {
                write_lock(
                    out,
                    &header(),
                    &manifest,
                    |i| (i == 0).then_some(state),
                    |_| None,
                )
            })
            .unwrap();
    }
    assert_eq!(
        read_json(dir.path())["files"]["f00000"]["transferred_bytes"],
        4096
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != LOCK_NAME)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The lock reader's fuzz body on a real-looking lock and thousands of mutations of it:
/// never a panic, and the unmutated lock reads as written.
#[test]
fn the_lock_reader_takes_any_bytes_and_reads_a_sound_lock_right() {
    let lock = br#"{"version":"1.0","session_id":"ab","files":{"src/a.bin":{"status":"in_progress","size":100,"mtime_ns":1700000000000000000,"transferred_bytes":50},"src/b.bin":{"status":"completed","size":4096,"transferred_bytes":4096},"elsewhere":{"status":"in_progress","size":7,"transferred_bytes":3}}}"#;
    let manifest = ferry_std::fuzz::lock_manifest();
    let previous = ferry_std::lock::Previous::read(&lock[..], &manifest).unwrap();
    assert_eq!((previous.described, previous.matching), (3, 2));
    assert_eq!(previous.verified(2), 50, "src/a.bin");
    ferry_std::fuzz::lock_file(lock);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let mut input = lock.to_vec();
        for _ in 0..(next() % 4) + 1 {
            let at = (next() as usize) % input.len();
            input[at] = next() as u8;
        }
        input.truncate(1 + (next() as usize) % input.len());
        ferry_std::fuzz::lock_file(&input);
    }
}

#[test]
fn a_completed_file_changed_at_the_sender_is_ours_to_replace_only_as_it_was_left() {
    let dir = tempfile::tempdir().unwrap();
    let (then, now) = (1_700_000_000, 1_800_000_000);
    save(dir.path(), &manifest_with(3, then), &progress());
    // The sender's f00000 changed since the receive that completed it.
    let entries: Vec<ManifestEntry> = [("f00000", 5000, now), ("f00001", 4096, then)]
        .iter()
        .map(|&(path, size, mtime)| ManifestEntry {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mode: 0o644,
            mtime_ns: mtime,
            sha256: None,
        })
        .collect();
    let manifest = Manifest::from_entries(&entries, &ManifestLimits::default()).unwrap();
    let previous = Previous::load(&open(dir.path()), &manifest)
        .unwrap()
        .unwrap();
    assert!(
        previous.put_here(0, 5000, now, 4096, then),
        "the old copy, as that receive left it"
    );
    assert!(
        !previous.put_here(0, 5000, now, 4096, then + 50_000_000_000),
        "edited since"
    );
    assert!(
        !previous.put_here(0, 5000, now, 5000, now),
        "a file put there since by someone else"
    );
}

#[test]
fn a_file_whose_newer_version_was_on_its_way_is_still_ours_to_replace() {
    // A receive put f00000..f00002 in place; the sender changed them; the next receive
    // was stopped while their newer versions were on their way (f00001 with 1000 bytes
    // verified, f00002 with none yet). The files it would replace are in its lock.
    let dir = tempfile::tempdir().unwrap();
    let (then, now) = (1_700_000_000, 1_800_000_000);
    let manifest = manifest_with(3, now);
    let old = Replaces {
        size: 4096,
        mtime_ns: then,
    };
    let mut checkpoints = Checkpointer::new(&open(dir.path())).unwrap();
    checkpoints.finish().unwrap();
    checkpoints
        .save_now(Default::default(), &mut |out| {
            write_lock(
                out,
                &header(),
                &manifest,
                |i| progress().get(&i).copied(),
                |i| (i > 0).then_some(old),
            )
        })
        .unwrap();
    let json = read_json(dir.path());
    assert_eq!(
        json["files"]["f00002"]["replaces"]["mtime_ns"], then,
        "{json}"
    );
    assert!(
        json["files"]["f00000"].get("replaces").is_none(),
        "a completed file replaced nothing more: {json}"
    );
    let previous = Previous::load(&open(dir.path()), &manifest)
        .unwrap()
        .unwrap();
    for entry in [1, 2] {
        assert!(
            previous.put_here(entry, 4096, now, 4096, then),
            "f0000{entry}"
        );
        assert!(
            !previous.put_here(entry, 4096, now, 4096, then + 60_000_000_000),
            "f0000{entry} touched since"
        );
    }
    assert_eq!(previous.verified(2), 0, "f00002 has nothing to resume");
}
