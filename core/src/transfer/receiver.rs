//! The receiving side of a transfer: validates the manifest, verifies what is already on
//! disk, requests the rest as Resources, verifies every segment and file, and tells the
//! driver what to write and commit.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::channel::Channel;
use crate::entropy::Entropy;
use crate::handshake::Role;
use crate::record::sealed_len;
use crate::resource::SegmentHasher;
use crate::resource::wire::{Advertisement, HashmapUpdate, MAP_HASH_LEN, Proof, Request};
use crate::time::Timestamp;
use crate::token::Token;
use crate::transfer::common::send_cancels;
use crate::transfer::common::short_of_room;
use crate::transfer::common::{Engine, Outputs, Shell, VERIFY_READ, Verifier, slot_io, split_io};
use crate::transfer::common::{FileHashes, plan_settled, reread_allowance};
use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::session::impl_session;
use crate::transfer::storage::{Storage, Target};
use crate::transfer::wire::bodies::CLAIM_MAX_LEN;
use crate::transfer::wire::{
    self, Abandon, Claim, Entries, Extent, FileDigest, Layout, Limits, ManifestBegin, Message,
    Plan, PlanResult, ReceiverLimits, Trouble, Update,
};
use crate::transfer::{
    DiskCommand, DiskError, FileFailure, IoId, TransferConfig, TransferError, TransferEvent,
};

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

/// Where one entry stands on the receiver, in 16 bytes: a batch may hold a million.
///
/// The offset a file's next piece must start at is `verified` until its first piece is
/// laid out (the start the plan settled, or 0 for a new attempt); from then on the
/// engine's layout cursor holds it, as a file's pieces come one after another.
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
}

impl EntryState {
    const NEW: EntryState = EntryState {
        verified: 0,
        attempt: 1,
        status: FileStatus::InProgress,
        ended: false,
        updated: false,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Layout received; waiting for the advertisement.
    Layout,
    Receiving,
    /// All parts in and the hash checked; waiting for its turn to be written.
    Complete,
    Writing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Commit,
    Retry,
    Fail(FileFailure),
}

struct RecvSlot {
    state: SlotState,
    seq: u64,
    /// The advertisement's segment index, for error messages.
    segment_index: u64,
    buf: Vec<u8>,
    len: usize,
    transfer_len: usize,
    compressed: bool,
    extents: Vec<(Extent, usize)>,
    hash: [u8; 32],
    random: [u8; 4],
    proof: [u8; 32],
    parts: usize,
    per_message: usize,
    hashmap: Vec<[u8; MAP_HASH_LEN]>,
    received: Vec<bool>,
    received_count: usize,
    next_request: usize,
    waiting_hmu: bool,
    writes_outstanding: usize,
    results: Vec<(u32, Outcome)>,
    /// The sender's digests of the files that end in this segment (from its layout).
    digests: Vec<FileDigest>,
    /// Per extent: the SHA-256 of its file up to the extent's end, which becomes the
    /// file's verified hash once the extent is written.
    prefixes: Vec<[u8; 32]>,
}

impl RecvSlot {
    fn new(config: &TransferConfig) -> Self {
        RecvSlot {
            state: SlotState::Free,
            seq: 0,
            segment_index: 0,
            buf: vec![0; config.segment_size],
            len: 0,
            transfer_len: 0,
            compressed: false,
            extents: Vec::with_capacity(config.max_extents_per_segment),
            hash: [0; 32],
            random: [0; 4],
            proof: [0; 32],
            parts: 0,
            per_message: 0,
            hashmap: Vec::new(),
            received: Vec::new(),
            received_count: 0,
            next_request: 0,
            waiting_hmu: false,
            writes_outstanding: 0,
            results: Vec::with_capacity(config.max_extents_per_segment),
            digests: Vec::with_capacity(config.max_extents_per_segment),
            prefixes: Vec::with_capacity(config.max_extents_per_segment),
        }
    }

    fn part_len(&self, index: usize, part_size: usize) -> usize {
        (self.transfer_len - index * part_size).min(part_size)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Handshake,
    Manifest,
    Offered,
    Verifying,
    Planning,
    AwaitingResult,
    Settling,
    Streaming,
    Finished,
}

/// The receiver's engine; see [`ReceiverSession`].
pub(crate) struct ReceiverEngine {
    config: TransferConfig,
    phase: Phase,
    out: Outputs,
    manifest: Manifest,
    expected_entries: u64,
    part_size: usize,
    entries: Vec<EntryState>,
    /// The file whose pieces the layouts are in the middle of: entry, attempt, and the
    /// offset its next piece must start at.
    cursor: Option<(u32, u8, u64)>,
    /// The SHA-256 of the verified bytes of each file in progress that has some.
    partial_hashes: HashMap<u32, [u8; 32]>,
    // resume
    local: Vec<(u32, u64)>,
    verify_next: usize,
    verifier: Verifier,
    claims: Vec<Claim>,
    claims_sent: usize,
    /// Per-file SHA-256 as the stream passes (and resumed prefixes waiting).
    hashes: FileHashes,
    settle_next: usize,
    // stream
    slots: Vec<RecvSlot>,
    awaiting_adv: Option<usize>,
    next_seq: u64,
    next_process: u64,
    window: usize,
    outstanding: usize,
    retries_due: VecDeque<(u32, u8)>,
    proofs_due: VecDeque<Proof>,
    scratch: Vec<u8>,
    unresolved: usize,
    committed: u64,
    failed: u64,
    bytes_done: u64,
    since_checkpoint: u64,
    /// When the bytes written since the last checkpoint must be checkpointed.
    checkpoint_due: Option<Timestamp>,
    /// The time of the latest input, for what happens outside a timed call.
    last_now: Timestamp,
    changed: Option<core::ops::Range<usize>>,
    done_sent: bool,
    stall: Option<Timestamp>,
    request_buf: Vec<u8>,
    /// See [`ReceiverSession::skip_verification_for_testing`].
    skip_verification: bool,
}

/// The receiving end of a transfer session: the core of `ferry receive`.
///
/// See the module documentation for the drain order. After
/// [`TransferEvent::BatchOffered`], call [`ReceiverSession::accept`] (telling it what is
/// already on disk) or [`ReceiverSession::decline`].
pub struct ReceiverSession {
    shell: Shell<ReceiverEngine>,
}

fn protocol(why: &'static str) -> TransferError {
    TransferError::Protocol(why)
}

impl_session!(ReceiverSession);

impl ReceiverSession {
    /// A session that will connect with `token` and receive a batch.
    pub fn new(
        config: TransferConfig,
        token: Token,
        entropy: &mut dyn Entropy,
        now: Timestamp,
    ) -> Result<Self, TransferError> {
        config.validate()?;
        let channel = Channel::new(Role::Receiver, token, config.channel.clone(), entropy, now)
            .map_err(|e| TransferError::Config(e.into()))?;
        let slots = (0..config.segments_in_flight)
            .map(|_| RecvSlot::new(&config))
            .collect();
        let disk = 2 * config.max_extents_per_segment + 8;
        let engine = ReceiverEngine {
            phase: Phase::Handshake,
            out: Outputs::new(2 * config.max_extents_per_segment + 16, disk),
            manifest: Manifest::default(),
            expected_entries: 0,
            part_size: config.part_size,
            entries: Vec::new(),
            cursor: None,
            partial_hashes: HashMap::new(),
            local: Vec::new(),
            verify_next: 0,
            verifier: Verifier::new(config.segment_size),
            claims: Vec::new(),
            claims_sent: 0,
            hashes: FileHashes::default(),
            settle_next: 0,
            slots,
            awaiting_adv: None,
            next_seq: 0,
            next_process: 0,
            window: config.initial_window,
            outstanding: 0,
            retries_due: VecDeque::new(),
            proofs_due: VecDeque::with_capacity(config.segments_in_flight),
            scratch: vec![0; config.segment_size],
            unresolved: 0,
            committed: 0,
            failed: 0,
            bytes_done: 0,
            since_checkpoint: 0,
            checkpoint_due: None,
            last_now: now,
            changed: None,
            done_sent: false,
            stall: None,
            request_buf: Vec::with_capacity(config.channel.max_record_payload),
            skip_verification: false,
            config,
        };
        let mut session = ReceiverSession {
            shell: Shell::new(channel, engine, now),
        };
        session.shell.engine.arm_stall(now);
        Ok(session)
    }

    /// Accepts the offered batch. `local` lists entries of which the driver already holds
    /// the first `bytes` bytes (a partial file from an earlier run, or a complete one);
    /// the session re-reads and hashes them before claiming them to the sender.
    pub fn accept(&mut self, now: Timestamp, local: &[(usize, u64)]) -> Result<(), TransferError> {
        let accepted = self.shell.engine.accept(local);
        self.shell.after(now, accepted)
    }

    /// Declines the offered batch; the sender is told why.
    pub fn decline(&mut self, now: Timestamp, reason: &str) -> Result<(), TransferError> {
        let engine = &mut self.shell.engine;
        if engine.phase != Phase::Offered {
            return Err(protocol(
                "decline is only possible while a batch is offered",
            ));
        }
        let _ = wire::send(
            &mut self.shell.channel,
            &Message::Decline(wire::reason(reason)),
        );
        let _ = self.shell.channel.close();
        engine.phase = Phase::Finished;
        engine.stall = None;
        self.shell.after(now, Ok(()))
    }

    /// Breaks the core's central guarantee on purpose: files are committed whatever their
    /// hash. It exists only so that the simulator can show its sweep catches such a bug;
    /// never call it elsewhere.
    #[doc(hidden)]
    pub fn skip_verification_for_testing(&mut self) {
        self.shell.engine.skip_verification = true;
    }

    /// Resume state of `entry`, for the driver's lock file.
    pub fn progress(&self, entry: usize) -> Option<FileProgress> {
        self.shell.engine.progress(entry)
    }

    /// Carries out one disk command against `storage` and takes its completion.
    fn carry_out_command(
        &mut self,
        now: Timestamp,
        command: DiskCommand,
        storage: &mut dyn Storage,
    ) -> Result<(), TransferError> {
        self.shell.engine.out.completed(&command);
        if let DiskCommand::Checkpoint { changed } = command {
            return match storage.checkpoint(changed, self) {
                Ok(()) => self.shell.after(now, Ok(())),
                Err(error) => Err(self.shell.disk_failed("saving", "the resume state", error)),
            };
        }
        let engine = &mut self.shell.engine;
        let Some(target) = Target::of(&engine.manifest, &command) else {
            return Err(protocol(
                "a disk command for an entry the batch does not have",
            ));
        };
        let index = target.index;
        let (op, result) = match command {
            DiskCommand::Read { id, offset, .. } if id == VERIFY_READ => {
                let result = storage.read(target, offset, engine.verifier.buffer());
                let done = engine.verifier.read_done(result).map(|()| {
                    engine.out.event(engine.verifier.progress());
                });
                return self.shell.after(now, done);
            }
            DiskCommand::Write { id, offset, .. } => {
                let result = storage.write(target, offset, write_data(&engine.slots, id));
                let done = engine.write_done(id, result);
                return self.shell.after(now, done);
            }
            DiskCommand::Commit { .. } => ("committing", storage.commit(target)),
            DiskCommand::Discard { .. } => ("discarding", storage.discard(target)),
            DiskCommand::CreateDir { .. } => ("creating", storage.create_dir(target)),
            _ => return Err(protocol("a disk command the receiver never gives")),
        };
        match result {
            Ok(()) => self.shell.after(now, Ok(())),
            Err(error) => {
                let path = self.shell.engine.path(index as u32);
                Err(self.shell.disk_failed(op, &path, error))
            }
        }
    }

    fn describe_state(&self) -> String {
        let e = &self.shell.engine;
        let slots: Vec<String> = e
            .slots
            .iter()
            .map(|s| {
                format!(
                    "{:?}#{} got {}/{} asked {} hmu {} writes {}",
                    s.state,
                    s.seq,
                    s.received_count,
                    s.parts,
                    s.next_request,
                    s.waiting_hmu,
                    s.writes_outstanding
                )
            })
            .collect();
        format!(
            "receiver {:?} next_process {} window {} outstanding {} unresolved {} done {} slots [{}]",
            e.phase,
            e.next_process,
            e.window,
            e.outstanding,
            e.unresolved,
            e.bytes_done,
            slots.join(", ")
        )
    }
}

/// The bytes of write `id`: a piece of a segment's buffer.
fn write_data(slots: &[RecvSlot], id: IoId) -> &[u8] {
    split_io(id)
        .and_then(|(slot, extent)| {
            let slot = slots.get(slot)?;
            let (ext, at) = slot.extents.get(extent)?;
            slot.buf.get(*at..*at + ext.len as usize)
        })
        .unwrap_or(&[])
}

impl ReceiverEngine {
    fn arm_stall(&mut self, now: Timestamp) {
        self.stall = Some(now.saturating_add(self.config.stall_timeout));
    }

    fn size(&self, entry: u32) -> u64 {
        self.manifest.get(entry as usize).map_or(0, |e| e.size)
    }

    fn path(&self, entry: u32) -> String {
        self.manifest
            .get(entry as usize)
            .map_or_else(String::new, |e| e.path.to_owned())
    }

    fn mark_changed(&mut self, entry: usize) {
        self.changed = Some(match self.changed.take() {
            Some(range) => range.start.min(entry)..range.end.max(entry + 1),
            None => entry..entry + 1,
        });
    }

    // ------------------------------------------------------------ manifest

    fn on_manifest_begin(
        &mut self,
        now: Timestamp,
        begin: ManifestBegin,
    ) -> Result<(), TransferError> {
        self.arm_stall(now);
        if self.phase != Phase::Manifest || self.expected_entries != 0 || !self.manifest.is_empty()
        {
            return Err(protocol("a second manifest header"));
        }
        let part_size = usize::try_from(begin.part_size).unwrap_or(usize::MAX);
        if part_size < 1024 || part_size > self.config.part_size.max(1024) {
            return Err(protocol(
                "the sender's part size is below 1 KiB or above this receiver's limit",
            ));
        }
        self.part_size = part_size;
        self.manifest =
            Manifest::with_capacity(begin.entries, begin.path_bytes, &self.config.manifest)?;
        self.expected_entries = begin.entries;
        self.entries = Vec::with_capacity(begin.entries as usize);
        let parts = self.config.segment_size.div_ceil(part_size);
        for slot in &mut self.slots {
            slot.hashmap = Vec::with_capacity(parts);
            slot.received = Vec::with_capacity(parts);
        }
        self.offer_if_complete()
    }

    fn on_manifest_entries(
        &mut self,
        now: Timestamp,
        entries: &Entries<'_>,
    ) -> Result<(), TransferError> {
        self.arm_stall(now);
        if self.phase != Phase::Manifest || self.expected_entries == 0 {
            return Err(protocol(
                "manifest entries before the manifest header or after the whole manifest",
            ));
        }
        let manifest = &mut self.manifest;
        let limits = self.config.manifest;
        entries.for_each(|entry| {
            if manifest.remaining_capacity() == 0 {
                return Err(protocol("more manifest entries than the header announced"));
            }
            manifest.push(entry, &limits).map_err(TransferError::from)
        })?;
        self.offer_if_complete()
    }

    fn offer_if_complete(&mut self) -> Result<(), TransferError> {
        if (self.manifest.len() as u64) < self.expected_entries {
            return Ok(());
        }
        self.manifest.check_tree()?;
        self.entries = vec![EntryState::NEW; self.manifest.len()];
        self.phase = Phase::Offered;
        self.stall = None;
        self.out.event(TransferEvent::BatchOffered {
            entries: self.manifest.len(),
            bytes: self.manifest.total_bytes(),
        });
        Ok(())
    }

    // ------------------------------------------------------------ resume

    fn accept(&mut self, local: &[(usize, u64)]) -> Result<(), TransferError> {
        if self.phase != Phase::Offered {
            return Err(protocol("accept is only possible while a batch is offered"));
        }
        self.local = Vec::with_capacity(local.len().min(self.manifest.len()));
        for &(entry, bytes) in local {
            let Some(item) = self.manifest.get(entry) else {
                continue;
            };
            if item.kind == EntryKind::File && bytes > 0 && bytes <= item.size {
                self.local.push((entry as u32, bytes));
            }
        }
        // In entry order, once each: claims are then found by binary search.
        self.local.sort_unstable_by_key(|(entry, _)| *entry);
        self.local.dedup_by_key(|(entry, _)| *entry);
        self.verifier
            .expect(self.local.iter().map(|(_, bytes)| bytes).sum());
        self.claims = Vec::with_capacity(self.local.len());
        self.phase = Phase::Verifying;
        Ok(())
    }

    fn pump_verify(&mut self) {
        loop {
            if self.verifier.is_busy() {
                let Some(done) = self.verifier.poll(&mut self.out) else {
                    return;
                };
                if let Some((hasher, prefix)) = done.result {
                    self.claims.push(Claim {
                        entry: done.entry,
                        offset: done.target,
                        prefix,
                    });
                    if done.target < self.size(done.entry) {
                        self.hashes.resume_from(done.entry, hasher);
                    }
                }
                self.verify_next += 1;
            }
            let Some(&(entry, bytes)) = self.local.get(self.verify_next) else {
                self.phase = Phase::Planning;
                return;
            };
            self.verifier.start(entry, bytes);
        }
    }

    fn pump_plan(&mut self, channel: &mut Channel, now: Timestamp) {
        while self.phase == Phase::Planning {
            let room = channel.send_capacity().min(channel.max_message_len());
            let fits = room.saturating_sub(32) / CLAIM_MAX_LEN;
            let rest = &self.claims[self.claims_sent..];
            let count = rest.len().min(fits);
            let last = count == rest.len();
            if count == 0 && !last {
                return;
            }
            let plan = Message::Plan(Plan::Claims {
                last,
                limits: ReceiverLimits {
                    segments_in_flight: self.config.segments_in_flight as u64,
                    max_extents: self.config.max_extents_per_segment as u64,
                    segment_size: self.config.segment_size as u64,
                },
                claims: &rest[..count],
            });
            if wire::send(channel, &plan).is_err() {
                return;
            }
            self.claims_sent += count;
            if last {
                // The sender now re-reads whatever we claimed, which can take long: the
                // wait is bounded by the time that re-read takes at the slowest rate we
                // allow for (PROTOCOL.md §6.5).
                self.phase = Phase::AwaitingResult;
                let claimed = self.claims.iter().map(|c| c.offset).sum();
                self.stall =
                    Some(now.saturating_add(reread_allowance(self.config.stall_timeout, claimed)));
            }
        }
    }

    fn on_plan_result(
        &mut self,
        now: Timestamp,
        result: &PlanResult<'_>,
    ) -> Result<(), TransferError> {
        if self.phase != Phase::AwaitingResult {
            return Err(protocol("a plan result the receiver did not ask for"));
        }
        let claims = &mut self.claims;
        let hashes = &mut self.hashes;
        let last = result.read(|entry| {
            // Claims are in entry order; a rejected one keeps its place with nothing held.
            let at = claims
                .binary_search_by_key(&entry, |c| c.entry)
                .ok()
                .filter(|&at| claims[at].offset > 0)
                .ok_or(protocol("the sender rejected a claim that was never made"))?;
            claims[at].offset = 0;
            hashes.drop_resumed(entry);
            Ok(())
        })?;
        if !last {
            return Ok(());
        }
        for claim in self.claims.iter().filter(|c| c.offset > 0) {
            self.entries[claim.entry as usize].verified = claim.offset;
            if claim.offset < self.size(claim.entry) {
                self.partial_hashes.insert(claim.entry, claim.prefix);
            }
        }
        self.claims = Vec::new();
        self.unresolved = self
            .manifest
            .iter()
            .zip(&self.entries)
            .filter(|(entry, state)| entry.kind == EntryKind::File && state.verified < entry.size)
            .count();
        let settled = plan_settled(&self.manifest, |i| self.entries[i].verified);
        self.out.event(settled);
        self.phase = Phase::Settling;
        self.arm_stall(now);
        Ok(())
    }

    /// Emits directory creations and the commits of files that need no data (complete
    /// on disk already, or empty), as disk room allows.
    fn pump_settle(&mut self) {
        while self.settle_next < self.manifest.len() {
            if !self.out.has_room(2, 2) {
                return;
            }
            let index = self.settle_next;
            self.settle_next += 1;
            let Some(entry) = self.manifest.get(index) else {
                return;
            };
            match entry.kind {
                EntryKind::Directory => {
                    self.out.disk(DiskCommand::CreateDir { entry: index });
                    self.entries[index].status = FileStatus::Completed;
                    self.committed += 1;
                }
                EntryKind::File if self.entries[index].verified == entry.size => {
                    // Complete here and accepted by the sender (an empty file is trivially
                    // complete, unless the manifest promises other content).
                    let state = &mut self.entries[index];
                    let empty: [u8; 32] = Sha256::digest([]).into();
                    if entry.size == 0 && entry.sha256.is_some_and(|h| h != empty) {
                        state.status = FileStatus::Failed;
                        self.failed += 1;
                        self.out.event(TransferEvent::FileFailed {
                            entry: index,
                            reason: FileFailure::HashMismatch { attempts: 1 },
                        });
                        continue;
                    }
                    state.status = FileStatus::Completed;
                    self.committed += 1;
                    self.out.disk(DiskCommand::Commit { entry: index });
                    self.out.event(TransferEvent::FileDone { entry: index });
                }
                EntryKind::File => {}
            }
        }
        self.phase = Phase::Streaming;
    }

    // ------------------------------------------------------------ stream

    fn on_layout(&mut self, now: Timestamp, layout: &Layout<'_>) -> Result<(), TransferError> {
        if !matches!(self.phase, Phase::Settling | Phase::Streaming) || self.awaiting_adv.is_some()
        {
            return Err(protocol("a segment layout out of order"));
        }
        let slot_index = self
            .slots
            .iter()
            .position(|s| s.state == SlotState::Free)
            .ok_or(protocol("more segments in flight than agreed"))?;
        let mut slot = std::mem::take(&mut self.slots[slot_index].extents);
        slot.clear();
        self.slots[slot_index].digests.clear();
        let mut fill = 0usize;
        for extent in layout.extents() {
            let entry = self
                .manifest
                .get(extent.entry as usize)
                .ok_or(protocol("a layout names an unknown entry"))?;
            let state = &mut self.entries[extent.entry as usize];
            let end = extent
                .offset
                .checked_add(u64::from(extent.len))
                .ok_or(protocol("a layout extent overflows"))?;
            let expected = match self.cursor {
                Some((e, a, next)) if e == extent.entry && a == extent.attempt => next,
                _ => state.verified,
            };
            if entry.kind != EntryKind::File
                || state.status != FileStatus::InProgress
                || state.ended
                || extent.attempt != state.attempt
                || extent.offset != expected
                || extent.len == 0
                || end > entry.size
            {
                return Err(protocol(
                    "a layout extent out of order, out of range, or for a finished file",
                ));
            }
            if extent.attempt > 1 && !state.updated {
                return Err(protocol("an attempt sent again without its update"));
            }
            if fill + extent.len as usize > self.config.segment_size {
                return Err(protocol("a layout larger than the segment size"));
            }
            self.cursor = Some((extent.entry, extent.attempt, end));
            state.ended = end == entry.size;
            slot.push((extent, fill));
            fill += extent.len as usize;
        }
        for digest in layout.digests() {
            let ends_here = slot.iter().any(|(e, _)| {
                e.entry == digest.entry
                    && e.attempt == digest.attempt
                    && e.offset + u64::from(e.len) == self.size(e.entry)
            });
            if !ends_here {
                return Err(protocol(
                    "a file digest in a segment where that file does not end",
                ));
            }
            self.slots[slot_index].digests.push(digest);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let target = &mut self.slots[slot_index];
        target.extents = slot;
        target.len = fill;
        target.hash = layout.hash;
        target.seq = seq;
        target.state = SlotState::Layout;
        self.awaiting_adv = Some(slot_index);
        self.arm_stall(now);
        Ok(())
    }

    fn on_advertisement(
        &mut self,
        now: Timestamp,
        adv: &Advertisement<'_>,
    ) -> Result<(), TransferError> {
        let slot_index = self
            .awaiting_adv
            .take()
            .ok_or(protocol("an advertisement without a layout"))?;
        let max_parts = self.config.segment_size.div_ceil(self.part_size);
        let slot = &mut self.slots[slot_index];
        let transfer = usize::try_from(adv.transfer_size).unwrap_or(usize::MAX);
        if adv.hash != slot.hash {
            return Err(protocol(
                "an advertisement for another resource than its layout",
            ));
        }
        if (adv.is_compressed() && transfer >= slot.len)
            || (!adv.is_compressed() && transfer != slot.len)
        {
            return Err(protocol(
                "an advertised transfer size that does not match the layout",
            ));
        }
        let parts = transfer.div_ceil(self.part_size);
        if adv.parts != parts as u64
            || parts == 0
            || parts > max_parts
            || adv.hashmap.len() / MAP_HASH_LEN > parts
        {
            return Err(protocol(
                "an advertised part count that does not match the transfer size",
            ));
        }
        slot.segment_index = adv.segment_index;
        slot.transfer_len = transfer;
        slot.compressed = adv.is_compressed();
        slot.random = adv.random_hash;
        slot.parts = parts;
        slot.per_message = adv.hashmap.len() / MAP_HASH_LEN;
        if slot.per_message == 0 {
            return Err(protocol("an advertisement without map hashes"));
        }
        slot.hashmap.clear();
        slot.hashmap.extend(
            adv.hashmap
                .chunks_exact(MAP_HASH_LEN)
                .map(|h| [h[0], h[1], h[2], h[3]]),
        );
        slot.received.clear();
        slot.received.resize(parts, false);
        slot.received_count = 0;
        slot.next_request = 0;
        slot.waiting_hmu = false;
        slot.state = SlotState::Receiving;
        self.arm_stall(now);
        Ok(())
    }

    fn on_hashmap_update(
        &mut self,
        now: Timestamp,
        update: &HashmapUpdate<'_>,
    ) -> Result<(), TransferError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.state == SlotState::Receiving && s.hash == update.resource_hash)
            .ok_or(protocol("a hashmap update for an unknown resource"))?;
        let start = usize::try_from(update.segment)
            .ok()
            .and_then(|segment| segment.checked_mul(slot.per_message))
            .ok_or(protocol("a hashmap update beyond the hashmap"))?;
        let count = update.hashmap.len() / MAP_HASH_LEN;
        if !slot.waiting_hmu
            || start != slot.hashmap.len()
            || count == 0
            || count > slot.per_message
            || start + count > slot.parts
        {
            return Err(protocol(
                "a hashmap update that does not continue the hashmap",
            ));
        }
        slot.hashmap.extend(
            update
                .hashmap
                .chunks_exact(MAP_HASH_LEN)
                .map(|h| [h[0], h[1], h[2], h[3]]),
        );
        slot.waiting_hmu = false;
        self.arm_stall(now);
        Ok(())
    }

    fn on_part(
        &mut self,
        now: Timestamp,
        hash: [u8; 32],
        index: u32,
        data: &[u8],
    ) -> Result<(), TransferError> {
        let part_size = self.part_size;
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.state == SlotState::Receiving && s.hash == hash)
            .ok_or(protocol("a part for a resource that is not being received"))?;
        let index = index as usize;
        if index >= slot.next_request
            || slot.received[index]
            || data.len() != slot.part_len(index, part_size)
        {
            return Err(protocol(
                "a part that was not requested, is repeated, or has the wrong length",
            ));
        }
        let at = index * part_size;
        slot.buf[at..at + data.len()].copy_from_slice(data);
        slot.received[index] = true;
        slot.received_count += 1;
        self.outstanding = self.outstanding.saturating_sub(data.len());
        // Slow start: each part received lets one more part's worth be in flight.
        let max_window = self.config.segments_in_flight * self.config.segment_size;
        self.window = (self.window + data.len()).min(max_window);
        if slot.received_count == slot.parts {
            let index = self
                .slots
                .iter()
                .position(|s| s.hash == hash && s.state == SlotState::Receiving);
            if let Some(index) = index {
                self.complete_slot(index)?;
            }
        }
        self.arm_stall(now);
        Ok(())
    }

    /// All parts are in: decompress (capped at the layout's size). The hash is checked
    /// when the segment's turn comes in stream order, since it binds the file hashes.
    fn complete_slot(&mut self, index: usize) -> Result<(), TransferError> {
        let slot = &mut self.slots[index];
        if slot.compressed {
            let produced = decompress(
                &slot.buf[..slot.transfer_len],
                &mut self.scratch[..slot.len],
            );
            match produced {
                Decompressed::Exactly => {
                    slot.buf[..slot.len].copy_from_slice(&self.scratch[..slot.len])
                }
                Decompressed::TooMuch => {
                    return Err(TransferError::DecompressionBomb {
                        segment: slot.segment_index,
                        limit: slot.len as u64,
                    });
                }
                Decompressed::Invalid => {
                    return Err(TransferError::SegmentCorrupt(slot.segment_index));
                }
            }
        }
        slot.state = SlotState::Complete;
        Ok(())
    }

    fn pump_requests(&mut self, channel: &mut Channel) {
        let part_size = self.part_size;
        let max_hashes = (channel.max_message_len().saturating_sub(64) / MAP_HASH_LEN).max(1);
        loop {
            // The oldest segment with something left to ask for.
            let Some(slot_index) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.state == SlotState::Receiving && s.next_request < s.parts && !s.waiting_hmu
                })
                .min_by_key(|(_, s)| s.seq)
                .map(|(i, _)| i)
            else {
                return;
            };
            let slot = &mut self.slots[slot_index];
            self.request_buf.clear();
            let mut index = slot.next_request;
            let mut bytes = 0;
            while index < slot.parts
                && index < slot.hashmap.len()
                && self.request_buf.len() / MAP_HASH_LEN < max_hashes
            {
                let len = slot.part_len(index, part_size);
                if self.outstanding + bytes + len > self.window && bytes > 0 {
                    break;
                }
                if self.outstanding + len > self.window && bytes == 0 && self.outstanding > 0 {
                    break;
                }
                self.request_buf.extend_from_slice(&slot.hashmap[index]);
                bytes += len;
                index += 1;
            }
            let exhausted = index < slot.parts && index == slot.hashmap.len();
            if self.request_buf.is_empty() && !exhausted {
                return;
            }
            let request = Request {
                exhausted: exhausted.then(|| slot.hashmap[slot.hashmap.len() - 1]),
                resource_hash: slot.hash,
                map_hashes: &self.request_buf,
            };
            let request = Message::Req(request);
            if channel.send_capacity() < sealed_len(request.encoded_len())
                || wire::send(channel, &request).is_err()
            {
                return;
            }
            slot.next_request = index;
            slot.waiting_hmu = exhausted;
            self.outstanding += bytes;
            if !exhausted && index < slot.parts {
                // The window is full.
                return;
            }
        }
    }

    /// Checks and writes the oldest complete segment, in stream order, one segment at a
    /// time: file hashes advance with the data, the segment hash is checked over them
    /// before anything of the segment is written, and each file's verdict is known when
    /// its last extent is written.
    fn process_segments(&mut self) -> Result<(), TransferError> {
        if self.phase != Phase::Streaming
            || self.slots.iter().any(|s| s.state == SlotState::Writing)
        {
            return Ok(());
        }
        let Some(slot_index) = self
            .slots
            .iter()
            .position(|s| s.state == SlotState::Complete && s.seq == self.next_process)
        else {
            return Ok(());
        };
        let extents = self.slots[slot_index].extents.len();
        // Room for its writes, the events they may bring, and the verdicts and progress
        // the last one brings.
        if !self.out.has_room(2 * extents + 2, 2 * extents + 2) {
            return Ok(());
        }
        let mut slot = core::mem::replace(&mut self.slots[slot_index], RecvSlot::placeholder());
        let verified = self.verify_segment(&mut slot);
        if verified.is_ok() {
            let mut writes = 0;
            for (k, (extent, _)) in slot.extents.iter().enumerate() {
                // The pieces of an attempt the sender abandoned since (or of a file that
                // failed) are checked with the segment but never written.
                if !self.is_current(extent) {
                    continue;
                }
                self.out.disk(DiskCommand::Write {
                    id: slot_io(slot_index, k),
                    entry: extent.entry as usize,
                    offset: extent.offset,
                    len: extent.len as usize,
                });
                writes += 1;
            }
            slot.writes_outstanding = writes;
            slot.state = SlotState::Writing;
            self.next_process += 1;
            self.slots[slot_index] = slot;
            if writes == 0 {
                self.finish_slot(slot_index);
            }
            return Ok(());
        }
        self.slots[slot_index] = slot;
        verified
    }

    /// Passes a segment's pieces through the file hashes, checks its hash `h` and keeps
    /// its proof, and decides each file that ends in it.
    fn verify_segment(&mut self, slot: &mut RecvSlot) -> Result<(), TransferError> {
        let mut segment = SegmentHasher::new();
        slot.results.clear();
        slot.prefixes.clear();
        for (extent, at) in &slot.extents {
            let data = &slot.buf[*at..*at + extent.len as usize];
            let entry = extent.entry;
            let size = self.size(entry);
            let piece = self.hashes.absorb(&mut segment, extent, data, size)?;
            slot.prefixes.push(piece.prefix);
            if !piece.ends_file || !self.is_current(extent) {
                continue;
            }
            let ours = piece.prefix;
            // A hash the manifest promised binds every attempt until the sender announces
            // the file with another size or mtime (UPDATE): the batch the user accepted is
            // the batch that arrives, whatever digest a sender claims for other bytes.
            let as_promised = self
                .manifest
                .get(entry as usize)
                .and_then(|e| e.sha256)
                .is_none_or(|promised| promised == ours);
            let digest = slot
                .digests
                .iter()
                .find(|d| d.entry == entry && d.attempt == extent.attempt)
                .copied();
            let verdict = match digest {
                _ if self.skip_verification => Outcome::Commit,
                Some(d)
                    if d.attempt == extent.attempt
                        && !d.changed
                        && d.sha256 == ours
                        && as_promised =>
                {
                    Outcome::Commit
                }
                Some(d)
                    if d.attempt == extent.attempt && extent.attempt < self.config.max_attempts =>
                {
                    Outcome::Retry
                }
                Some(d) if d.attempt == extent.attempt => {
                    Outcome::Fail(FileFailure::HashMismatch {
                        attempts: extent.attempt,
                    })
                }
                _ => return Err(protocol("a file ended without the sender's digest")),
            };
            slot.results.push((entry, verdict));
        }
        let (hash, proof) = segment.finish(&slot.random);
        if hash != slot.hash {
            return Err(TransferError::SegmentCorrupt(slot.segment_index));
        }
        slot.proof = proof;
        Ok(())
    }

    fn write_done(&mut self, id: IoId, result: Result<(), DiskError>) -> Result<(), TransferError> {
        let (slot_index, extent) =
            split_io(id).ok_or(protocol("driver reported an unknown write"))?;
        let slot = self
            .slots
            .get_mut(slot_index)
            .filter(|s| s.state == SlotState::Writing)
            .ok_or(protocol("driver reported an unknown write"))?;
        let (ext, _) = *slot
            .extents
            .get(extent)
            .ok_or(protocol("driver reported an unknown write"))?;
        if let Err(error) = result {
            return Err(TransferError::Disk {
                op: "writing",
                path: self.path(ext.entry),
                error,
            });
        }
        slot.writes_outstanding = slot.writes_outstanding.saturating_sub(1);
        let state = &mut self.entries[ext.entry as usize];
        let end = ext.offset + u64::from(ext.len);
        // A write of an attempt abandoned while it was under way counts for nothing.
        let current = state.status == FileStatus::InProgress && state.attempt == ext.attempt;
        if current && end > state.verified {
            state.verified = end;
            if let Some(prefix) = slot.prefixes.get(extent) {
                self.partial_hashes.insert(ext.entry, *prefix);
            }
        }
        if slot.writes_outstanding == 0 {
            self.finish_slot(slot_index);
        }
        Ok(())
    }

    /// A segment is on disk: commit, retry or fail the files that ended in it, prove it,
    /// and checkpoint when enough has been written.
    fn finish_slot(&mut self, slot_index: usize) {
        let mut slot = core::mem::replace(&mut self.slots[slot_index], RecvSlot::placeholder());
        for (entry, outcome) in slot.results.drain(..) {
            self.resolve(entry as usize, outcome);
        }
        for &(extent, _) in &slot.extents {
            self.mark_changed(extent.entry as usize);
        }
        self.proofs_due.push_back(Proof {
            resource_hash: slot.hash,
            proof: slot.proof,
        });
        self.bytes_done += slot.len as u64;
        self.since_checkpoint += slot.len as u64;
        self.checkpoint_due.get_or_insert(
            self.last_now
                .saturating_add(self.config.checkpoint_interval),
        );
        self.out.event(TransferEvent::Progress {
            bytes: self.bytes_done,
        });
        slot.state = SlotState::Free;
        self.slots[slot_index] = slot;
        if self.since_checkpoint >= self.config.checkpoint_bytes {
            self.checkpoint();
        }
    }

    /// True if `extent` belongs to the attempt its file is on now (not one abandoned
    /// since, nor a file that failed).
    fn is_current(&self, extent: &Extent) -> bool {
        self.entries
            .get(extent.entry as usize)
            .is_some_and(|s| s.status == FileStatus::InProgress && s.attempt == extent.attempt)
    }

    /// Carries out the verdict on a file whose attempt ended: commit it, ask for it again,
    /// or give it up.
    fn resolve(&mut self, index: usize, outcome: Outcome) {
        self.mark_changed(index);
        self.partial_hashes.remove(&(index as u32));
        if self.cursor.is_some_and(|(e, _, _)| e as usize == index) {
            self.cursor = None;
        }
        let state = &mut self.entries[index];
        match outcome {
            Outcome::Commit => {
                state.status = FileStatus::Completed;
                self.committed += 1;
                self.unresolved -= 1;
                self.out.disk(DiskCommand::Commit { entry: index });
                self.out.event(TransferEvent::FileDone { entry: index });
            }
            Outcome::Retry => {
                state.attempt += 1;
                state.verified = 0;
                state.ended = false;
                state.updated = false;
                self.retries_due.push_back((index as u32, state.attempt));
                self.out.disk(DiskCommand::Discard { entry: index });
                self.out.event(TransferEvent::FileRetry {
                    entry: index,
                    attempt: state.attempt,
                });
            }
            Outcome::Fail(reason) => {
                state.status = FileStatus::Failed;
                state.verified = 0;
                self.failed += 1;
                self.unresolved -= 1;
                self.out.disk(DiskCommand::Discard { entry: index });
                self.out.event(TransferEvent::FileFailed {
                    entry: index,
                    reason,
                });
            }
        }
    }

    /// UPDATE: a file the sender is about to send again, as it finds it now. The new size
    /// and mtime replace the manifest's; if either differs, the manifest's hash no longer
    /// binds.
    fn on_update(&mut self, now: Timestamp, update: Update) -> Result<(), TransferError> {
        let index = update.entry as usize;
        let state = self
            .entries
            .get_mut(index)
            .ok_or(protocol("an update for an unknown entry"))?;
        let started = self
            .cursor
            .is_some_and(|(e, a, _)| e == update.entry && a == update.attempt);
        if !matches!(self.phase, Phase::Streaming)
            || state.status != FileStatus::InProgress
            || update.attempt < 2
            || update.attempt != state.attempt
            || state.updated
            || state.verified != 0
            || started
        {
            return Err(protocol(
                "an update that does not answer the retry of a file in progress",
            ));
        }
        state.updated = true;
        self.manifest
            .set_file_meta(index, update.size, update.mtime)?;
        if update.size == 0 {
            // Nothing of it will be sent: it is complete as it is.
            self.resolve(index, Outcome::Commit);
        }
        self.arm_stall(now);
        Ok(())
    }

    /// ABANDON: the sender ends an attempt early, because the file changed while it was
    /// read (ask again, while attempts remain) or because it cannot read it (the file
    /// fails now, with the sender's reason).
    fn on_abandon(&mut self, now: Timestamp, abandon: Abandon) -> Result<(), TransferError> {
        let index = abandon.entry as usize;
        let state = self
            .entries
            .get(index)
            .ok_or(protocol("an abandon for an unknown entry"))?;
        // An attempt whose last piece was laid out is over: there is nothing to abandon.
        if !matches!(self.phase, Phase::Streaming)
            || state.status != FileStatus::InProgress
            || abandon.attempt != state.attempt
            || state.ended
        {
            return Err(protocol("an abandon for an attempt that is not under way"));
        }
        let attempts = state.attempt;
        let outcome = match abandon.trouble {
            Trouble::Changed if attempts < self.config.max_attempts => Outcome::Retry,
            Trouble::Changed => Outcome::Fail(FileFailure::KeptChanging { attempts }),
            Trouble::Unreadable(cause) => Outcome::Fail(FileFailure::Unreadable { cause }),
        };
        self.resolve(index, outcome);
        self.arm_stall(now);
        Ok(())
    }

    fn checkpoint(&mut self) {
        if let Some(changed) = self.changed.take() {
            self.out.disk(DiskCommand::Checkpoint { changed });
        }
        self.since_checkpoint = 0;
        self.checkpoint_due = None;
    }

    fn pump_control(&mut self, channel: &mut Channel) {
        while let Some(&proof) = self.proofs_due.front() {
            let proof = Message::Prf(proof);
            if channel.send_capacity() < sealed_len(proof.encoded_len())
                || wire::send(channel, &proof).is_err()
            {
                return;
            }
            self.proofs_due.pop_front();
        }
        while let Some(&(entry, attempt)) = self.retries_due.front() {
            if wire::send(channel, &Message::Retry { entry, attempt }).is_err() {
                return;
            }
            self.retries_due.pop_front();
        }
    }

    fn pump_finish(&mut self, channel: &mut Channel) {
        let idle = self.slots.iter().all(|s| s.state == SlotState::Free);
        if self.phase != Phase::Streaming
            || self.unresolved > 0
            || !idle
            || self.done_sent
            || !self.proofs_due.is_empty()
            || !self.out.has_room(1, 1)
        {
            return;
        }
        let done = Message::Done {
            committed: self.committed,
            failed: self.failed,
        };
        if wire::send(channel, &done).is_err() {
            return;
        }
        self.done_sent = true;
        self.checkpoint();
        let _ = channel.close();
        self.phase = Phase::Finished;
        self.stall = None;
        self.out.event(TransferEvent::Finished {
            committed: self.committed,
            failed: self.failed,
        });
    }

    fn progress(&self, entry: usize) -> Option<FileProgress> {
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
}

impl RecvSlot {
    fn placeholder() -> Self {
        RecvSlot {
            state: SlotState::Free,
            seq: 0,
            segment_index: 0,
            buf: Vec::new(),
            len: 0,
            transfer_len: 0,
            compressed: false,
            extents: Vec::new(),
            hash: [0; 32],
            random: [0; 4],
            proof: [0; 32],
            parts: 0,
            per_message: 0,
            hashmap: Vec::new(),
            received: Vec::new(),
            received_count: 0,
            next_request: 0,
            waiting_hmu: false,
            writes_outstanding: 0,
            results: Vec::new(),
            digests: Vec::new(),
            prefixes: Vec::new(),
        }
    }
}

enum Decompressed {
    Exactly,
    TooMuch,
    Invalid,
}

/// bz2-decompresses `data` into `out`, whose length is the exact size the layout
/// promises: more output than that is a bomb, less or a broken stream is corruption.
fn decompress(data: &[u8], out: &mut [u8]) -> Decompressed {
    use bzip2::{Decompress, Status};
    let mut decompressor = Decompress::new(true);
    match decompressor.decompress(data, out) {
        Ok(Status::StreamEnd) if decompressor.total_out() as usize == out.len() => {
            Decompressed::Exactly
        }
        Ok(Status::StreamEnd) => Decompressed::Invalid,
        Ok(_) if decompressor.total_out() as usize == out.len() => {
            // The output is full but the stream has not ended: it wants to produce more.
            let mut probe = [0u8; 1];
            match decompressor.decompress(&data[decompressor.total_in() as usize..], &mut probe) {
                Ok(Status::StreamEnd) if decompressor.total_out() as usize == out.len() => {
                    Decompressed::Exactly
                }
                Ok(_) if decompressor.total_out() as usize > out.len() => Decompressed::TooMuch,
                _ => Decompressed::Invalid,
            }
        }
        _ => Decompressed::Invalid,
    }
}

impl Engine for ReceiverEngine {
    fn established(&mut self, now: Timestamp) -> Result<(), TransferError> {
        self.phase = Phase::Manifest;
        self.out.event(TransferEvent::Connected);
        self.arm_stall(now);
        Ok(())
    }

    fn message(&mut self, now: Timestamp, message: Message<'_>) -> Result<(), TransferError> {
        match message {
            Message::ManifestBegin(begin) => self.on_manifest_begin(now, begin),
            Message::ManifestEntries(entries) => self.on_manifest_entries(now, &entries),
            Message::PlanResult(result) => self.on_plan_result(now, &result),
            Message::Layout(layout) => self.on_layout(now, &layout),
            Message::Adv(adv) => self.on_advertisement(now, &adv),
            Message::Hmu(update) => self.on_hashmap_update(now, &update),
            Message::Part { hash, index, data } => self.on_part(now, hash, index, data),
            Message::Update(update) => self.on_update(now, update),
            Message::Abandon(abandon) => self.on_abandon(now, abandon),
            // The sender cancels a segment only right before CANCEL, which carries the
            // reason; nothing is undone here, so no state can be corrupted by it.
            Message::Icl(_) => Ok(()),
            Message::Cancel(reason) => Err(TransferError::Cancelled {
                by_peer: true,
                reason: wire::shown_reason(reason),
            }),
            _ => Err(protocol("a message the receiver does not expect here")),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_extents: self.config.max_extents_per_segment,
            max_parts: self.config.segment_size.div_ceil(self.part_size),
        }
    }

    fn pump(&mut self, channel: &mut Channel, now: Timestamp) -> Result<(), TransferError> {
        self.last_now = now;
        if self.checkpoint_due.is_some_and(|due| due <= now) && self.out.has_room(1, 0) {
            self.checkpoint();
        }
        match self.phase {
            Phase::Verifying => self.pump_verify(),
            Phase::Settling => self.pump_settle(),
            _ => {}
        }
        if self.phase == Phase::Planning {
            self.pump_plan(channel, now);
        }
        if matches!(self.phase, Phase::Settling | Phase::Streaming) {
            self.pump_requests(channel);
            self.process_segments()?;
            self.pump_control(channel);
            self.pump_finish(channel);
        }
        Ok(())
    }

    fn input_blocked(&self, channel: &Channel) -> bool {
        short_of_room(channel)
            || !self
                .out
                .has_room(2, self.config.max_extents_per_segment + 4)
    }

    fn deadline(&self) -> Option<Timestamp> {
        self.stall
    }

    fn wake_at(&self) -> Option<Timestamp> {
        self.checkpoint_due
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
        let receiving = self
            .slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Receiving | SlotState::Complete))
            .map(|s| &s.hash);
        send_cancels(channel, Message::Rcl, receiving);
    }
}
