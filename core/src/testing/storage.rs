//! In-memory storage for both roles.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use sha2::{Digest, Sha256};

use super::Rng;
use crate::transfer::{
    DiskError, DiskErrorKind, FileMeta, FileStatus, ReceiverSession, Storage, Target,
};

/// Called with (entry, offset, len, reads of the entry so far, the file) before each read:
/// may change the file, as a file that changes while it is sent.
pub type SourceHook = Box<dyn FnMut(usize, u64, usize, usize, &mut Vec<u8>)>;

/// A sender's files in memory, by manifest index (`None` for directories).
///
/// A change the driver can see (size or mtime) is counted: a read of a file that changed
/// since its attempt began comes back short, as the std driver's size-and-mtime check
/// makes it, and a reopen reports the count as the file's mtime. A quiet change (content
/// only, as `touch -r` leaves it) is not counted; only the manifest hash catches it.
pub struct MemorySource {
    /// The files as they are now.
    pub files: Vec<Option<Vec<u8>>>,
    /// Reads carried out, per entry.
    pub reads: Vec<usize>,
    /// Runs before each read.
    pub on_read: Option<SourceHook>,
    visible_changes: Vec<u64>,
    attempt_began: Vec<u64>,
}

impl MemorySource {
    /// A source holding `files`.
    pub fn new(files: Vec<Option<Vec<u8>>>) -> Self {
        let n = files.len();
        MemorySource {
            files,
            reads: vec![0; n],
            on_read: None,
            visible_changes: vec![0; n],
            attempt_began: vec![0; n],
        }
    }

    /// Changes file `entry` with `change`; `visible` if its size or mtime moves with it.
    pub fn change(&mut self, entry: usize, visible: bool, change: impl FnOnce(&mut Vec<u8>)) {
        if let Some(Some(data)) = self.files.get_mut(entry) {
            change(data);
            if visible {
                self.visible_changes[entry] += 1;
            }
        }
    }

    /// A new sender lists the batch as it was first listed: each file's first attempt
    /// is judged against the file as it was then.
    pub fn relisted(&mut self) {
        self.attempt_began.fill(0);
    }

    /// Reads carried out in all.
    pub fn total_reads(&self) -> usize {
        self.reads.iter().sum()
    }
}

impl Storage for MemorySource {
    fn read(
        &mut self,
        target: Target<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, DiskError> {
        let entry = target.index;
        let Some(Some(data)) = self.files.get_mut(entry) else {
            return Err(not_found());
        };
        self.reads[entry] += 1;
        if let Some(hook) = self.on_read.as_mut() {
            let before = data.clone();
            hook(entry, offset, buf.len(), self.reads[entry], data);
            if *data != before {
                self.visible_changes[entry] += 1;
            }
        }
        if self.visible_changes[entry] != self.attempt_began[entry] {
            return Ok(0);
        }
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn reopen(&mut self, target: Target<'_>) -> Result<FileMeta, DiskError> {
        let entry = target.index;
        let Some(Some(data)) = self.files.get(entry) else {
            return Err(not_found());
        };
        self.attempt_began[entry] = self.visible_changes[entry];
        Ok(FileMeta {
            size: data.len() as u64,
            mtime_ns: self.visible_changes[entry] as i64,
        })
    }
}

fn not_found() -> DiskError {
    DiskError {
        kind: DiskErrorKind::NotFound,
        detail: "no such file in memory".into(),
    }
}

/// A receiver's disk in memory: partial files, committed files and folders by manifest
/// index, what of them is durable, and the resume state the checkpoints recorded.
///
/// Durability is kept as lengths, so that a sync costs nothing per byte: the first
/// `durable_len` bytes of a partial file are on disk. A file rewritten below that length
/// or removed before the next sync keeps its durable content aside, as that is what a
/// crash brings back.
#[derive(Default, Debug)]
pub struct MemoryDisk {
    /// Partial files as written.
    pub partial: BTreeMap<usize, Vec<u8>>,
    /// Committed files.
    pub committed: BTreeMap<usize, Vec<u8>>,
    /// Created folders.
    pub dirs: BTreeSet<usize>,
    /// The resume state: verified bytes per file in progress, as of the last checkpoint.
    pub lock: BTreeMap<usize, u64>,
    /// Checkpoints made.
    pub checkpoints: usize,
    /// Writes fail with this (a full disk, a lost permission) while it is set.
    pub failing: Option<DiskErrorKind>,
    /// The entry whose commit fails (something appeared at its final name).
    pub refuse_commit: Option<usize>,
    /// Finishing the batch fails (a folder's time cannot be set, the sync fails).
    pub refuse_finish: bool,
    /// The most bytes the partial files may hold together (a small disk): a write that
    /// would grow them past it fails as a full disk.
    pub capacity: Option<usize>,
    /// Checkpoints that claimed a hash that is not the SHA-256 of the bytes they claim.
    pub violations: Vec<String>,
    durable_len: BTreeMap<usize, usize>,
    before_sync: BTreeMap<usize, Vec<u8>>,
    committed_durable: BTreeSet<usize>,
}

impl MemoryDisk {
    /// What a new session finds here to resume from: partial files as far as the last
    /// checkpoint recorded them, and complete files.
    pub fn local(&self) -> Vec<(usize, u64)> {
        let partial = self.lock.iter().map(|(e, n)| (*e, *n));
        let complete = self.committed.iter().map(|(e, d)| (*e, d.len() as u64));
        partial.chain(complete).filter(|(_, n)| *n > 0).collect()
    }

    /// A crash: what was not synced is lost or torn. A torn file keeps a random part of
    /// its unsynced tail, sometimes with a hole where a block never reached the disk; the
    /// lock never claims those bytes, so a resume must not trust them.
    pub fn crash(&mut self, rng: &mut Rng) {
        let mut after = core::mem::take(&mut self.before_sync);
        for (entry, written) in &self.partial {
            if after.contains_key(entry) {
                continue;
            }
            let durable = self.durable_len.get(entry).copied().unwrap_or(0);
            let mut kept = durable;
            if written.len() > durable && !rng.chance(30) {
                kept = rng.range(durable as u64, written.len() as u64 + 1) as usize;
            }
            if kept == 0 && durable == 0 && !self.durable_len.contains_key(entry) {
                continue;
            }
            let mut torn = written[..kept].to_vec();
            if kept > durable && rng.chance(50) {
                let hole = rng.range(durable as u64, kept as u64) as usize;
                let end = (hole + rng.range(1, 8192) as usize).min(kept);
                torn[hole..end].fill(0);
            }
            after.insert(*entry, torn);
        }
        self.partial = after;
        // Everything left on disk after a crash is durable.
        self.durable_len = self.partial.iter().map(|(e, d)| (*e, d.len())).collect();
        let durable = &self.committed_durable;
        self.committed.retain(|e, _| durable.contains(e));
    }

    fn sync(&mut self) {
        self.durable_len = self.partial.iter().map(|(e, d)| (*e, d.len())).collect();
        self.before_sync.clear();
        self.committed_durable = self.committed.keys().copied().collect();
    }

    /// About to change `entry` below `from` (or remove it): keep its durable content.
    fn preserve(&mut self, entry: usize, from: usize) {
        let durable = self.durable_len.get(&entry).copied().unwrap_or(0);
        if from < durable && !self.before_sync.contains_key(&entry) {
            let file = self
                .partial
                .get(&entry)
                .map_or(&[][..], |d| &d[..durable.min(d.len())]);
            self.before_sync.insert(entry, file.to_vec());
            self.durable_len.insert(entry, 0);
        }
    }

    fn remove(&mut self, entry: usize) -> Option<Vec<u8>> {
        self.preserve(entry, 0);
        self.durable_len.remove(&entry);
        self.partial.remove(&entry)
    }
}

impl Storage for MemoryDisk {
    fn read(
        &mut self,
        target: Target<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, DiskError> {
        let data = self
            .partial
            .get(&target.index)
            .or(self.committed.get(&target.index))
            .map_or(&[][..], Vec::as_slice);
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write(&mut self, target: Target<'_>, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        if let Some(kind) = self.failing {
            return Err(DiskError {
                kind,
                detail: "simulated".into(),
            });
        }
        let (entry, offset) = (target.index, offset as usize);
        if let Some(capacity) = self.capacity {
            let held: usize = self.partial.values().map(Vec::len).sum();
            let len = self.partial.get(&entry).map_or(0, Vec::len);
            let growth = (offset.saturating_add(data.len())).saturating_sub(len);
            if held.saturating_add(growth) > capacity {
                return Err(DiskError {
                    kind: DiskErrorKind::NoSpace,
                    detail: "the disk is full".into(),
                });
            }
        }
        self.preserve(entry, offset);
        let file = self.partial.entry(entry).or_default();
        let end = offset + data.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[offset..end].copy_from_slice(data);
        Ok(())
    }

    fn commit(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        let entry = target.index;
        if self.refuse_commit == Some(entry) {
            return Err(DiskError {
                kind: DiskErrorKind::Other,
                detail: "something appeared at its name".into(),
            });
        }
        let mut data = self
            .remove(entry)
            .or_else(|| self.committed.get(&entry).cloned())
            .unwrap_or_default();
        data.truncate(target.entry.size as usize);
        self.committed.insert(entry, data);
        self.lock.remove(&entry);
        Ok(())
    }

    fn finish(&mut self, _session: &crate::transfer::ReceiverSession) -> Result<(), DiskError> {
        if self.refuse_finish {
            return Err(DiskError {
                kind: DiskErrorKind::Other,
                detail: "the sync failed".into(),
            });
        }
        Ok(())
    }

    fn discard(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        self.remove(target.index);
        self.lock.remove(&target.index);
        Ok(())
    }

    fn create_dir(&mut self, target: Target<'_>) -> Result<(), DiskError> {
        self.dirs.insert(target.index);
        Ok(())
    }

    /// Durable first, then claimed; a claimed hash must be the SHA-256 of the bytes
    /// claimed, or the checkpoint is recorded as a violation.
    fn checkpoint(
        &mut self,
        changed: Range<usize>,
        session: &ReceiverSession,
    ) -> Result<(), DiskError> {
        self.sync();
        self.checkpoints += 1;
        for entry in changed {
            let Some(progress) = session.progress(entry) else {
                continue;
            };
            if progress.status != FileStatus::InProgress {
                self.lock.remove(&entry);
                continue;
            }
            let verified = progress.verified_bytes as usize;
            let data = self.partial.get(&entry).map_or(&[][..], Vec::as_slice);
            let claimed = data
                .get(..verified)
                .map(|d| <[u8; 32]>::from(Sha256::digest(d)));
            if verified > 0 && progress.sha256 != claimed {
                self.violations.push(format!(
                    "the checkpoint of entry {entry} reports a hash that is not the SHA-256 \
                     of its {verified} verified bytes"
                ));
            }
            self.lock.insert(entry, progress.verified_bytes);
        }
        Ok(())
    }
}
