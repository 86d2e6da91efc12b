//! What the sender and receiver sessions share: the shell that drives a channel and an
//! engine, bounded output queues, prefix hashing for resume, and I/O ids.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

use crate::channel::{Channel, Event};
use crate::record::sealed_len;
use crate::resource::SegmentHasher;
use crate::time::Timestamp;
use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::session::Output;
use crate::transfer::wire::bodies::{EXTENT_LEN, encode_extent};
use crate::transfer::wire::{self, Extent, Limits, Message};
use crate::transfer::{DiskCommand, DiskError, IoId, TransferError, TransferEvent};

/// An I/O id for the prefix-verification read (one at a time per session).
pub(crate) const VERIFY_READ: IoId = IoId(1 << 31);

/// The id of a read or write of extent `extent` in segment slot `slot`.
pub(crate) fn slot_io(slot: usize, extent: usize) -> IoId {
    IoId(((slot as u32) << 20) | extent as u32)
}

/// The slot and extent of a slot I/O id, if it is one.
pub(crate) fn split_io(id: IoId) -> Option<(usize, usize)> {
    (id.0 & VERIFY_READ.0 == 0).then_some(((id.0 >> 20) as usize, (id.0 & 0xf_ffff) as usize))
}

/// Events and disk commands for the driver, in queues whose capacities are fixed when the
/// session is built. No event is ever dropped: work that produces output first asks
/// [`Outputs::has_room`] (the one place room is reserved), which also keeps room for the
/// event each disk command given out may bring when it completes. Progress events
/// replace the one queued just before them rather than taking more room.
pub(crate) struct Outputs {
    events: VecDeque<TransferEvent>,
    disk: VecDeque<DiskCommand>,
    event_capacity: usize,
    disk_capacity: usize,
    /// Disk commands given out and not yet completed: each may bring one event.
    pending: usize,
}

impl Outputs {
    pub(crate) fn new(events: usize, disk: usize) -> Self {
        Outputs {
            events: VecDeque::with_capacity(events),
            disk: VecDeque::with_capacity(disk),
            event_capacity: events,
            disk_capacity: disk,
            pending: 0,
        }
    }

    /// True if `disk` more commands and `events` more events fit, beside the events the
    /// commands already given out may bring.
    pub(crate) fn has_room(&self, disk: usize, events: usize) -> bool {
        self.disk.len() + disk <= self.disk_capacity
            && self.events.len() + self.pending + events <= self.event_capacity
    }

    pub(crate) fn event(&mut self, event: TransferEvent) {
        use TransferEvent::{Progress, ResumeCheck};
        if let Some(last) = self.events.back_mut()
            && matches!(
                (&*last, &event),
                (Progress { .. }, Progress { .. }) | (ResumeCheck { .. }, ResumeCheck { .. })
            )
        {
            *last = event;
            return;
        }
        debug_assert!(
            self.events.len() < self.event_capacity,
            "event queue over its bound"
        );
        self.events.push_back(event);
    }

    pub(crate) fn disk(&mut self, command: DiskCommand) {
        debug_assert!(
            self.disk.len() < self.disk_capacity,
            "disk queue over its bound"
        );
        if brings_event(&command) {
            self.pending += 1;
        }
        self.disk.push_back(command);
    }

    /// A disk command given out has been carried out: the room kept for its event is
    /// free for the event, if it brings one.
    pub(crate) fn completed(&mut self, command: &DiskCommand) {
        if brings_event(command) {
            self.pending = self.pending.saturating_sub(1);
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<TransferEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_disk(&mut self) -> Option<DiskCommand> {
        self.disk.pop_front()
    }
}

/// True for the disk commands whose completion may bring an event (a read's progress or
/// failure, a write that finishes a segment, a reopen that fails).
fn brings_event(command: &DiskCommand) -> bool {
    matches!(
        command,
        DiskCommand::Read { .. } | DiskCommand::Write { .. } | DiskCommand::Reopen { .. }
    )
}

/// A finished prefix check: the entry, the bytes checked, and the hash state after them
/// with its digest (`None` when the file was shorter or could not be read).
pub(crate) struct Verified {
    pub(crate) entry: u32,
    pub(crate) target: u64,
    pub(crate) result: Option<(Sha256, [u8; 32])>,
}

/// Hashes the first bytes of local files through reads the driver performs, one read at
/// a time into one buffer: how each side checks a resume claim.
pub(crate) struct Verifier {
    buf: Vec<u8>,
    job: Option<(u32, u64, u64, Sha256)>,
    reading: Option<usize>,
    failed: bool,
    /// Bytes read and hashed so far, and to read in all (for progress).
    checked: u64,
    total: u64,
}

impl Verifier {
    pub(crate) fn new(chunk: usize) -> Self {
        Verifier {
            buf: vec![0; chunk],
            job: None,
            reading: None,
            failed: false,
            checked: 0,
            total: 0,
        }
    }

    /// Sets how many bytes all the checks to come will read.
    pub(crate) fn expect(&mut self, total: u64) {
        self.total = total;
    }

    /// The progress event for the checks so far.
    pub(crate) fn progress(&self) -> TransferEvent {
        TransferEvent::ResumeCheck {
            checked: self.checked,
            total: self.total.max(self.checked),
        }
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    /// Starts hashing the first `target` bytes of `entry`.
    pub(crate) fn start(&mut self, entry: u32, target: u64) {
        self.job = Some((entry, target, 0, Sha256::new()));
        self.reading = None;
        self.failed = false;
    }

    /// Issues the next read when one is due (and the disk queue has room); returns the
    /// job once it is complete.
    pub(crate) fn poll(&mut self, out: &mut Outputs) -> Option<Verified> {
        let (entry, target, done, _) = self.job.as_ref()?;
        let (entry, target, done) = (*entry, *target, *done);
        if self.failed || done == target {
            let (_, _, _, hasher) = self.job.take()?;
            let result = (!self.failed).then(|| {
                let digest = hasher.clone().finalize().into();
                (hasher, digest)
            });
            return Some(Verified {
                entry,
                target,
                result,
            });
        }
        if self.reading.is_none() && out.has_room(1, 1) {
            let len = (target - done).min(self.buf.len() as u64) as usize;
            self.reading = Some(len);
            out.disk(DiskCommand::Read {
                id: VERIFY_READ,
                entry: entry as usize,
                offset: done,
                len,
            });
        }
        None
    }

    /// Where the driver puts the bytes of the outstanding read.
    pub(crate) fn buffer(&mut self) -> &mut [u8] {
        let len = self.reading.unwrap_or(0);
        &mut self.buf[..len]
    }

    /// The outstanding read finished.
    pub(crate) fn read_done(
        &mut self,
        result: Result<usize, DiskError>,
    ) -> Result<(), TransferError> {
        let (Some(wanted), Some((_, _, done, hasher))) = (self.reading.take(), self.job.as_mut())
        else {
            return Err(TransferError::Protocol("driver reported an unknown read"));
        };
        match result {
            Ok(n) if n == wanted => {
                hasher.update(&self.buf[..n]);
                *done += n as u64;
                self.checked += n as u64;
            }
            _ => self.failed = true,
        }
        Ok(())
    }
}

/// The slowest rate, in bytes per second, at which a peer may re-read and hash the files
/// a resume plan names before its answer is overdue (PROTOCOL.md §6.5).
pub const SLOWEST_REREAD: u64 = 8 << 20;

/// How long to wait for a peer that first re-reads `bytes`: the stall timeout plus that
/// re-read at [`SLOWEST_REREAD`]. Every wait has a bound, even this one.
pub(crate) fn reread_allowance(
    stall_timeout: core::time::Duration,
    bytes: u64,
) -> core::time::Duration {
    stall_timeout.saturating_add(core::time::Duration::from_secs(bytes / SLOWEST_REREAD))
}

/// What the plan settled on, counted the same way on both sides: `start(index)` is where
/// each file's data begins in the stream (its verified resume offset).
pub(crate) fn plan_settled(manifest: &Manifest, start: impl Fn(usize) -> u64) -> TransferEvent {
    let (mut skipped, mut resumed, mut fresh, mut present, mut to_send) = (0, 0, 0, 0u64, 0u64);
    for (index, entry) in manifest.iter().enumerate() {
        if entry.kind != EntryKind::File {
            continue;
        }
        let start = start(index);
        present += start;
        to_send += entry.size - start;
        match start {
            0 => fresh += 1,
            s if s == entry.size => skipped += 1,
            _ => resumed += 1,
        }
    }
    TransferEvent::PlanSettled {
        skipped,
        resumed,
        fresh,
        bytes_present: present,
        bytes_to_send: to_send,
    }
}

/// The SHA-256 of a file's bytes up to the end of one piece of a segment.
pub(crate) struct PieceDigest {
    pub(crate) prefix: [u8; 32],
    /// The piece ends the file: `prefix` is the file's digest.
    pub(crate) ends_file: bool,
}

/// The running SHA-256 of the file whose bytes are passing in stream order, and the
/// states left after the verified prefixes of resumed files (each continues from there).
#[derive(Default)]
pub(crate) struct FileHashes {
    current: Option<(u32, u8, Sha256)>,
    resumed: Vec<(u32, Sha256)>,
}

impl FileHashes {
    /// Keeps the state after a verified prefix of `entry`, for when its data arrives.
    pub(crate) fn resume_from(&mut self, entry: u32, prefix: Sha256) {
        self.resumed.push((entry, prefix));
    }

    /// Forgets a prefix that will not be used (its claim was rejected).
    pub(crate) fn drop_resumed(&mut self, entry: u32) {
        self.resumed.retain(|(e, _)| *e != entry);
    }

    /// One piece of a segment passes, in stream order: its file's hash advances over
    /// `data`, and `segment` absorbs the piece (its extent and the SHA-256 of the file's
    /// bytes up to the piece's end, PROTOCOL.md §6.3). This is the only pass either side
    /// makes over the data with SHA-256.
    pub(crate) fn absorb(
        &mut self,
        segment: &mut SegmentHasher,
        extent: &Extent,
        data: &[u8],
        size: u64,
    ) -> Result<PieceDigest, TransferError> {
        let Extent {
            entry,
            attempt,
            offset,
            ..
        } = *extent;
        let mut hasher = match self.current.take() {
            Some((e, a, hasher)) if e == entry && a == attempt => hasher,
            _ if offset == 0 => Sha256::new(),
            _ => match self.resumed.iter().position(|(e, _)| *e == entry) {
                Some(at) => self.resumed.swap_remove(at).1,
                None => {
                    return Err(TransferError::Protocol(
                        "a file resumed at an offset the plan did not settle",
                    ));
                }
            },
        };
        hasher.update(data);
        let ends_file = offset + data.len() as u64 == size;
        let prefix: [u8; 32] = if ends_file {
            hasher.finalize().into()
        } else {
            let prefix = hasher.clone().finalize().into();
            self.current = Some((entry, attempt, hasher));
            prefix
        };
        let mut piece = [0u8; EXTENT_LEN + 32];
        encode_extent(&mut piece[..EXTENT_LEN], extent);
        piece[EXTENT_LEN..].copy_from_slice(&prefix);
        segment.update(&piece);
        Ok(PieceDigest { prefix, ends_file })
    }
}

/// The role-specific half of a session.
pub(crate) trait Engine {
    /// The handshake completed.
    fn established(&mut self, now: Timestamp) -> Result<(), TransferError>;
    /// One transfer message arrived.
    fn message(&mut self, now: Timestamp, message: Message<'_>) -> Result<(), TransferError>;
    /// What a message to this engine may hold at most.
    fn limits(&self) -> Limits;
    /// Sends whatever is due, as far as the channel has room.
    fn pump(&mut self, channel: &mut Channel, now: Timestamp) -> Result<(), TransferError>;
    /// True when the engine cannot take another message until the driver drains it.
    fn input_blocked(&self, channel: &Channel) -> bool;
    /// When the engine gives up waiting for the peer.
    fn deadline(&self) -> Option<Timestamp>;
    /// How long it waits (for the error message).
    fn stall_timeout(&self) -> core::time::Duration;
    /// When the engine has something of its own to do (a checkpoint), if it does.
    fn wake_at(&self) -> Option<Timestamp> {
        None
    }
    /// The batch is finished: a close from the peer is expected now.
    fn finished(&self) -> bool;
    /// The session is ending early: cancel every Resource in flight (ICL from the
    /// sender, RCL from the receiver), as RNS does.
    fn cancel_resources(&mut self, channel: &mut Channel);
    /// The engine's output queues.
    fn outputs(&mut self) -> &mut Outputs;
}

/// Sends one cancel (ICL or RCL, as `cancel` makes it) for each resource hash.
pub(crate) fn send_cancels<'a>(
    channel: &mut Channel,
    cancel: fn([u8; 32]) -> Message<'static>,
    hashes: impl Iterator<Item = &'a [u8; 32]>,
) {
    for hash in hashes {
        let _ = wire::send(channel, &cancel(*hash));
    }
}

/// Room a session keeps free in the channel's send buffer for control messages, so that
/// bulk parts never stop it from answering the peer: one record of the largest control
/// message (a request or a hashmap update), bounded by the record limit.
pub(crate) fn control_reserve(channel: &Channel) -> usize {
    sealed_len(channel.max_message_len().min(16 << 10))
}

/// True when the channel has less room than a control message might need.
pub(crate) fn short_of_room(channel: &Channel) -> bool {
    channel.send_room() < control_reserve(channel)
}

/// Drives a [`Channel`] and an [`Engine`] together; both sessions are one of these.
pub(crate) struct Shell<E> {
    pub(crate) channel: Channel,
    pub(crate) engine: E,
    failed: Option<TransferError>,
    now: Timestamp,
}

impl<E: Engine> Shell<E> {
    pub(crate) fn new(channel: Channel, engine: E, now: Timestamp) -> Self {
        Shell {
            channel,
            engine,
            failed: None,
            now,
        }
    }

    pub(crate) fn error(&self) -> Option<&TransferError> {
        self.failed.as_ref()
    }

    fn check(&self) -> Result<(), TransferError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Records the failure; tells the peer why if the channel still works.
    pub(crate) fn fail(&mut self, error: TransferError) -> TransferError {
        if self.failed.is_none()
            && !matches!(
                error,
                TransferError::Channel(_)
                    | TransferError::Cancelled { by_peer: true, .. }
                    | TransferError::Declined(_)
            )
        {
            self.engine.cancel_resources(&mut self.channel);
            let text = error.to_string();
            let _ = wire::send(&mut self.channel, &Message::Cancel(wire::reason(&text)));
            let _ = self.channel.close();
        }
        self.failed.get_or_insert(error).clone()
    }

    fn channel_events(&mut self) -> Result<(), TransferError> {
        while let Some(event) = self.channel.poll_event() {
            match event {
                Event::HandshakeComplete => self.engine.established(self.now)?,
                Event::PeerClosed if !self.engine.finished() => {
                    return Err(TransferError::PeerEnded);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn input_inner(&mut self, input: &[u8], consumed: &mut usize) -> Result<(), TransferError> {
        loop {
            self.engine.pump(&mut self.channel, self.now)?;
            if *consumed == input.len() || self.engine.input_blocked(&self.channel) {
                return Ok(());
            }
            let n = self.channel.handle_input(self.now, &input[*consumed..])?;
            *consumed += n;
            self.channel_events()?;
            let limits = self.engine.limits();
            match self.channel.take_message() {
                Some(record) => {
                    let message = Message::decode(record, limits)?;
                    self.engine.message(self.now, message)?;
                }
                None if n == 0 => return Ok(()),
                None => {}
            }
        }
    }

    pub(crate) fn handle_input(
        &mut self,
        now: Timestamp,
        input: &[u8],
    ) -> Result<usize, TransferError> {
        self.check()?;
        self.now = self.now.max(now);
        let mut consumed = 0;
        match self.input_inner(input, &mut consumed) {
            Ok(()) => Ok(consumed),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Lets the engine act on something that happened outside the channel (a disk
    /// completion, a user decision).
    pub(crate) fn after(
        &mut self,
        now: Timestamp,
        result: Result<(), TransferError>,
    ) -> Result<(), TransferError> {
        self.check()?;
        self.now = self.now.max(now);
        let result = result.and_then(|()| self.engine.pump(&mut self.channel, self.now));
        result.map_err(|error| self.fail(error))
    }

    pub(crate) fn handle_timeout(&mut self, now: Timestamp) -> Result<(), TransferError> {
        self.check()?;
        self.now = self.now.max(now);
        let result = (|| {
            self.channel.handle_timeout(self.now)?;
            self.channel_events()?;
            if self.engine.deadline().is_some_and(|at| at <= self.now) {
                return Err(TransferError::Stalled(self.engine.stall_timeout()));
            }
            self.engine.pump(&mut self.channel, self.now)
        })();
        result.map_err(|error| self.fail(error))
    }

    pub(crate) fn handle_eof(&mut self, now: Timestamp) -> Result<(), TransferError> {
        self.check()?;
        self.now = self.now.max(now);
        let result = self
            .channel
            .handle_eof(self.now)
            .map_err(TransferError::from)
            .and_then(|()| {
                if self.engine.finished() {
                    Ok(())
                } else {
                    Err(TransferError::PeerEnded)
                }
            });
        result.map_err(|error| self.fail(error))
    }

    /// `n` bytes were written to the socket; the freed room is refilled at once (queued
    /// parts, pending control messages), so the driver keeps writing while there is more.
    pub(crate) fn advance_transmit(&mut self, n: usize) {
        self.channel.advance_transmit(n);
        self.drained();
    }

    /// The driver has drained a queue: work that waited for room in it can go on.
    pub(crate) fn drained(&mut self) {
        if self.failed.is_none()
            && let Err(error) = self.engine.pump(&mut self.channel, self.now)
        {
            self.fail(error);
        }
    }

    /// The next output: events first (so that progress shows while disk work goes on),
    /// then disk commands; once both queues are empty, work that waited for room in them
    /// goes on, and if that brings nothing, the timeout.
    pub(crate) fn poll_output(&mut self) -> Output {
        let next = |engine: &mut E| {
            let out = engine.outputs();
            out.poll_event()
                .map(Output::Event)
                .or_else(|| out.poll_disk().map(Output::Disk))
        };
        if let Some(output) = next(&mut self.engine) {
            return output;
        }
        self.drained();
        next(&mut self.engine).unwrap_or_else(|| Output::Timeout(self.poll_timeout()))
    }

    /// Gives up at the user's request: the peer is told why.
    pub(crate) fn cancel(&mut self, now: Timestamp, reason: &str) -> TransferError {
        self.now = self.now.max(now);
        self.fail(TransferError::Cancelled {
            by_peer: false,
            reason: reason.to_owned(),
        })
    }

    /// True once the batch is finished.
    pub(crate) fn finished(&self) -> bool {
        self.engine.finished()
    }

    /// Records a disk failure the driver reported for a command the session gave, and
    /// ends the session with it (the peer is told).
    pub(crate) fn disk_failed(
        &mut self,
        op: &'static str,
        path: &str,
        error: DiskError,
    ) -> TransferError {
        self.fail(TransferError::Disk {
            op,
            path: path.to_owned(),
            error,
        })
    }

    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        if self.failed.is_some() {
            return None;
        }
        [
            self.engine.deadline(),
            self.engine.wake_at(),
            self.channel.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.max(self.now))
    }
}
