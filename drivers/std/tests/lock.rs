//! The lock file: the seed's schema on disk, and checkpoints that publish it only through
//! an atomic rename.

use ferry_core::transfer::{
    EntryKind, FileProgress, FileStatus, Manifest, ManifestEntry, ManifestLimits,
};
use ferry_std::checkpoint::Checkpointer;
use ferry_std::lock::{HexHash, LOCK_NAME, LockFile, LockStatus};
use ferry_std::os::dir::Dir;

fn manifest(files: usize) -> Manifest {
    let entries: Vec<ManifestEntry> = (0..files)
        .map(|i| ManifestEntry {
            path: format!("f{i:05}"),
            kind: EntryKind::File,
            size: 4096,
            mode: 0o644,
            mtime: 0,
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

#[test]
fn the_lock_is_written_in_the_seed_schema_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut lock = LockFile::new(&manifest(3), "abc".into(), "127.0.0.1".into());
    lock.update(
        "f00000",
        &FileProgress {
            status: FileStatus::Completed,
            verified_bytes: 4096,
            sha256: Some([0xab; 32]),
        },
    );
    lock.update(
        "f00001",
        &FileProgress {
            status: FileStatus::InProgress,
            verified_bytes: 1000,
            sha256: Some([0x01; 32]),
        },
    );
    lock.save(&open(dir.path())).unwrap();
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
    let done = &json["files"]["f00000"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["original_hash"], "ab".repeat(32));
    assert_eq!(done["partial_hash"], "ab".repeat(32));
    let partial = &json["files"]["f00001"];
    assert_eq!(partial["status"], "in_progress");
    assert_eq!(partial["transferred_bytes"], 1000);
    assert!(partial.get("original_hash").is_none());
    assert_eq!(json["files"]["f00002"]["transferred_bytes"], 0);

    let loaded = LockFile::load(&open(dir.path())).unwrap().unwrap();
    assert_eq!(loaded, lock);
    let entry = loaded.files["f00001"];
    assert_eq!(entry.status, LockStatus::InProgress);
    assert_eq!(entry.partial_hash, Some(HexHash([0x01; 32])));
}

#[test]
fn a_lock_with_a_malformed_hash_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut lock = LockFile::new(&manifest(1), "abc".into(), "127.0.0.1".into());
    lock.save(&open(dir.path())).unwrap();
    let text = std::fs::read_to_string(dir.path().join(LOCK_NAME)).unwrap();
    let broken = text.replace(
        "\"transferred_bytes\":0",
        "\"transferred_bytes\":0,\"partial_hash\":\"not-hex\"",
    );
    assert_ne!(broken, text);
    std::fs::write(dir.path().join(LOCK_NAME), broken).unwrap();
    let error = LockFile::load(&open(dir.path())).unwrap_err();
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[test]
fn checkpoints_publish_the_latest_state_and_leave_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut lock = LockFile::new(&manifest(2), "abc".into(), "127.0.0.1".into());
    let mut checkpoints = Checkpointer::new(&open(dir.path())).unwrap();
    for verified_bytes in [1024, 2048, 4096] {
        lock.update(
            "f00000",
            &FileProgress {
                status: FileStatus::InProgress,
                verified_bytes,
                sha256: Some([7; 32]),
            },
        );
        // Back to back: some of these find the worker busy and are folded into the next.
        checkpoints.checkpoint(&mut lock).unwrap();
    }
    checkpoints.finish(Some(&mut lock)).unwrap();
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
