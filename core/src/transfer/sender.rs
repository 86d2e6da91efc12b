//! The sending side of a transfer: serves the manifest, checks resume claims, cuts the
//! bytes still needed into segments and serves each as a Resource.

use std::collections::VecDeque;
use std::sync::Arc;

use sha2::Sha256;

use crate::channel::Channel;
use crate::entropy::{Entropy, SeededEntropy};
use crate::handshake::Role;
use crate::record::sealed_len;
use crate::resource::wire::{Advertisement, HashmapUpdate, MAP_HASH_LEN, Proof, Request, flags};
use crate::resource::{SegmentHasher, part_map_hash};
use crate::time::Timestamp;
use crate::token::Token;
use crate::transfer::common::send_cancels;
use crate::transfer::common::short_of_room;
use crate::transfer::common::{
    Engine, Outputs, Shell, VERIFY_READ, Verifier, control_reserve, slot_io, split_io,
};
use crate::transfer::common::{FileHashes, plan_settled, reread_allowance};
use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::session::impl_session;
use crate::transfer::storage::{Storage, Target};
use crate::transfer::wire::bodies::{REJECTION_MAX_LEN, entry_len};
use crate::transfer::wire::{
    self, Abandon, Claim, Entries, Extent, FileDigest, Layout, Limits, ManifestBegin, Message,
    Plan, PlanResult, Trouble, Update,
};
use crate::transfer::{
    DiskCommand, DiskError, FileMeta, IoId, TransferConfig, TransferError, TransferEvent,
    Unreadable,
};

/// Per-entry state on the sender.
#[derive(Clone, Debug, Default)]
struct EntryState {
    /// Attempt now being sent (1-based).
    attempt: u8,
    /// Where this file's data starts in the stream (the verified resume offset).
    start: u64,
    /// A read of this attempt came back short (the file changed) or failed: the rest of
    /// the attempt is not sent, and ABANDON tells the receiver why.
    trouble: Option<Trouble>,
    /// The ABANDON for this attempt is queued.
    abandoned: bool,
    /// Waiting for the driver to reopen the file for this attempt.
    reopening: bool,
    /// A resume claim was received for this entry.
    claimed: bool,
}

/// A message about one file that must reach the receiver in its place in the stream.
#[derive(Clone, Copy, Debug)]
enum Notice {
    Update(Update),
    Abandon(Abandon),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    Reading,
    /// Hashed, waiting to be advertised.
    Ready,
    Advertised,
}

/// A segment being prepared or served.
struct SendSlot {
    state: SlotState,
    seq: u64,
    buf: Vec<u8>,
    /// Uncompressed bytes in the segment.
    len: usize,
    /// Bytes sent (compressed or not).
    transfer_len: usize,
    compressed: bool,
    extents: Vec<(Extent, usize)>,
    reads_outstanding: usize,
    digests: Vec<FileDigest>,
    hash: [u8; 32],
    proof: [u8; 32],
    random: [u8; 4],
    hashmap: Vec<[u8; MAP_HASH_LEN]>,
    /// Per part: queued for sending.
    queued: Vec<bool>,
    send_queue: VecDeque<u32>,
    hmu_due: Option<u64>,
    /// Hashmap segments the receiver has (the advertisement's counts as the first).
    hashmap_segments_sent: u64,
    search_hint: usize,
}

impl SendSlot {
    fn new(config: &TransferConfig) -> Self {
        let parts = config.parts_per_segment();
        SendSlot {
            state: SlotState::Free,
            seq: 0,
            buf: vec![0; config.segment_size],
            len: 0,
            transfer_len: 0,
            compressed: false,
            extents: Vec::with_capacity(config.max_extents_per_segment),
            reads_outstanding: 0,
            digests: Vec::with_capacity(config.max_extents_per_segment),
            hash: [0; 32],
            proof: [0; 32],
            random: [0; 4],
            hashmap: Vec::with_capacity(parts),
            queued: Vec::with_capacity(parts),
            send_queue: VecDeque::with_capacity(parts),
            hmu_due: None,
            hashmap_segments_sent: 1,
            search_hint: 0,
        }
    }

    fn part_range(&self, index: usize, part_size: usize) -> core::ops::Range<usize> {
        let start = index * part_size;
        start..(start + part_size).min(self.transfer_len)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Manifest,
    AwaitingPlan,
    Verifying,
    Streaming,
    Finished,
}

/// The sender's engine; see [`SenderSession`].
pub(crate) struct SenderEngine {
    config: TransferConfig,
    /// Shared with the driver (and other sessions of the same batch) until a file is
    /// reopened with another size: a batch may hold a million entries.
    manifest: Arc<Manifest>,
    entries: Vec<EntryState>,
    phase: Phase,
    out: Outputs,
    rng: SeededEntropy,
    // manifest
    manifest_begun: bool,
    manifest_next: usize,
    // plan
    claims: Vec<Claim>,
    in_flight: usize,
    max_extents: usize,
    /// The segment size in use: the smaller of ours and the receiver's.
    segment_size: usize,
    verify_next: usize,
    verifier: Verifier,
    rejected: Vec<u32>,
    rejected_sent: usize,
    result_done: bool,
    /// Per-file SHA-256 as the stream passes (and resumed prefixes waiting).
    hashes: FileHashes,
    // stream
    slots: Vec<SendSlot>,
    next_entry: usize,
    /// Where the next piece starts: entry, attempt and offset.
    current: Option<(u32, u8, u64)>,
    retry_queue: VecDeque<u32>,
    /// Retried files whose reopen is still to be asked of the driver.
    reopens: VecDeque<u32>,
    /// Notices to send, each once every segment numbered below its tag has been
    /// advertised (an ABANDON follows the last layout that carried its attempt; an
    /// UPDATE, tagged 0, goes before any layout that follows it).
    notices: VecDeque<(u64, Notice)>,
    next_seq: u64,
    next_finish: u64,
    first_hash: Option<[u8; 32]>,
    scratch: Vec<u8>,
    /// The map hashes sorted, for the collision guard, sized for a full segment.
    guard: Vec<[u8; MAP_HASH_LEN]>,
    stream_total: u64,
    bytes_proven: u64,
    stall: Option<Timestamp>,
}

/// The sending end of a transfer session: the core of `ferry send`.
///
/// See the module documentation for the drain order.
pub struct SenderSession {
    shell: Shell<SenderEngine>,
}

impl_session!(SenderSession);

impl SenderSession {
    /// A session serving `manifest` to the receiver that holds `token`. The manifest's
    /// entries are read with [`DiskCommand::Read`] by index. It is shared, not copied
    /// (`Arc<Manifest>`; a `Manifest` converts), until a retried file is found changed.
    pub fn new(
        config: TransferConfig,
        token: Token,
        manifest: impl Into<Arc<Manifest>>,
        entropy: &mut dyn Entropy,
        now: Timestamp,
    ) -> Result<Self, TransferError> {
        config.validate()?;
        let manifest: Arc<Manifest> = manifest.into();
        manifest.check_tree()?;
        let channel = Channel::new(Role::Sender, token, config.channel.clone(), entropy, now)
            .map_err(|e| TransferError::Config(e.into()))?;
        let mut seed = [0u8; 8];
        entropy.fill(&mut seed);
        let slots = (0..config.segments_in_flight)
            .map(|_| SendSlot::new(&config))
            .collect();
        let disk = config.segments_in_flight * config.max_extents_per_segment + 4;
        let engine = SenderEngine {
            entries: vec![
                EntryState {
                    attempt: 1,
                    ..EntryState::default()
                };
                manifest.len()
            ],
            phase: Phase::Handshake,
            out: Outputs::new(disk + 16, disk),
            rng: SeededEntropy::new(u64::from_be_bytes(seed)),
            manifest_begun: false,
            manifest_next: 0,
            claims: Vec::new(),
            in_flight: config.segments_in_flight,
            max_extents: config.max_extents_per_segment,
            segment_size: config.segment_size,
            verify_next: 0,
            verifier: Verifier::new(config.segment_size),
            rejected: Vec::new(),
            rejected_sent: 0,
            result_done: false,
            hashes: FileHashes::default(),
            slots,
            next_entry: 0,
            current: None,
            retry_queue: VecDeque::new(),
            reopens: VecDeque::new(),
            notices: VecDeque::new(),
            next_seq: 1,
            next_finish: 1,
            first_hash: None,
            scratch: if config.compress {
                vec![0; config.segment_size]
            } else {
                Vec::new()
            },
            guard: Vec::with_capacity(config.parts_per_segment()),
            stream_total: 0,
            bytes_proven: 0,
            stall: None,
            manifest,
            config,
        };
        Ok(SenderSession {
            shell: Shell::new(channel, engine, now),
        })
    }

    /// Carries out one disk command against `storage` and takes its completion.
    fn carry_out_command(
        &mut self,
        now: Timestamp,
        command: DiskCommand,
        storage: &mut dyn Storage,
    ) -> Result<(), TransferError> {
        self.shell.engine.out.completed(&command);
        let engine = &mut self.shell.engine;
        let Some(target) = Target::of(&engine.manifest, &command) else {
            return Err(protocol(
                "a disk command for an entry the batch does not have",
            ));
        };
        let index = target.index;
        let done = match command {
            DiskCommand::Read { id, offset, .. } => {
                let buf = read_buffer(&mut engine.slots, &mut engine.verifier, id);
                let result = storage.read(target, offset, buf);
                engine.read_done(id, result)
            }
            DiskCommand::Reopen { .. } => {
                let result = storage.reopen(target);
                engine.reopen_done(index, result)
            }
            _ => Err(protocol("a disk command the sender never gives")),
        };
        self.shell.after(now, done)
    }

    fn describe_state(&self) -> String {
        let e = &self.shell.engine;
        let slots: Vec<String> = e
            .slots
            .iter()
            .map(|s| {
                format!(
                    "{:?}#{} q{} reads{}",
                    s.state,
                    s.seq,
                    s.send_queue.len(),
                    s.reads_outstanding
                )
            })
            .collect();
        format!(
            "sender {:?} next_finish {} proven {} retries {:?} current {:?} slots [{}]",
            e.phase,
            e.next_finish,
            e.bytes_proven,
            e.retry_queue,
            e.current,
            slots.join(", ")
        )
    }
}

/// Where the bytes of read `id` go: the verifier's buffer, or a piece of a segment's.
fn read_buffer<'a>(
    slots: &'a mut [SendSlot],
    verifier: &'a mut Verifier,
    id: IoId,
) -> &'a mut [u8] {
    if id == VERIFY_READ {
        return verifier.buffer();
    }
    match split_io(id).and_then(|(slot, extent)| {
        let (ext, at) = slots.get(slot)?.extents.get(extent)?;
        Some((slot, *at, ext.len as usize))
    }) {
        Some((slot, at, len)) => &mut slots[slot].buf[at..at + len],
        None => &mut [],
    }
}

fn protocol(why: &'static str) -> TransferError {
    TransferError::Protocol(why)
}

impl SenderEngine {
    fn size(&self, entry: u32) -> u64 {
        self.manifest.get(entry as usize).map_or(0, |e| e.size)
    }

    fn arm_stall(&mut self, now: Timestamp) {
        self.stall = Some(now.saturating_add(self.config.stall_timeout));
    }

    fn read_done(
        &mut self,
        id: IoId,
        result: Result<usize, DiskError>,
    ) -> Result<(), TransferError> {
        if id == VERIFY_READ {
            self.verifier.read_done(result)?;
            self.out.event(self.verifier.progress());
            return Ok(());
        }
        let Some((slot_index, extent)) = split_io(id) else {
            return Err(TransferError::Protocol("driver reported an unknown read"));
        };
        let Some(slot) = self.slots.get_mut(slot_index) else {
            return Err(TransferError::Protocol("driver reported an unknown read"));
        };
        let Some(&(ext, _)) = slot.extents.get(extent) else {
            return Err(TransferError::Protocol("driver reported an unknown read"));
        };
        let wanted = ext.len as usize;
        let got = match &result {
            Ok(n) => (*n).min(wanted),
            Err(_) => 0,
        };
        if got < wanted {
            // The file changed (a short read) or cannot be read: the attempt ends here.
            // Its pieces from this segment on are dropped before they are hashed, and
            // ABANDON tells the receiver why.
            let state = &mut self.entries[ext.entry as usize];
            let trouble = match &result {
                Ok(_) => Trouble::Changed,
                Err(error) => Trouble::Unreadable(error.kind.into()),
            };
            if ext.attempt == state.attempt && state.trouble.is_none() {
                state.trouble = Some(trouble);
            }
            if let Err(error) = result {
                self.out.event(TransferEvent::ReadFailed {
                    entry: ext.entry as usize,
                    error,
                });
            }
        }
        slot.reads_outstanding = slot.reads_outstanding.saturating_sub(1);
        Ok(())
    }

    // ------------------------------------------------------------ manifest

    fn pump_manifest(&mut self, channel: &mut Channel, now: Timestamp) {
        let limit = channel.max_message_len();
        if !self.manifest_begun {
            let begin = ManifestBegin {
                entries: self.manifest.len() as u64,
                path_bytes: self.manifest.path_bytes() as u64,
                total_bytes: self.manifest.total_bytes(),
                part_size: self.config.part_size as u64,
            };
            let begin = Message::ManifestBegin(begin);
            if channel.send_capacity() < begin.encoded_len() || wire::send(channel, &begin).is_err()
            {
                return;
            }
            self.manifest_begun = true;
        }
        while self.manifest_next < self.manifest.len() {
            // As many entries as fit in one message (and in the send buffer now).
            let room = channel.send_capacity().min(limit);
            let mut size = 1 + 5;
            let mut count = 0;
            for entry in self.manifest.iter().skip(self.manifest_next) {
                let len = entry_len(&entry);
                if size + len > room {
                    break;
                }
                size += len;
                count += 1;
            }
            if count == 0 {
                return;
            }
            let start = self.manifest_next;
            let entries = Entries::listed(&self.manifest, start..start + count);
            if wire::send(channel, &Message::ManifestEntries(entries)).is_err() {
                return;
            }
            self.manifest_next += count;
            // Progress: a slow link is not a stalled peer.
            self.arm_stall(now);
        }
        self.await_plan(now);
    }

    /// The manifest is out: the receiver now decides and re-reads what it already holds
    /// before it answers, which the wait allows for (at most all of the batch).
    fn await_plan(&mut self, now: Timestamp) {
        self.phase = Phase::AwaitingPlan;
        self.stall = Some(now.saturating_add(reread_allowance(
            self.config.stall_timeout,
            self.manifest.total_bytes(),
        )));
    }

    // ------------------------------------------------------------ plan

    fn on_plan(&mut self, plan: &Plan<'_>) -> Result<(), TransferError> {
        if self.phase != Phase::AwaitingPlan {
            return Err(protocol("a resume plan outside the planning phase"));
        }
        let manifest = &self.manifest;
        let entries = &mut self.entries;
        let claims = &mut self.claims;
        let (last, limits) = plan.read(|claim| {
            let entry = manifest
                .get(claim.entry as usize)
                .ok_or(protocol("a claim names an entry that does not exist"))?;
            let state = &mut entries[claim.entry as usize];
            if entry.kind != EntryKind::File || claim.offset > entry.size || state.claimed {
                return Err(protocol(
                    "a claim for a directory, beyond the file's size, or repeated",
                ));
            }
            state.claimed = true;
            if claim.offset > 0 {
                if claims.len() == claims.capacity() {
                    claims.reserve(claims.len().max(64).min(manifest.len()));
                }
                claims.push(claim);
            }
            Ok(())
        })?;
        if last {
            let fit = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
            if limits.segments_in_flight == 0
                || limits.max_extents == 0
                || fit(limits.segment_size) < self.config.part_size
            {
                return Err(protocol(
                    "the receiver's limits leave no room for a segment",
                ));
            }
            self.in_flight = self
                .config
                .segments_in_flight
                .min(fit(limits.segments_in_flight));
            self.max_extents = self
                .config
                .max_extents_per_segment
                .min(fit(limits.max_extents));
            self.segment_size = self.config.segment_size.min(fit(limits.segment_size));
            // What will be re-read: every claim but the complete files the manifest's
            // hash decides without reading.
            let manifest = &self.manifest;
            let to_read = self
                .claims
                .iter()
                .filter(|claim| {
                    manifest
                        .get(claim.entry as usize)
                        .is_none_or(|e| e.sha256.is_none() || claim.offset < e.size)
                })
                .map(|claim| claim.offset)
                .sum();
            self.verifier.expect(to_read);
            self.phase = Phase::Verifying;
        }
        Ok(())
    }

    /// Checks claims one by one: a complete file whose hash matches the manifest's is
    /// taken on trust (the manifest hash is our own); anything else is re-read.
    fn pump_verify(&mut self) {
        loop {
            if self.verifier.is_busy() {
                let Some(done) = self.verifier.poll(&mut self.out) else {
                    return;
                };
                let claim = self.claims[self.verify_next];
                let size = self.size(done.entry);
                match done.result {
                    Some((hasher, digest)) if digest == claim.prefix => {
                        self.accept_claim(claim, size, Some(hasher))
                    }
                    _ => self.rejected.push(claim.entry),
                }
                self.verify_next += 1;
            }
            let Some(&claim) = self.claims.get(self.verify_next) else {
                self.finish_plan();
                return;
            };
            let entry = self.manifest.get(claim.entry as usize);
            let size = entry.map_or(0, |e| e.size);
            match entry.and_then(|e| e.sha256) {
                // Complete and equal to what the manifest promises: nothing to re-read.
                Some(hash) if claim.offset == size && hash == claim.prefix => {
                    self.accept_claim(claim, size, None);
                    self.verify_next += 1;
                    continue;
                }
                // Complete but not what the manifest promises: send it again.
                Some(_) if claim.offset == size => {
                    self.rejected.push(claim.entry);
                    self.verify_next += 1;
                    continue;
                }
                _ => {}
            }
            self.verifier.start(claim.entry, claim.offset);
        }
    }

    fn accept_claim(&mut self, claim: Claim, size: u64, hasher: Option<Sha256>) {
        self.entries[claim.entry as usize].start = claim.offset;
        if claim.offset < size
            && let Some(hasher) = hasher
        {
            self.hashes.resume_from(claim.entry, hasher);
        }
    }

    fn finish_plan(&mut self) {
        let settled = plan_settled(&self.manifest, |i| self.entries[i].start);
        if let TransferEvent::PlanSettled { bytes_to_send, .. } = settled {
            self.stream_total = bytes_to_send;
        }
        self.out.event(settled);
        self.phase = Phase::Streaming;
    }

    fn pump_plan_result(&mut self, channel: &mut Channel) {
        while !self.result_done {
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
            self.result_done = last;
        }
    }

    // ------------------------------------------------------------ stream

    /// The next piece of file data for a segment: `(entry, attempt, offset, len_available)`.
    fn next_piece(&mut self) -> Option<(u32, u8, u64, u64)> {
        loop {
            if let Some((entry, attempt, offset)) = self.current {
                let size = self.size(entry);
                let state = &self.entries[entry as usize];
                // An attempt in trouble, or abandoned and retried since, sends nothing
                // more.
                if offset < size && state.trouble.is_none() && state.attempt == attempt {
                    return Some((entry, attempt, offset, size - offset));
                }
                self.current = None;
            }
            if let Some(entry) = self.retry_queue.pop_front() {
                self.current = Some((entry, self.entries[entry as usize].attempt, 0));
                continue;
            }
            while self.next_entry < self.manifest.len() {
                let index = self.next_entry;
                self.next_entry += 1;
                let entry = self.manifest.get(index)?;
                let start = self.entries[index].start;
                if entry.kind == EntryKind::File && start < entry.size {
                    self.current = Some((index as u32, self.entries[index].attempt, start));
                    break;
                }
            }
            self.current?;
        }
    }

    fn prepare_segments(&mut self) {
        for slot_index in 0..self.in_flight {
            if self.slots[slot_index].state != SlotState::Free {
                continue;
            }
            if !self.out.has_room(self.max_extents, self.max_extents) {
                return;
            }
            let mut fill = 0usize;
            let mut extents = core::mem::take(&mut self.slots[slot_index].extents);
            extents.clear();
            while fill < self.segment_size && extents.len() < self.max_extents {
                let Some((entry, attempt, offset, available)) = self.next_piece() else {
                    break;
                };
                let len = available.min((self.segment_size - fill) as u64) as u32;
                let index = extents.len();
                extents.push((
                    Extent {
                        entry,
                        attempt,
                        offset,
                        len,
                    },
                    fill,
                ));
                self.out.disk(DiskCommand::Read {
                    id: slot_io(slot_index, index),
                    entry: entry as usize,
                    offset,
                    len: len as usize,
                });
                fill += len as usize;
                self.current = Some((entry, attempt, offset + u64::from(len)));
            }
            let slot = &mut self.slots[slot_index];
            if extents.is_empty() {
                slot.extents = extents;
                return;
            }
            slot.reads_outstanding = extents.len();
            slot.extents = extents;
            slot.len = fill;
            slot.seq = self.next_seq;
            self.next_seq += 1;
            slot.state = SlotState::Reading;
        }
    }

    /// Hashes the oldest segment whose reads are all in, in stream order: file digests and
    /// the segment hash and proof (one pass), optional compression, then the map hashes.
    fn finish_segments(&mut self) -> Result<(), TransferError> {
        loop {
            let Some(slot_index) = self.slots.iter().position(|s| {
                s.state == SlotState::Reading
                    && s.seq == self.next_finish
                    && s.reads_outstanding == 0
            }) else {
                return Ok(());
            };
            let mut slot = core::mem::replace(&mut self.slots[slot_index], SendSlot::placeholder());
            self.drop_troubled(&mut slot);
            let result = if slot.extents.is_empty() {
                // Nothing of it is left to send.
                slot.state = SlotState::Free;
                Ok(())
            } else {
                self.finish_segment(&mut slot)
            };
            self.slots[slot_index] = slot;
            result?;
            self.next_finish += 1;
        }
    }

    /// Removes from a segment whose reads are in the pieces of attempts in trouble (and of
    /// attempts already abandoned), closing the gaps, and queues each such attempt's
    /// ABANDON to go before this segment's layout.
    fn drop_troubled(&mut self, slot: &mut SendSlot) {
        let mut kept = 0;
        let mut fill = 0;
        for index in 0..slot.extents.len() {
            let (extent, at) = slot.extents[index];
            let state = &mut self.entries[extent.entry as usize];
            if extent.attempt != state.attempt {
                // An attempt abandoned, and already retried, since this piece was read.
                continue;
            }
            if let Some(trouble) = state.trouble {
                if !state.abandoned {
                    state.abandoned = true;
                    self.notices.push_back((
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

    fn finish_segment(&mut self, slot: &mut SendSlot) -> Result<(), TransferError> {
        let mut segment = SegmentHasher::new();
        slot.digests.clear();
        for (extent, at) in &slot.extents {
            let data = &slot.buf[*at..*at + extent.len as usize];
            let entry = extent.entry;
            let size = self.size(entry);
            let piece = self.hashes.absorb(&mut segment, extent, data, size)?;
            if piece.ends_file {
                let digest = piece.prefix;
                // Reads that found the file changed dropped their attempt above; what is
                // left to compare is the manifest's hash, where there is one (a reopened
                // file has none).
                let changed = self
                    .manifest
                    .get(entry as usize)
                    .and_then(|e| e.sha256)
                    .is_some_and(|promised| promised != digest);
                slot.digests.push(FileDigest {
                    entry,
                    attempt: extent.attempt,
                    changed,
                    sha256: digest,
                });
            }
        }
        slot.transfer_len = slot.len;
        slot.compressed = false;
        if self.config.compress
            && let Some(len) = compress(&slot.buf[..slot.len], &mut self.scratch)
        {
            slot.buf[..len].copy_from_slice(&self.scratch[..len]);
            slot.transfer_len = len;
            slot.compressed = true;
        }
        let parts = slot.transfer_len.div_ceil(self.config.part_size);
        // The collision guard: two parts sharing a map hash would make a request
        // ambiguous, so draw a new random hash until they are all distinct.
        for _ in 0..16 {
            self.rng.fill(&mut slot.random);
            slot.hashmap.clear();
            slot.hashmap
                .extend((0..parts as u32).map(|index| part_map_hash(index, &slot.random)));
            if !self.has_collision(slot) {
                break;
            }
        }
        let (hash, proof) = segment.finish(&slot.random);
        slot.hash = hash;
        slot.proof = proof;
        self.first_hash.get_or_insert(hash);
        slot.queued.clear();
        slot.queued.resize(parts, false);
        slot.send_queue.clear();
        slot.hmu_due = None;
        slot.hashmap_segments_sent = 1;
        slot.search_hint = 0;
        slot.state = SlotState::Ready;
        Ok(())
    }

    fn advertise(&mut self, channel: &mut Channel) {
        loop {
            let Some(slot_index) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == SlotState::Ready)
                .min_by_key(|(_, s)| s.seq)
                .map(|(i, _)| i)
            else {
                return;
            };
            if self.notice_before(self.slots[slot_index].seq) {
                return;
            }
            let slot = &self.slots[slot_index];
            let per_message = self.config.map_hashes_per_message.min(slot.hashmap.len());
            let hashmap = slot.hashmap[..per_message].as_flattened();
            let estimated = self
                .stream_total
                .div_ceil(self.segment_size as u64)
                .max(slot.seq);
            let adv = Advertisement {
                transfer_size: slot.transfer_len as u64,
                data_size: self.stream_total,
                parts: slot.hashmap.len() as u64,
                hash: slot.hash,
                random_hash: slot.random,
                original_hash: self.first_hash.unwrap_or(slot.hash),
                segment_index: slot.seq,
                total_segments: estimated,
                request_id: None,
                flags: (if slot.compressed {
                    flags::COMPRESSED
                } else {
                    0
                }) | (if estimated > 1 { flags::SPLIT } else { 0 }),
                hashmap,
            };
            let layout = Message::Layout(Layout::sending(slot.hash, &slot.extents, &slot.digests));
            let adv = Message::Adv(adv);
            if channel.send_room()
                < sealed_len(layout.encoded_len()) + sealed_len(adv.encoded_len())
            {
                return;
            }
            let sent = wire::send(channel, &layout).and_then(|()| wire::send(channel, &adv));
            if sent.is_err() {
                return;
            }
            self.slots[slot_index].state = SlotState::Advertised;
        }
    }

    fn on_request(&mut self, now: Timestamp, request: &Request<'_>) -> Result<(), TransferError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.state == SlotState::Advertised && s.hash == request.resource_hash)
            .ok_or(protocol("a request for a resource that is not advertised"))?;
        for wanted in request.map_hashes.chunks_exact(MAP_HASH_LEN) {
            let parts = slot.hashmap.len();
            let index = (0..parts)
                .map(|i| (slot.search_hint + i) % parts)
                .find(|&i| slot.hashmap[i] == wanted)
                .ok_or(protocol("a request for a part that does not exist"))?;
            slot.search_hint = index + 1;
            if !slot.queued[index] {
                slot.queued[index] = true;
                slot.send_queue.push_back(index as u32);
            }
        }
        if let Some(last) = request.exhausted {
            // The receiver holds the hashmap segments sent so far; its last map hash is
            // the last of those.
            let per_message = self.config.map_hashes_per_message;
            let known = slot.hashmap_segments_sent as usize * per_message;
            if known >= slot.hashmap.len()
                || slot.hashmap[known - 1] != last
                || slot.hmu_due.is_some()
            {
                return Err(protocol(
                    "a hashmap request that does not follow the hashmap sent",
                ));
            }
            slot.hmu_due = Some(slot.hashmap_segments_sent);
        }
        self.arm_stall(now);
        Ok(())
    }

    fn pump_parts(&mut self, channel: &mut Channel) {
        let reserve = control_reserve(channel);
        let part_size = self.config.part_size;
        let per_message = self.config.map_hashes_per_message;
        let mut order: [usize; 256] = [0; 256];
        let mut count = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.state == SlotState::Advertised {
                order[count] = i;
                count += 1;
            }
        }
        order[..count].sort_unstable_by_key(|&i| self.slots[i].seq);
        for &slot_index in &order[..count] {
            let slot = &mut self.slots[slot_index];
            if let Some(segment) = slot.hmu_due {
                let start = segment as usize * per_message;
                let end = (start + per_message).min(slot.hashmap.len());
                let update = HashmapUpdate {
                    resource_hash: slot.hash,
                    segment,
                    hashmap: slot.hashmap[start..end].as_flattened(),
                };
                let update = Message::Hmu(update);
                if channel.send_capacity() < sealed_len(update.encoded_len())
                    || wire::send(channel, &update).is_err()
                {
                    return;
                }
                slot.hmu_due = None;
                slot.hashmap_segments_sent += 1;
            }
            while let Some(&index) = slot.send_queue.front() {
                let range = slot.part_range(index as usize, part_size);
                let part = Message::Part {
                    hash: slot.hash,
                    index,
                    data: &slot.buf[range],
                };
                if channel.send_room() < sealed_len(part.encoded_len()) + reserve
                    || wire::send(channel, &part).is_err()
                {
                    return;
                }
                slot.send_queue.pop_front();
            }
        }
    }

    fn on_proof(&mut self, now: Timestamp, proof: Proof) -> Result<(), TransferError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.state == SlotState::Advertised && s.hash == proof.resource_hash)
            .ok_or(protocol("a proof for a resource that is not advertised"))?;
        if proof.proof != slot.proof {
            return Err(TransferError::SegmentCorrupt(slot.seq));
        }
        slot.state = SlotState::Free;
        self.bytes_proven += slot.len as u64;
        self.out.event(TransferEvent::Progress {
            bytes: self.bytes_proven,
        });
        self.arm_stall(now);
        Ok(())
    }

    fn on_retry(&mut self, entry: u32, attempt: u8) -> Result<(), TransferError> {
        let max = self.config.max_attempts;
        let manifest_entry = self
            .manifest
            .get(entry as usize)
            .ok_or(protocol("a retry for an unknown entry"))?;
        let state = &mut self.entries[entry as usize];
        if manifest_entry.kind != EntryKind::File
            || attempt != state.attempt.saturating_add(1)
            || attempt > max
        {
            return Err(protocol("a retry out of order or beyond the attempt limit"));
        }
        state.attempt = attempt;
        state.trouble = None;
        state.abandoned = false;
        state.reopening = true;
        self.reopens.push_back(entry);
        self.out.event(TransferEvent::FileRetry {
            entry: entry as usize,
            attempt,
        });
        Ok(())
    }

    /// Asks the driver to reopen retried files, as disk room allows.
    fn pump_reopens(&mut self) {
        while self.out.has_room(1, 1) {
            let Some(entry) = self.reopens.pop_front() else {
                return;
            };
            self.out.disk(DiskCommand::Reopen {
                entry: entry as usize,
            });
        }
    }

    /// The file of a retried entry as the driver now finds it: the new attempt starts
    /// with an UPDATE, or, if it cannot be read, the file ends with an ABANDON.
    fn reopen_done(
        &mut self,
        entry: usize,
        result: Result<FileMeta, DiskError>,
    ) -> Result<(), TransferError> {
        let state = self
            .entries
            .get_mut(entry)
            .filter(|s| s.reopening)
            .ok_or(protocol("driver reported an unknown reopen"))?;
        state.reopening = false;
        let attempt = state.attempt;
        let entry_id = entry as u32;
        if let Err(error) = &result {
            self.out.event(TransferEvent::ReadFailed {
                entry,
                error: error.clone(),
            });
        }
        let meta = result.map_err(|error| Trouble::Unreadable(error.kind.into()));
        let meta = meta.and_then(|meta| {
            Arc::make_mut(&mut self.manifest)
                .set_file_meta(entry, meta.size, meta.mtime)
                .map(|()| meta)
                .map_err(|_| Trouble::Unreadable(Unreadable::ReadError))
        });
        match meta {
            Ok(meta) => {
                self.stream_total += meta.size;
                self.notices.push_back((
                    0,
                    Notice::Update(Update {
                        entry: entry_id,
                        attempt,
                        size: meta.size,
                        mtime: meta.mtime,
                    }),
                ));
                self.retry_queue.push_back(entry_id);
            }
            Err(trouble) => {
                let state = &mut self.entries[entry];
                state.trouble = Some(trouble);
                state.abandoned = true;
                self.notices.push_back((
                    0,
                    Notice::Abandon(Abandon {
                        entry: entry_id,
                        attempt,
                        trouble,
                    }),
                ));
            }
        }
        Ok(())
    }

    /// The oldest segment not yet advertised, if any: notices tagged above it wait.
    fn oldest_unadvertised(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Reading | SlotState::Ready))
            .map(|s| s.seq)
            .min()
    }

    /// Sends the notices whose place in the stream has come.
    fn pump_notices(&mut self, channel: &mut Channel) {
        let oldest = self.oldest_unadvertised();
        let mut index = 0;
        while index < self.notices.len() {
            let (tag, notice) = self.notices[index];
            if oldest.is_some_and(|seq| seq < tag) {
                index += 1;
                continue;
            }
            let sent = wire::send(
                channel,
                &match notice {
                    Notice::Update(update) => Message::Update(update),
                    Notice::Abandon(abandon) => Message::Abandon(abandon),
                },
            );
            if sent.is_err() {
                return;
            }
            self.notices.remove(index);
        }
    }

    /// True while a notice must still go out before the segment numbered `seq`.
    fn notice_before(&self, seq: u64) -> bool {
        self.notices.iter().any(|(tag, _)| *tag <= seq)
    }

    /// True if two parts share a map hash.
    fn has_collision(&mut self, slot: &SendSlot) -> bool {
        self.guard.clear();
        self.guard.extend_from_slice(&slot.hashmap);
        self.guard.sort_unstable();
        self.guard.windows(2).any(|pair| pair[0] == pair[1])
    }

    fn in_flight(&self) -> bool {
        self.slots.iter().any(|s| s.state != SlotState::Free)
    }
}

impl SendSlot {
    /// An empty stand-in while a slot is borrowed out of the table.
    fn placeholder() -> Self {
        SendSlot {
            state: SlotState::Free,
            seq: 0,
            buf: Vec::new(),
            len: 0,
            transfer_len: 0,
            compressed: false,
            extents: Vec::new(),
            reads_outstanding: 0,
            digests: Vec::new(),
            hash: [0; 32],
            proof: [0; 32],
            random: [0; 4],
            hashmap: Vec::new(),
            queued: Vec::new(),
            send_queue: VecDeque::new(),
            hmu_due: None,
            hashmap_segments_sent: 1,
            search_hint: 0,
        }
    }
}

/// bz2 of `data` into `out`, or `None` unless strictly smaller.
fn compress(data: &[u8], out: &mut [u8]) -> Option<usize> {
    use bzip2::{Action, Compress, Compression, Status};
    let limit = data.len().saturating_sub(1).min(out.len());
    let mut compressor = Compress::new(Compression::new(6), 30);
    match compressor.compress(data, &mut out[..limit], Action::Finish) {
        Ok(Status::StreamEnd) => Some(compressor.total_out() as usize),
        _ => None,
    }
}

impl Engine for SenderEngine {
    fn established(&mut self, now: Timestamp) -> Result<(), TransferError> {
        self.phase = Phase::Manifest;
        self.out.event(TransferEvent::Connected);
        self.arm_stall(now);
        Ok(())
    }

    fn message(&mut self, now: Timestamp, message: Message<'_>) -> Result<(), TransferError> {
        let streaming = self.phase == Phase::Streaming;
        match message {
            Message::Plan(plan) => self.on_plan(&plan),
            Message::Decline(reason) => Err(TransferError::Declined(wire::shown_reason(reason))),
            Message::Req(request) if streaming => self.on_request(now, &request),
            Message::Prf(proof) if streaming => self.on_proof(now, proof),
            Message::Retry { entry, attempt } if streaming => self.on_retry(entry, attempt),
            // The receiver rejects a segment only right before CANCEL, which carries the
            // reason; nothing is undone here.
            Message::Rcl(_) => Ok(()),
            Message::Done { committed, failed } if streaming => {
                if self.in_flight() || !self.retry_queue.is_empty() {
                    return Err(protocol("done while segments are still in flight"));
                }
                self.phase = Phase::Finished;
                self.stall = None;
                self.out
                    .event(TransferEvent::Finished { committed, failed });
                Ok(())
            }
            Message::Cancel(reason) => Err(TransferError::Cancelled {
                by_peer: true,
                reason: wire::shown_reason(reason),
            }),
            _ => Err(protocol("a message the sender does not expect here")),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_extents: self.config.max_extents_per_segment,
            max_parts: self.config.parts_per_segment(),
        }
    }

    fn pump(&mut self, channel: &mut Channel, now: Timestamp) -> Result<(), TransferError> {
        // A phase that ends inside this call hands straight over to the next one.
        loop {
            let phase = self.phase;
            match phase {
                Phase::Handshake | Phase::AwaitingPlan => {}
                Phase::Manifest => self.pump_manifest(channel, now),
                Phase::Verifying => {
                    // Re-reading claimed files is our own work, not a wait on the peer.
                    self.stall = None;
                    self.pump_verify();
                }
                Phase::Streaming => {
                    self.pump_plan_result(channel);
                    if self.result_done {
                        self.pump_reopens();
                        self.finish_segments()?;
                        self.pump_notices(channel);
                        self.advertise(channel);
                        self.pump_parts(channel);
                        self.prepare_segments();
                    }
                }
                Phase::Finished => {
                    let _ = channel.close();
                }
            }
            if self.phase == phase {
                break;
            }
        }
        if self.phase == Phase::Streaming && self.result_done && self.stall.is_none() {
            self.arm_stall(now);
        }
        if self.phase == Phase::Manifest
            && self.manifest_next == self.manifest.len()
            && self.manifest_begun
        {
            self.await_plan(now);
        }
        Ok(())
    }

    fn input_blocked(&self, channel: &Channel) -> bool {
        short_of_room(channel) || !self.out.has_room(0, 4)
    }

    fn deadline(&self) -> Option<Timestamp> {
        self.stall
    }

    fn stall_timeout(&self) -> core::time::Duration {
        self.config.stall_timeout
    }

    fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    fn outputs(&mut self) -> &mut Outputs {
        &mut self.out
    }

    fn cancel_resources(&mut self, channel: &mut Channel) {
        let advertised = self
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Advertised)
            .map(|s| &s.hash);
        send_cancels(channel, Message::Icl, advertised);
    }
}
