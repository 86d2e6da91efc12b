//! Segments in stream order: checked against their hash, written, and the files that end
//! in them committed, retried or failed.

use crate::resource::wire::Proof;
use crate::time::Timestamp;
use crate::transfer::manifest::Manifest;
use crate::transfer::outputs::{Outputs, slot_io, split_io};
use crate::transfer::violation::{file_rule, misuse};
use crate::transfer::work::HashWork;
use crate::transfer::{DiskCommand, DiskError, IoId, TransferConfig, TransferError, TransferEvent};

use super::ledger::{Ledger, Verdict};
use super::slot::{RecvSlot, SlotState};
use super::stream::{Answer, Stream};

/// What checking and writing a segment needs besides the stream.
pub(super) struct Books<'a> {
    pub(super) manifest: &'a Manifest,
    pub(super) ledger: &'a mut Ledger,
    pub(super) out: &'a mut Outputs,
    pub(super) config: &'a TransferConfig,
    pub(super) now: Timestamp,
    /// See `ReceiverSession::skip_verification_for_testing`.
    pub(super) skip_verification: bool,
}

impl Stream {
    /// Moves segments on in stream order: the oldest complete ones are hashed (a few
    /// passes at a time, here or by the driver), and the oldest hashed one checked and
    /// written once the one before it is written. File hashes advance with the data,
    /// the segment hash is checked over them before anything of the segment is written,
    /// and each file's verdict is known when its last extent is written.
    pub(super) fn process(&mut self, books: &mut Books<'_>) -> Result<(), TransferError> {
        loop {
            self.start_hashing(books)?;
            if !self.take_hashed(books)? {
                break;
            }
        }
        self.start_writing(books)
    }

    /// True while the driver holds the stream up: a pass waits for it to take it, or
    /// every pass is out and the next segment is complete. The receiver then takes no
    /// more input, so that opening records stays a few segments ahead of hashing them
    /// and no further (its buffers are not all taken by segments waiting for a pass).
    pub(super) fn hashing_behind(&self) -> bool {
        self.hashing.waiting()
            || (!self.hashing.has_free()
                && self
                    .slots
                    .iter()
                    .any(|s| s.state == SlotState::Complete && s.seq == self.next_hash))
    }

    /// Lends the oldest complete segments' bytes to their SHA-256 passes, while passes
    /// are free.
    fn start_hashing(&mut self, books: &mut Books<'_>) -> Result<(), TransferError> {
        while self.hashing.has_free() {
            let Some(index) = self
                .slots
                .iter()
                .position(|s| s.state == SlotState::Complete && s.seq == self.next_hash)
            else {
                return Ok(());
            };
            let slot = &mut self.slots[index];
            let manifest = books.manifest;
            self.hashing
                .load(index, slot.seq, &mut slot.buf, &slot.extents, manifest)?;
            slot.state = SlotState::Hashing;
            self.next_hash += 1;
        }
        Ok(())
    }

    /// A pass is back from the driver.
    pub(super) fn hashed(
        &mut self,
        work: HashWork,
        books: &mut Books<'_>,
    ) -> Result<(), TransferError> {
        self.hashing.back(work)?;
        self.process(books)
    }

    /// Takes the results of the passes that are done, in order: each segment's bytes are
    /// back, its file prefixes and proof kept, and whether it matches its hash known.
    /// True if it took any (their passes are free again).
    fn take_hashed(&mut self, books: &mut Books<'_>) -> Result<bool, TransferError> {
        let mut took = false;
        while let Some(mut work) = self.hashing.take() {
            took = true;
            let outcome = work.outcome.take().unwrap_or(Ok(()));
            let slot = work.slot_in(&mut self.slots, |s, seq| {
                s.state == SlotState::Hashing && s.seq == seq
            })?;
            core::mem::swap(&mut slot.buf, &mut work.data);
            slot.prefixes.clear();
            slot.prefixes
                .extend(work.digests.iter().map(|digest| digest.prefix));
            let (hash, proof) = core::mem::take(&mut work.segment).finish(&slot.random);
            slot.corrupt = hash != slot.hash && !books.skip_verification;
            slot.proof = proof;
            slot.state = SlotState::Hashed;
            self.hashing.recycle(work);
            outcome?;
        }
        Ok(took)
    }

    /// Checks and writes the oldest hashed segment, once the one before it is written.
    fn start_writing(&mut self, books: &mut Books<'_>) -> Result<(), TransferError> {
        if self.slots.iter().any(|s| s.state == SlotState::Writing) {
            return Ok(());
        }
        let Some(index) = self
            .slots
            .iter()
            .position(|s| s.state == SlotState::Hashed && s.seq == self.next_process)
        else {
            return Ok(());
        };
        let extents = self.slots[index].extents.len();
        // Room for its writes, the events they may bring, and the verdicts and progress
        // the last one brings.
        if !books.out.has_room(2 * extents + 2, 2 * extents + 2) {
            return Ok(());
        }
        let slot = &mut self.slots[index];
        judge(slot, books)?;
        if slot.corrupt {
            books.out.event(TransferEvent::SegmentRejected {
                segment: slot.segment_index,
            });
        }
        let mut writes = 0;
        for (k, (extent, _)) in slot.extents.iter().enumerate() {
            // The pieces of an attempt the sender abandoned since (or of a file that
            // failed) are checked with the segment but never written.
            if !books.ledger.is_current(extent) {
                continue;
            }
            books.out.disk(DiskCommand::Write {
                id: slot_io(index, k),
                entry: extent.entry as usize,
                offset: extent.offset,
                len: extent.len as usize,
            });
            writes += 1;
        }
        slot.writes_outstanding = writes;
        slot.state = SlotState::Writing;
        self.next_process += 1;
        if writes == 0 {
            self.finish(index, books);
        }
        Ok(())
    }

    /// The bytes of write `id`: a piece of a segment's buffer.
    pub(super) fn write_data(&self, id: IoId) -> &[u8] {
        split_io(id)
            .and_then(|(slot, extent)| {
                let slot = self.slots.get(slot)?;
                let (ext, at) = slot.extents.get(extent)?;
                slot.buf.get(*at..*at + ext.len as usize)
            })
            .unwrap_or(&[])
    }

    /// Write `id` is done (or failed, which ends the session).
    pub(super) fn write_done(
        &mut self,
        id: IoId,
        result: Result<(), DiskError>,
        books: &mut Books<'_>,
    ) -> Result<(), TransferError> {
        let (index, extent) = split_io(id).ok_or(misuse("driver reported an unknown write"))?;
        let slot = self
            .slots
            .get_mut(index)
            .filter(|s| s.state == SlotState::Writing)
            .ok_or(misuse("driver reported an unknown write"))?;
        let (ext, _) = *slot
            .extents
            .get(extent)
            .ok_or(misuse("driver reported an unknown write"))?;
        if let Err(error) = result {
            return Err(TransferError::Disk {
                op: "writing",
                path: books
                    .manifest
                    .get(ext.entry as usize)
                    .map_or_else(String::new, |e| e.path.to_owned()),
                error,
            });
        }
        slot.writes_outstanding = slot.writes_outstanding.saturating_sub(1);
        books
            .ledger
            .written(&ext, slot.prefixes.get(extent).copied());
        if slot.writes_outstanding == 0 {
            self.finish(index, books);
        }
        Ok(())
    }

    /// A segment is on disk: commit, retry or fail the files that ended in it, prove it,
    /// and checkpoint when enough has been written.
    fn finish(&mut self, index: usize, books: &mut Books<'_>) {
        let slot = &mut self.slots[index];
        for (entry, verdict) in slot.verdicts.drain(..) {
            books.ledger.resolve(entry as usize, verdict, books.out);
        }
        for &(extent, _) in &slot.extents {
            books.ledger.mark_changed(extent.entry as usize);
        }
        self.answers_due.push_back(if slot.corrupt {
            Answer::Reject(slot.hash)
        } else {
            self.bytes_done += slot.len as u64;
            Answer::Proof(Proof {
                resource_hash: slot.hash,
                proof: slot.proof,
            })
        });
        books.out.event(TransferEvent::Progress {
            bytes: self.bytes_done,
        });
        slot.state = SlotState::Free;
        let len = slot.len as u64;
        self.release(index);
        if books.ledger.wrote(len, books.now, books.config) {
            books.ledger.checkpoint(books.out);
        }
    }
}

/// Decides each file that ends in a hashed segment, by its hash against the sender's
/// digest (and the manifest's), and taints every file of a segment that did not match.
fn judge(slot: &mut RecvSlot, books: &mut Books<'_>) -> Result<(), TransferError> {
    slot.verdicts.clear();
    for (k, (extent, _)) in slot.extents.iter().enumerate() {
        let entry = extent.entry;
        let size = books.manifest.get(entry as usize).map_or(0, |e| e.size);
        let ends_file = extent.offset + u64::from(extent.len) == size;
        if ends_file && books.ledger.is_tainted(extent) {
            let verdict = Ledger::not_as_sent(extent.attempt, books.config);
            slot.verdicts.push((entry, verdict));
            continue;
        }
        if !ends_file || !books.ledger.is_current(extent) {
            continue;
        }
        let Some(&ours) = slot.prefixes.get(k) else {
            return Err(misuse("a segment judged before its hashes"));
        };
        // A hash the manifest promised binds every attempt until the sender announces
        // the file with another size or mtime (UPDATE): the batch the user accepted is
        // the batch that arrives, whatever digest a sender claims for other bytes.
        let as_promised = books
            .manifest
            .get(entry as usize)
            .and_then(|e| e.sha256)
            .is_none_or(|promised| promised == ours);
        let digest = slot
            .digests
            .iter()
            .find(|d| d.entry == entry && d.attempt == extent.attempt)
            .copied();
        let max_attempts = books.config.max_attempts;
        let verdict = match digest {
            _ if books.skip_verification => Verdict::Commit,
            Some(d) if !d.changed && d.sha256 == ours && as_promised => Verdict::Commit,
            Some(_) if extent.attempt < max_attempts => Verdict::Retry,
            Some(_) => Verdict::Fail(crate::transfer::FileFailure::HashMismatch {
                attempts: extent.attempt,
            }),
            None => return Err(file_rule("a file ended without the sender's digest")),
        };
        slot.verdicts.push((entry, verdict));
    }
    if slot.corrupt {
        // Its data is not what the sender hashed: nothing of it is written, and every
        // file with a piece in it is sent again (the verdicts of those that end here
        // were reached on that data, so they are replaced).
        for (extent, _) in &slot.extents {
            books.ledger.taint(extent);
        }
        for (entry, verdict) in &mut slot.verdicts {
            let attempt = slot
                .extents
                .iter()
                .rev()
                .find(|(e, _)| e.entry == *entry)
                .map_or(1, |(e, _)| e.attempt);
            *verdict = Ledger::not_as_sent(attempt, books.config);
        }
    }
    Ok(())
}
