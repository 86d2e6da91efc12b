//! Bodies of the driver's fuzz targets in `fuzz/` (the lock file reader), compiled with
//! the crate so they cannot rot; `drivers/std/tests/lock.rs` runs them on mutated locks.

use ferry_core::transfer::{EntryKind, Manifest, ManifestEntry};

use crate::lock::Previous;

/// The batch the lock inputs are read against: a few files and a folder, paths that sort
/// in an order other than the manifest's.
pub fn lock_manifest() -> Manifest {
    let entry = |path: &str, kind, size| ManifestEntry {
        path: path.into(),
        kind,
        size,
        mode: 0o644,
        mtime_ns: 1_700_000_000_000_000_000,
        sha256: None,
    };
    let entries = [
        entry("src", EntryKind::Directory, 0),
        entry("src/b.bin", EntryKind::File, 4096),
        entry("src/a.bin", EntryKind::File, 100),
        entry("src/empty", EntryKind::File, 0),
    ];
    Manifest::from_entries(&entries, &Default::default()).unwrap_or_default()
}

/// Any bytes as a lock file: read or refused as corrupt, never a panic; what is read
/// names only this batch's files and never more bytes than a file has.
pub fn lock_file(data: &[u8]) {
    let manifest = lock_manifest();
    let Ok(previous) = Previous::read(data, &manifest) else {
        return;
    };
    assert!(previous.matching <= previous.described);
    for index in 0..manifest.len() + 2 {
        let held = previous.verified(index);
        match manifest.get(index) {
            Some(entry) => assert!(held <= entry.size, "more held than the file has"),
            None => assert_eq!(held, 0, "progress for an entry the batch lacks"),
        }
    }
}
