//! Where each entry of the batch stands on the receiver, and the verdicts on files.

use std::collections::{HashMap, VecDeque};

use crate::time::Timestamp;
use crate::transfer::manifest::Manifest;
use crate::transfer::outputs::Outputs;
use crate::transfer::violation::{file_rule, segment_rule};
use crate::transfer::wire::{Extent, Update};
use crate::transfer::{DiskCommand, FileFailure, TransferConfig, TransferError, TransferEvent};

/// Where an entry stands on the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// Not yet complete.
    InProgress,
    /// Verified and committed (or already present and verified).
    Completed,
    /// Given up after the attempt limit.
    Failed,
}

/// What the driver records in its resume state for one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileProgress {
    /// Where the entry stands.
    pub status: FileStatus,
    /// Bytes at the start of the partial file that are written, verified and (after the
    /// checkpoint that reports them) durable.
    pub verified_bytes: u64,
    /// SHA-256 of those bytes, for a file in progress (a complete file is hashed again
    /// when a later run finds it).
    pub sha256: Option<[u8; 32]>,
}

/// Where one entry stands, in 16 bytes: a batch may hold a million.
///
/// The offset a file's next piece must start at is `verified` until its first piece is
/// laid out (the start the plan settled, or 0 for a new attempt); from then on the
/// ledger's layout cursor holds it, as a file's pieces come one after another.
#[derive(Clone, Copy, Debug)]
struct EntryState {
    /// Bytes at the start of the partial file that are written and verified.
    verified: u64,
    attempt: u8,
    status: FileStatus,
    /// The attempt's last piece has been laid out: its verdict is on its way.
    ended: bool,
    /// The sender announced this attempt with UPDATE (every attempt after the first).
    updated: bool,
    /// A segment with a piece of this attempt did not match its hash: the attempt's
    /// pieces are checked but never written, and its end brings a retry.
    tainted: bool,
}

impl EntryState {
    const NEW: EntryState = EntryState {
        verified: 0,
        attempt: 1,
        status: FileStatus::InProgress,
        ended: false,
        updated: false,
        tainted: false,
    };
}

/// What becomes of a file whose attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Commit,
    Retry,
    Fail(FileFailure),
}

/// Every entry's state, the verdicts carried out so far, and what the next checkpoint
/// must record.
#[derive(Default)]
pub(super) struct Ledger {
    entries: Vec<EntryState>,
    /// The file whose pieces the layouts are in the middle of: entry, attempt, and the
    /// offset its next piece must start at.
    cursor: Option<(u32, u8, u64)>,
    /// The SHA-256 of the verified bytes of each file in progress that has some.
    partial_hashes: HashMap<u32, [u8; 32]>,
    /// Files neither committed nor failed yet.
    pub(super) unresolved: usize,
    pub(super) committed: u64,
    pub(super) failed: u64,
    /// Retries to ask the sender for.
    pub(super) retries_due: VecDeque<(u32, u8)>,
    /// Entries whose progress changed since the last checkpoint.
    changed: Option<core::ops::Range<usize>>,
    since_checkpoint: u64,
    /// When the bytes written since the last checkpoint must be checkpointed.
    checkpoint_due: Option<Timestamp>,
}

impl Ledger {
    /// Every entry of a batch of `len` new.
    pub(super) fn new(len: usize) -> Self {
        Ledger {
            entries: vec![EntryState::NEW; len],
            ..Ledger::default()
        }
    }

    pub(super) fn progress(&self, entry: usize) -> Option<FileProgress> {
        let state = self.entries.get(entry)?;
        Some(FileProgress {
            status: state.status,
            verified_bytes: state.verified,
            sha256: if state.status == FileStatus::InProgress {
                self.partial_hashes.get(&(entry as u32)).copied()
            } else {
                None
            },
        })
    }

    /// Where each file's data starts in the stream (its verified resume offset).
    pub(super) fn verified(&self, entry: usize) -> u64 {
        self.entries.get(entry).map_or(0, |s| s.verified)
    }

    /// The plan settled that the first `bytes` of `entry` (hashing to `prefix`) are here.
    pub(super) fn settle_claim(&mut self, entry: u32, bytes: u64, size: u64, prefix: [u8; 32]) {
        if let Some(state) = self.entries.get_mut(entry as usize) {
            state.verified = bytes;
            if bytes < size {
                self.partial_hashes.insert(entry, prefix);
            }
        }
    }

    /// The plan is settled: counts the files that still need data.
    pub(super) fn count_unresolved(&mut self, manifest: &Manifest) {
        self.unresolved = manifest
            .iter()
            .zip(&self.entries)
            .filter(|(entry, state)| {
                entry.kind == crate::transfer::EntryKind::File && state.verified < entry.size
            })
            .count();
    }

    /// An entry found complete, or a directory created, before any data flows.
    pub(super) fn complete_at_once(&mut self, index: usize) {
        self.entries[index].status = FileStatus::Completed;
        self.committed += 1;
    }

    /// The driver could not put a verified file in place (something appeared at its name,
    /// say): it stays in progress with all of it verified, so that the resume state keeps
    /// its partial file for a rerun to put in place instead of fetching it again.
    pub(super) fn commit_failed(&mut self, index: usize) {
        if let Some(state) = self.entries.get_mut(index)
            && state.status == FileStatus::Completed
        {
            state.status = FileStatus::InProgress;
            self.committed -= 1;
            self.mark_changed(index);
        }
    }

    /// An empty file whose manifest hash is not that of no bytes.
    pub(super) fn fail_at_once(&mut self, index: usize) {
        self.entries[index].status = FileStatus::Failed;
        self.failed += 1;
    }

    /// True if `extent` belongs to the attempt its file is on now (not one abandoned
    /// since, nor a file that failed, nor an attempt a corrupt segment tainted).
    pub(super) fn is_current(&self, extent: &Extent) -> bool {
        self.entries.get(extent.entry as usize).is_some_and(|s| {
            s.status == FileStatus::InProgress && s.attempt == extent.attempt && !s.tainted
        })
    }

    /// True if `extent` belongs to its file's current attempt and that attempt was
    /// tainted by a corrupt segment.
    pub(super) fn is_tainted(&self, extent: &Extent) -> bool {
        self.entries.get(extent.entry as usize).is_some_and(|s| {
            s.status == FileStatus::InProgress && s.attempt == extent.attempt && s.tainted
        })
    }

    /// A segment holding a piece of `extent`'s attempt did not match its hash: nothing
    /// more of the attempt is written, and the file is asked for again once the attempt
    /// ends (PROTOCOL.md §6.3).
    pub(super) fn taint(&mut self, extent: &Extent) {
        if self.is_current(extent) {
            self.entries[extent.entry as usize].tainted = true;
        }
    }

    /// The verdict on a file whose attempt `attempt` did not arrive as sent: another
    /// attempt while any remain, else failure.
    pub(super) fn not_as_sent(attempt: u8, config: &TransferConfig) -> Verdict {
        if attempt < config.max_attempts {
            Verdict::Retry
        } else {
            Verdict::Fail(FileFailure::HashMismatch { attempts: attempt })
        }
    }

    /// Checks that `extent` continues its file where the last piece left off, in the
    /// attempt under way, within the file; advances the layout cursor past it.
    pub(super) fn lay_out(
        &mut self,
        manifest: &Manifest,
        extent: &Extent,
    ) -> Result<(), TransferError> {
        let entry = manifest
            .get(extent.entry as usize)
            .ok_or(segment_rule("a layout names an unknown entry"))?;
        let state = &mut self.entries[extent.entry as usize];
        let end = extent
            .offset
            .checked_add(u64::from(extent.len))
            .ok_or(segment_rule("a layout extent overflows"))?;
        let expected = match self.cursor {
            Some((e, a, next)) if e == extent.entry && a == extent.attempt => next,
            _ => state.verified,
        };
        if entry.kind != crate::transfer::EntryKind::File
            || state.status != FileStatus::InProgress
            || state.ended
            || extent.attempt != state.attempt
            || extent.offset != expected
            || extent.len == 0
            || end > entry.size
        {
            return Err(segment_rule(
                "a layout extent out of order, out of range, or for a finished file",
            ));
        }
        if extent.attempt > 1 && !state.updated {
            return Err(file_rule("an attempt sent again without its update"));
        }
        self.cursor = Some((extent.entry, extent.attempt, end));
        state.ended = end == entry.size;
        Ok(())
    }

    /// A write of `extent` is done: if its attempt is still the current one, its bytes
    /// are verified, with `prefix` the hash of the file up to its end.
    pub(super) fn written(&mut self, extent: &Extent, prefix: Option<[u8; 32]>) {
        let state = &mut self.entries[extent.entry as usize];
        let end = extent.offset + u64::from(extent.len);
        // A write of an attempt abandoned while it was under way counts for nothing.
        let current = state.status == FileStatus::InProgress && state.attempt == extent.attempt;
        if current && end > state.verified {
            state.verified = end;
            if let Some(prefix) = prefix {
                self.partial_hashes.insert(extent.entry, prefix);
            }
        }
    }

    /// Carries out the verdict on a file whose attempt ended: commit it, ask for it again,
    /// or give it up.
    pub(super) fn resolve(&mut self, index: usize, verdict: Verdict, out: &mut Outputs) {
        self.mark_changed(index);
        self.partial_hashes.remove(&(index as u32));
        if self.cursor.is_some_and(|(e, _, _)| e as usize == index) {
            self.cursor = None;
        }
        let state = &mut self.entries[index];
        match verdict {
            Verdict::Commit => {
                state.status = FileStatus::Completed;
                self.committed += 1;
                self.unresolved -= 1;
                // FileDone once the driver has put it in place.
                out.disk(DiskCommand::Commit { entry: index });
            }
            Verdict::Retry => {
                state.attempt += 1;
                state.verified = 0;
                state.ended = false;
                state.updated = false;
                state.tainted = false;
                self.retries_due.push_back((index as u32, state.attempt));
                out.disk(DiskCommand::Discard { entry: index });
                out.event(TransferEvent::FileRetry {
                    entry: index,
                    attempt: state.attempt,
                });
            }
            Verdict::Fail(reason) => {
                state.status = FileStatus::Failed;
                state.verified = 0;
                self.failed += 1;
                self.unresolved -= 1;
                out.disk(DiskCommand::Discard { entry: index });
                out.event(TransferEvent::FileFailed {
                    entry: index,
                    reason,
                });
            }
        }
    }

    /// UPDATE: a file the sender is about to send again, as it finds it now. The new size
    /// and mtime replace the manifest's; if either differs, the manifest's hash no longer
    /// binds.
    pub(super) fn on_update(
        &mut self,
        manifest: &mut Manifest,
        update: Update,
        out: &mut Outputs,
    ) -> Result<(), TransferError> {
        let index = update.entry as usize;
        let state = self
            .entries
            .get_mut(index)
            .ok_or(file_rule("an update for an unknown entry"))?;
        let started = self
            .cursor
            .is_some_and(|(e, a, _)| e == update.entry && a == update.attempt);
        if state.status != FileStatus::InProgress
            || update.attempt < 2
            || update.attempt != state.attempt
            || state.updated
            || state.verified != 0
            || started
        {
            return Err(file_rule(
                "an update that does not answer the retry of a file in progress",
            ));
        }
        state.updated = true;
        manifest.set_file_meta(index, update.size, update.mtime_ns)?;
        if update.size == 0 {
            // Nothing of it will be sent: it is complete as it is.
            self.resolve(index, Verdict::Commit, out);
        }
        Ok(())
    }

    /// ABANDON: the sender ends an attempt early, because the file changed while it was
    /// read (ask again, while attempts remain) or because it cannot read it (the file
    /// fails now, with the sender's reason).
    pub(super) fn on_abandon(
        &mut self,
        abandon: crate::transfer::wire::Abandon,
        config: &TransferConfig,
        out: &mut Outputs,
    ) -> Result<(), TransferError> {
        use crate::transfer::wire::Trouble;
        let index = abandon.entry as usize;
        let state = self
            .entries
            .get(index)
            .ok_or(file_rule("an abandon for an unknown entry"))?;
        // An attempt whose last piece was laid out is over: there is nothing to abandon.
        if state.status != FileStatus::InProgress || abandon.attempt != state.attempt || state.ended
        {
            return Err(file_rule("an abandon for an attempt that is not under way"));
        }
        let attempts = state.attempt;
        let verdict = match abandon.trouble {
            Trouble::Changed if attempts < config.max_attempts => Verdict::Retry,
            Trouble::Changed => Verdict::Fail(FileFailure::KeptChanging { attempts }),
            Trouble::Unreadable(cause) => Verdict::Fail(FileFailure::Unreadable { cause }),
        };
        self.resolve(index, verdict, out);
        Ok(())
    }

    pub(super) fn mark_changed(&mut self, entry: usize) {
        self.changed = Some(match self.changed.take() {
            Some(range) => range.start.min(entry)..range.end.max(entry + 1),
            None => entry..entry + 1,
        });
    }

    /// `bytes` more are written and verified at `now`: a checkpoint is due after
    /// `checkpoint_bytes` of them, or `checkpoint_interval` after the first.
    pub(super) fn wrote(&mut self, bytes: u64, now: Timestamp, config: &TransferConfig) -> bool {
        self.since_checkpoint += bytes;
        self.checkpoint_due
            .get_or_insert(now.saturating_add(config.checkpoint_interval));
        self.since_checkpoint >= config.checkpoint_bytes
    }

    /// When a checkpoint is due by time, if one is.
    pub(super) fn checkpoint_due(&self) -> Option<Timestamp> {
        self.checkpoint_due
    }

    /// Asks the driver to record the entries whose progress changed.
    pub(super) fn checkpoint(&mut self, out: &mut Outputs) {
        if let Some(changed) = self.changed.take() {
            out.disk(DiskCommand::Checkpoint { changed });
        }
        self.since_checkpoint = 0;
        self.checkpoint_due = None;
    }
}
