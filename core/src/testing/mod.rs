//! What tests, the simulator and the fuzz bodies drive transfers with (feature `testing`):
//! an in-memory [`MemorySource`] for a sender, an in-memory [`MemoryDisk`] for a receiver
//! that loses unsynced writes when it crashes, [`drain`] to carry out a session's outputs
//! against them, and [`Pair`], two sessions joined in memory.
//!
//! ```
//! use ferry_core::testing::{Pair, bytes, dir, file};
//! use ferry_core::transfer::TransferConfig;
//!
//! let batch = [dir("photos"), file("photos/a.jpg", bytes(1, 300_000)), file("notes.txt", bytes(2, 10))];
//! let mut pair = Pair::with(&batch, TransferConfig::default(), 7);
//! pair.run();
//! pair.assert_delivered(&batch);
//! ```

mod pair;
mod storage;

pub use pair::{Pair, SourceHook, StepHook};
pub use storage::{MemoryDisk, MemorySource};

use sha2::{Digest, Sha256};

use crate::entropy::{Entropy, SeededEntropy};
use crate::time::Timestamp;
use crate::transfer::{
    EntryKind, Manifest, ManifestEntry, Output, Session, Storage, TransferError, TransferEvent,
};

/// A file or directory of a test batch.
#[derive(Clone, Debug)]
pub struct Item {
    /// Its path in the batch.
    pub path: String,
    /// Its bytes; `None` for a directory.
    pub data: Option<Vec<u8>>,
}

/// A file of a test batch.
pub fn file(path: &str, data: Vec<u8>) -> Item {
    Item {
        path: path.to_owned(),
        data: Some(data),
    }
}

/// A directory of a test batch.
pub fn dir(path: &str) -> Item {
    Item {
        path: path.to_owned(),
        data: None,
    }
}

/// `len` deterministic bytes from `seed`, so that sizes and contents vary per test.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    SeededEntropy::new(seed).fill(&mut out);
    out
}

/// The bytes proven by the last progress event among `events` (what a pair's side
/// reported last).
pub fn bytes_proven(events: &[TransferEvent]) -> Option<u64> {
    events.iter().rev().find_map(|e| match e {
        TransferEvent::Progress { bytes } => Some(*bytes),
        _ => None,
    })
}

/// The manifest of `items` (files 0644, directories 0755, all with one mtime), with each
/// file's SHA-256 if `with_hashes`.
pub fn manifest_of(items: &[Item], with_hashes: bool) -> Manifest {
    let entries: Vec<ManifestEntry> = items
        .iter()
        .map(|item| ManifestEntry {
            path: item.path.clone(),
            kind: if item.data.is_some() {
                EntryKind::File
            } else {
                EntryKind::Directory
            },
            size: item.data.as_ref().map_or(0, |d| d.len() as u64),
            mode: if item.data.is_some() { 0o644 } else { 0o755 },
            mtime_ns: 1_700_000_000_000_000_000,
            sha256: item
                .data
                .as_ref()
                .filter(|_| with_hashes)
                .map(|d| Sha256::digest(d).into()),
        })
        .collect();
    Manifest::from_entries(&entries, &Default::default()).unwrap_or_default()
}

/// Seeded random choices for simulations: everything follows from the seed.
pub struct Rng(SeededEntropy);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(SeededEntropy::new(seed))
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    /// A value in `low..high` (`low` if empty).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            low + self.next_u64() % (high - low)
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill(out);
    }
}

/// Takes `session`'s outputs until it says to wait, carrying out each disk command
/// against `storage` and handing each event to `on_event` (which may answer it, accepting
/// a batch, say). Returns whether there was any output; the first error ends it.
pub fn drain<S: Session>(
    session: &mut S,
    now: Timestamp,
    storage: &mut dyn Storage,
    mut on_event: impl FnMut(&mut S, TransferEvent) -> Result<(), TransferError>,
) -> Result<bool, TransferError> {
    let mut worked = false;
    loop {
        match session.poll_output() {
            Output::Disk(command) => session.carry_out(now, command, storage)?,
            Output::Event(event) => on_event(session, event)?,
            Output::Timeout(_) => return Ok(worked),
        }
        worked = true;
    }
}
