//! The streaming phase: the bytes still needed cut into segments, each read, sealed,
//! advertised with its layout and served part by part until the receiver proves it.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::channel::Channel;
use crate::entropy::SeededEntropy;
use crate::record::sealed_len;
use crate::resource::wire::{MAP_HASH_LEN, Proof, Request};
use crate::transfer::lanes::SenderLanes;
use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::outputs::{Outputs, slot_io, split_io};
use crate::transfer::violation::{misuse, out_of_order};
use crate::transfer::wire::bodies::REJECTION_MAX_LEN;
use crate::transfer::wire::{self, Abandon, Extent, Message, PlanResult, Trouble};
use crate::transfer::work::{HashWork, Hashing};
use crate::transfer::{DiskCommand, DiskError, IoId, TransferConfig, TransferError, TransferEvent};

use super::ledger::EntryState;
use super::plan::{Agreed, Settled};
use super::retry::Notice;
use super::slot::{SendSlot, SlotState};

/// What the stream works on besides its own data.
pub(super) struct Books<'a> {
    /// Shared until a retried file is found changed.
    pub(super) manifest: &'a mut Arc<Manifest>,
    pub(super) entries: &'a mut [EntryState],
    pub(super) out: &'a mut Outputs,
    pub(super) config: &'a TransferConfig,
}

/// The streaming phase's data.
pub(super) struct Stream {
    agreed: Agreed,
    pub(super) slots: Vec<SendSlot>,
    /// The next entry to start sending, in manifest order.
    next_entry: usize,
    /// Where the next piece starts: entry, attempt and offset.
    pub(super) current: Option<(u32, u8, u64)>,
    /// Files to send again, once reopened.
    pub(super) retry_queue: VecDeque<u32>,
    /// Retried files whose reopen is still to be asked of the driver.
    pub(super) reopens: VecDeque<u32>,
    /// Notices to send, each once every segment numbered below its tag has been
    /// advertised (an ABANDON follows the last layout that carried its attempt; an
    /// UPDATE, tagged 0, goes before any layout that follows it).
    pub(super) notices: VecDeque<(u64, Notice)>,
    next_seq: u64,
    /// The next segment to seal, in stream order.
    next_seal: u64,
    /// Segments advertised so far: an ADV's `i` is its place among them (a segment
    /// whose every piece was dropped before it was sealed is never advertised).
    advertised_count: u64,
    first_hash: Option<[u8; 32]>,
    /// Segment buffers not in use, and how many there are in all (at most
    /// `TransferConfig::segment_buffers`).
    spare: Vec<Vec<u8>>,
    buffers: usize,
    /// Compression space, one segment (none when not compressing).
    scratch: Vec<u8>,
    /// The map hashes sorted, for the collision guard, sized for a full segment.
    guard: Vec<[u8; MAP_HASH_LEN]>,
    /// Bytes the stream carries in all (grows as retried files are sent again).
    pub(super) stream_total: u64,
    pub(super) bytes_proven: u64,
    /// Draws each segment's random hash.
    rng: SeededEntropy,
    /// The plan result still to send: the rejected claims.
    rejected: Vec<u32>,
    rejected_sent: usize,
    pub(super) result_sent: bool,
    /// The one SHA-256 pass over each segment, in stream order, carrying the per-file
    /// hashes (and resumed prefixes waiting); run here or by the driver.
    pub(super) hashing: Box<Hashing>,
}

impl Stream {
    pub(super) fn new(
        config: &TransferConfig,
        settled: Settled,
        stream_total: u64,
        seed: u64,
    ) -> Self {
        Stream {
            agreed: settled.agreed,
            slots: Vec::new(),
            spare: Vec::new(),
            buffers: 0,
            next_entry: 0,
            current: None,
            retry_queue: VecDeque::new(),
            reopens: VecDeque::new(),
            notices: VecDeque::new(),
            next_seq: 1,
            next_seal: 1,
            first_hash: None,
            advertised_count: 0,
            scratch: if config.compress {
                vec![0; config.segment_size]
            } else {
                Vec::new()
            },
            guard: Vec::with_capacity(config.parts_per_segment()),
            stream_total,
            bytes_proven: 0,
            rng: SeededEntropy::new(seed),
            rejected: settled.rejected,
            rejected_sent: 0,
            result_sent: false,
            hashing: Box::new(Hashing::new(settled.hashes, config.max_extents_per_segment)),
        }
    }

    /// Sends the plan result (the rejected claims) as the channel has room.
    pub(super) fn send_plan_result(&mut self, channel: &mut Channel) {
        while !self.result_sent {
            let room = channel.send_capacity().min(channel.max_message_len());
            let fits = room.saturating_sub(16) / REJECTION_MAX_LEN;
            if fits == 0 {
                return;
            }
            let rest = &self.rejected[self.rejected_sent..];
            let count = rest.len().min(fits);
            let last = count == rest.len();
            let result = Message::PlanResult(PlanResult::Rejected {
                last,
                rejected: &rest[..count],
            });
            if wire::send(channel, &result).is_err() {
                return;
            }
            self.rejected_sent += count;
            self.result_sent = last;
        }
    }

    /// The next piece of file data for a segment: `(entry, attempt, offset, len_available)`.
    fn next_piece(
        &mut self,
        manifest: &Manifest,
        entries: &[EntryState],
    ) -> Option<(u32, u8, u64, u64)> {
        loop {
            if let Some((entry, attempt, offset)) = self.current {
                let size = manifest.get(entry as usize).map_or(0, |e| e.size);
                let state = &entries[entry as usize];
                // An attempt in trouble, or abandoned and retried since, sends nothing
                // more.
                if offset < size && state.trouble.is_none() && state.attempt == attempt {
                    return Some((entry, attempt, offset, size - offset));
                }
                self.current = None;
            }
            if let Some(entry) = self.retry_queue.pop_front() {
                self.current = Some((entry, entries[entry as usize].attempt, 0));
                continue;
            }
            while self.next_entry < manifest.len() {
                let index = self.next_entry;
                self.next_entry += 1;
                let entry = manifest.get(index)?;
                let start = entries[index].start;
                if entry.kind == EntryKind::File && start < entry.size {
                    self.current = Some((index as u32, entries[index].attempt, start));
                    break;
                }
            }
            self.current?;
        }
    }

    /// Reads the next segments, as many as the receiver's grant allows in flight and
    /// the segment buffers and disk queue have room for.
    /// `buffers`: segment buffers it may have in all.
    pub(super) fn prepare(&mut self, books: &mut Books<'_>, grant: usize, buffers: usize) {
        let Agreed {
            in_flight,
            max_extents,
            segment_size,
        } = self.agreed;
        let allowed = grant.min(in_flight);
        loop {
            let active = self
                .slots
                .iter()
                .filter(|s| s.state != SlotState::Free)
                .count();
            if active >= allowed || !books.out.has_room(max_extents, max_extents) {
                return;
            }
            let index = match self.slots.iter().position(|s| s.state == SlotState::Free) {
                Some(index) => index,
                None if self.slots.len() < in_flight => {
                    self.slots.push(SendSlot::new(books.config));
                    self.slots.len() - 1
                }
                None => return,
            };
            if self.slots[index].buf.is_empty() {
                self.slots[index].buf = match self.spare.pop() {
                    Some(buf) => buf,
                    None if self.buffers < buffers => {
                        self.buffers += 1;
                        vec![0; books.config.segment_size]
                    }
                    // Every buffer holds a segment not yet sent: the next waits for one.
                    None => return,
                };
            }
            let mut fill = 0usize;
            let mut extents = core::mem::take(&mut self.slots[index].extents);
            extents.clear();
            while fill < segment_size && extents.len() < max_extents {
                let Some((entry, attempt, offset, available)) =
                    self.next_piece(books.manifest, books.entries)
                else {
                    break;
                };
                let len = available.min((segment_size - fill) as u64) as u32;
                books.out.disk(DiskCommand::Read {
                    id: slot_io(index, extents.len()),
                    entry: entry as usize,
                    offset,
                    len: len as usize,
                });
                extents.push((
                    Extent {
                        entry,
                        attempt,
                        offset,
                        len,
                    },
                    fill,
                ));
                fill += len as usize;
                self.current = Some((entry, attempt, offset + u64::from(len)));
            }
            let slot = &mut self.slots[index];
            let empty = extents.is_empty();
            slot.reads_outstanding = extents.len();
            slot.extents = extents;
            if empty {
                return;
            }
            slot.len = fill;
            slot.seq = self.next_seq;
            self.next_seq += 1;
            slot.state = SlotState::Reading;
        }
    }

    /// Reads again the segments that have parts lost with a lane and no data left, one
    /// buffer each from the pool (or, when every buffer is taken, up to
    /// [`TransferConfig::REFILL_BUFFERS`] more: a refill must not wait for segments the
    /// receiver will only ask for once the lost parts are in); a segment whose reads are
    /// in gets its bytes back as they were sealed, and its parts go out again.
    /// `buffers`: segment buffers it may have in all, refills aside.
    pub(super) fn refill(&mut self, books: &mut Books<'_>, buffers: usize) {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if slot.state != SlotState::Advertised || !slot.refill || slot.reads_outstanding > 0 {
                continue;
            }
            if !slot.buf.is_empty() {
                slot.refilled(&mut self.scratch);
                continue;
            }
            let reads = slot.extents.len();
            if !books.out.has_room(reads, reads) {
                return;
            }
            slot.buf = match self.spare.pop() {
                Some(buf) => buf,
                None if self.buffers < buffers + TransferConfig::REFILL_BUFFERS => {
                    self.buffers += 1;
                    vec![0; books.config.segment_size]
                }
                None => return,
            };
            for (i, (extent, _)) in slot.extents.iter().enumerate() {
                books.out.disk(DiskCommand::Read {
                    id: slot_io(index, i),
                    entry: extent.entry as usize,
                    offset: extent.offset,
                    len: extent.len as usize,
                });
            }
            slot.reads_outstanding = reads;
        }
    }

    /// Where the bytes of read `id` go: a piece of a segment's buffer.
    pub(super) fn read_buffer(&mut self, id: IoId) -> &mut [u8] {
        match split_io(id).and_then(|(slot, extent)| {
            let (ext, at) = self.slots.get(slot)?.extents.get(extent)?;
            Some((slot, *at, ext.len as usize))
        }) {
            Some((slot, at, len)) => &mut self.slots[slot].buf[at..at + len],
            None => &mut [],
        }
    }

    /// Read `id` finished. A short read (the file changed) or a failed one ends its
    /// attempt there: its pieces from this segment on are dropped before they are
    /// hashed, and ABANDON tells the receiver why.
    pub(super) fn read_done(
        &mut self,
        id: IoId,
        result: Result<usize, DiskError>,
        books: &mut Books<'_>,
    ) -> Result<(), TransferError> {
        let (slot, ext, at) = split_io(id)
            .and_then(|(slot, extent)| {
                let slot = self.slots.get_mut(slot)?;
                let (ext, at) = *slot.extents.get(extent)?;
                Some((slot, ext, at))
            })
            .ok_or(misuse("driver reported an unknown read"))?;
        let wanted = ext.len as usize;
        let got = match &result {
            Ok(n) => (*n).min(wanted),
            Err(_) => 0,
        };
        if got < wanted && slot.state != SlotState::Reading {
            // A refill (parts lost with a lane): the segment was sealed, advertised and
            // partly received from the first read. What cannot be read again goes as
            // zeros, the receiver's hash check rejects the segment, and it asks for the
            // files again, whose reads then find what changed.
            slot.buf[at + got..at + wanted].fill(0);
        } else if got < wanted {
            let trouble = match &result {
                Ok(_) => Trouble::Changed,
                Err(error) => Trouble::Unreadable(error.kind.into()),
            };
            books.entries[ext.entry as usize].troubled(ext.attempt, trouble);
            if let Err(error) = result {
                books.out.event(TransferEvent::ReadFailed {
                    entry: ext.entry as usize,
                    error,
                });
            }
        }
        slot.reads_outstanding = slot.reads_outstanding.saturating_sub(1);
        if slot.state == SlotState::Discarding && slot.reads_outstanding == 0 {
            slot.state = SlotState::Free;
            let buf = core::mem::take(&mut slot.buf);
            self.spare.push(buf);
        }
        Ok(())
    }

    /// Hashes the oldest segments whose reads are all in, in stream order (a few passes
    /// at a time, here or by the driver), and seals each, in order, as its pass is done.
    pub(super) fn seal_segments(&mut self, books: &mut Books<'_>) -> Result<(), TransferError> {
        while self.hash_segments(books)? {}
        Ok(())
    }

    /// Loads passes for the segments whose reads are in while passes are free, then
    /// seals those whose passes are done: true if it sealed any (passes are free again).
    fn hash_segments(&mut self, books: &mut Books<'_>) -> Result<bool, TransferError> {
        while self.hashing.has_free() {
            let Some(index) = self.slots.iter().position(|s| {
                s.state == SlotState::Reading && s.seq == self.next_seal && s.reads_outstanding == 0
            }) else {
                break;
            };
            let slot = &mut self.slots[index];
            drop_troubled(slot, books.entries, &mut self.notices);
            self.next_seal += 1;
            if slot.extents.is_empty() {
                // Nothing of it is left to send.
                slot.state = SlotState::Free;
                continue;
            }
            let manifest = &**books.manifest;
            self.hashing
                .load(index, slot.seq, &mut slot.buf, &slot.extents, manifest)?;
            slot.state = SlotState::Hashing;
        }
        let mut sealed_any = false;
        while let Some(mut work) = self.hashing.take() {
            sealed_any = true;
            let outcome = work.outcome.take().unwrap_or(Ok(()));
            let slot = work.slot_in(&mut self.slots, |s, seq| {
                s.state == SlotState::Hashing && s.seq == seq
            })?;
            let sealed = outcome.and_then(|()| {
                slot.seal(
                    &mut work,
                    books.manifest,
                    books.config,
                    &mut self.scratch,
                    &mut self.rng,
                    &mut self.guard,
                )
            });
            self.hashing.recycle(work);
            sealed?;
            self.first_hash.get_or_insert(slot.hash);
        }
        Ok(sealed_any)
    }

    /// A pass is back from the driver.
    pub(super) fn hashed(
        &mut self,
        work: HashWork,
        books: &mut Books<'_>,
    ) -> Result<(), TransferError> {
        self.hashing.back(work)?;
        self.seal_segments(books)
    }

    /// Advertises sealed segments in stream order, each after its layout and after the
    /// notices that must go before it.
    pub(super) fn advertise(&mut self, channel: &mut Channel, config: &TransferConfig) {
        loop {
            let Some(index) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == SlotState::Ready)
                .min_by_key(|(_, s)| s.seq)
                .map(|(i, _)| i)
            else {
                return;
            };
            if self.notice_before(self.slots[index].seq) {
                return;
            }
            let slot = &self.slots[index];
            let layout = slot.layout();
            let adv = slot.advertisement(
                config.map_hashes_per_message,
                self.stream_total,
                self.agreed.segment_size,
                self.first_hash.unwrap_or(slot.hash),
                self.advertised_count + 1,
            );
            if channel.send_room()
                < sealed_len(layout.encoded_len()) + sealed_len(adv.encoded_len())
            {
                return;
            }
            if wire::send(channel, &layout)
                .and_then(|()| wire::send(channel, &adv))
                .is_err()
            {
                return;
            }
            self.slots[index].state = SlotState::Advertised;
            self.advertised_count += 1;
        }
    }

    fn advertised(&mut self, hash: &[u8; 32]) -> Option<&mut SendSlot> {
        self.slots
            .iter_mut()
            .find(|s| s.state == SlotState::Advertised && s.hash == *hash)
    }

    pub(super) fn on_request(
        &mut self,
        request: &Request<'_>,
        config: &TransferConfig,
    ) -> Result<(), TransferError> {
        self.advertised(&request.resource_hash)
            .ok_or(out_of_order(
                "a request for a resource that is not advertised",
            ))?
            .on_request(request, config.map_hashes_per_message)
    }

    /// Sends hashmap updates and requested parts, oldest segment first, keeping room for
    /// control messages.
    pub(super) fn send_parts(
        &mut self,
        channel: &mut Channel,
        lanes: &mut SenderLanes,
        config: &TransferConfig,
    ) {
        let mut order: [usize; 256] = [0; 256];
        let mut count = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.state == SlotState::Advertised {
                order[count] = i;
                count += 1;
            }
        }
        order[..count].sort_unstable_by_key(|&i| self.slots[i].seq);
        for &index in &order[..count] {
            let slot = &mut self.slots[index];
            if let Some(segment) = slot.hmu_due {
                let update = slot.hashmap_update(segment, config.map_hashes_per_message);
                if channel.send_capacity() < sealed_len(update.encoded_len())
                    || wire::send(channel, &update).is_err()
                {
                    return;
                }
                slot.hashmap_update_sent();
            }
            if slot.refill {
                // Its lost parts wait for the segment to be read again.
                continue;
            }
            while let Some(&part) = slot.send_queue.front() {
                let message = Message::Part {
                    hash: slot.hash,
                    index: part,
                    data: slot.part(part as usize, config.part_size),
                };
                if !lanes.send_part(channel, (slot.seq, part), &message) {
                    return;
                }
                slot.send_queue.pop_front();
                slot.parts_sent += 1;
                if slot.parts_sent == slot.parts() {
                    // Every part is out: the proof needs only the hashes. (A part lost
                    // with a lane is read again: see `refill`.)
                    self.spare.push(core::mem::take(&mut slot.buf));
                }
            }
        }
    }

    /// PRF: the receiver has the segment, verified and written.
    pub(super) fn on_proof(
        &mut self,
        proof: Proof,
        out: &mut Outputs,
    ) -> Result<(), TransferError> {
        let slot = self.advertised(&proof.resource_hash).ok_or(out_of_order(
            "a proof for a resource that is not advertised",
        ))?;
        if proof.proof != slot.proof {
            return Err(TransferError::SegmentCorrupt(slot.seq));
        }
        slot.state = SlotState::Free;
        let buf = core::mem::take(&mut slot.buf);
        self.bytes_proven += slot.len as u64;
        if !buf.is_empty() {
            self.spare.push(buf);
        }
        out.event(TransferEvent::Progress {
            bytes: self.bytes_proven,
        });
        Ok(())
    }

    /// RCL: the receiver rejected a segment (its data did not match its hash, or the
    /// session is ending): the segment is given up; the receiver asks again for its files
    /// (RETRY). One that is not advertised (already given up) is let be.
    pub(super) fn on_reject(&mut self, hash: &[u8; 32]) {
        if let Some(slot) = self.advertised(hash) {
            if slot.reads_outstanding > 0 {
                // A refill's reads still land in its buffer.
                slot.state = SlotState::Discarding;
                return;
            }
            slot.state = SlotState::Free;
            let buf = core::mem::take(&mut slot.buf);
            if !buf.is_empty() {
                self.spare.push(buf);
            }
        }
    }

    /// `LANE_LOST`: parts that went with a lane go out again, on the connections left.
    /// Those of segments no longer in flight (given up since) are let be.
    pub(super) fn send_again(
        &mut self,
        lost: impl Iterator<Item = (u64, u32)>,
    ) -> Result<(), TransferError> {
        for (seq, index) in lost {
            if let Some(slot) = self
                .slots
                .iter_mut()
                .find(|s| s.state == SlotState::Advertised && s.seq == seq)
            {
                slot.send_again(index)?;
            }
        }
        Ok(())
    }

    /// True if the segment at `seq` in the stream is advertised and not yet proven.
    pub(super) fn is_advertised(&self, seq: u64) -> bool {
        self.slots
            .iter()
            .any(|s| s.state == SlotState::Advertised && s.seq == seq)
    }

    /// True while any segment is being read, sealed or served.
    pub(super) fn in_flight(&self) -> bool {
        self.slots.iter().any(|s| s.state != SlotState::Free)
    }

    /// The Resources to cancel if the session ends now.
    pub(super) fn advertised_hashes(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.slots
            .iter()
            .filter(|s| s.state == SlotState::Advertised)
            .map(|s| &s.hash)
    }

    /// One line for traces.
    pub(super) fn describe(&self) -> String {
        let slots: Vec<String> = self.slots.iter().map(SendSlot::describe).collect();
        format!(
            "next_seal {} proven {} retries {:?} current {:?} slots [{}]",
            self.next_seal,
            self.bytes_proven,
            self.retry_queue,
            self.current,
            slots.join(", ")
        )
    }
}

/// Removes from a segment whose reads are in the pieces of attempts in trouble (and of
/// attempts already abandoned), closing the gaps, and queues each such attempt's ABANDON
/// to go before this segment's layout.
fn drop_troubled(
    slot: &mut SendSlot,
    entries: &mut [EntryState],
    notices: &mut VecDeque<(u64, Notice)>,
) {
    let mut kept = 0;
    let mut fill = 0;
    for index in 0..slot.extents.len() {
        let (extent, at) = slot.extents[index];
        let state = &mut entries[extent.entry as usize];
        if extent.attempt != state.attempt {
            // An attempt abandoned, and already retried, since this piece was read.
            continue;
        }
        if let Some(trouble) = state.trouble {
            if !state.abandoned {
                state.abandoned = true;
                notices.push_back((
                    slot.seq,
                    Notice::Abandon(Abandon {
                        entry: extent.entry,
                        attempt: extent.attempt,
                        trouble,
                    }),
                ));
            }
            continue;
        }
        let len = extent.len as usize;
        if at != fill {
            slot.buf.copy_within(at..at + len, fill);
        }
        slot.extents[kept] = (extent, fill);
        kept += 1;
        fill += len;
    }
    slot.extents.truncate(kept);
    slot.len = fill;
}
