//! The receiving side of a transfer: takes in the manifest, checks what is already on
//! disk, requests the rest as Resources, verifies every segment and file, and tells the
//! driver what to write and commit.
//!
//! One phase at a time, each owning its data: the manifest arriving ([`intake`]), the
//! resume check and plan ([`plan`]), then the stream ([`stream`]: segments in
//! [`slot`]s within a [`window`], checked and written in order by [`commit`]). Where
//! each entry stands lives in the [`ledger`] throughout.

mod commit;
mod intake;
mod ledger;
mod plan;
mod slot;
mod stream;
mod window;

pub use ledger::{FileProgress, FileStatus};

use crate::channel::Channel;
use crate::entropy::Entropy;
use crate::handshake::Role;
use crate::lane::{LANE_HELLO_LEN, LaneRefused};
use crate::record::Placement;
use crate::time::Timestamp;
use crate::token::Token;
use crate::transfer::connection::short_of_room;
use crate::transfer::connection::{Connection, Side, send_cancels};
use crate::transfer::lanes::{LaneSet, ReceiverLanes};
use crate::transfer::manifest::Manifest;
use crate::transfer::outputs::{Outputs, VERIFY_READ};
use crate::transfer::resume::plan_settled;
use crate::transfer::session::impl_session;
use crate::transfer::storage::{Storage, Target};
use crate::transfer::violation::{file_rule, misuse, out_of_order};
use crate::transfer::wire::{self, Limits, Message};
use crate::transfer::{
    DiskCommand, DiskError, HashWork, TransferConfig, TransferError, TransferEvent,
};

use commit::Books;
use intake::Intake;
use ledger::Ledger;
use plan::ResumeCheck;
use stream::Stream;

/// Where the receiver is, with what that phase needs (the large phases boxed: one
/// allocation each per session keeps the enum small).
enum Phase {
    Handshake,
    Manifest(Intake),
    /// The whole manifest is here: the driver accepts or declines it.
    Offered,
    Resume(Box<ResumeCheck>),
    Streaming(Box<Stream>),
    Finished,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::Manifest(_) => "manifest",
            Phase::Offered => "offered",
            Phase::Resume(_) => "resume",
            Phase::Streaming(_) => "streaming",
            Phase::Finished => "finished",
        }
    }
}

/// The receiver's side of a session; see [`ReceiverSession`].
pub(crate) struct Receiver {
    config: TransferConfig,
    phase: Phase,
    out: Outputs,
    /// The batch (empty until it has arrived).
    manifest: Manifest,
    /// The sender's part size, from the manifest header.
    part_size: usize,
    ledger: Ledger,
    /// When the sender is overdue.
    stall: Option<Timestamp>,
    /// The time of the latest input, for what happens outside a timed call.
    last_now: Timestamp,
    /// See [`ReceiverSession::skip_verification_for_testing`].
    skip_verification: bool,
    /// The driver runs the SHA-256 passes ([`Session::offload_hashing`](crate::transfer::Session::offload_hashing)).
    offload_hashing: bool,
    /// The session's other connections, which it asks the driver for (PROTOCOL.md §8).
    lanes: ReceiverLanes,
    /// When the session began, and the round trip of its handshake (from then until the
    /// sender's key confirmation arrived): the path's own, with nothing queued on it yet.
    started: Timestamp,
    handshake_rtt_micros: u64,
    /// Whether the batch, every entry in place, was finished on disk
    /// ([`DiskCommand::Finish`]): DONE waits for it.
    on_disk: OnDisk,
}

/// How far the finishing of the batch on disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnDisk {
    NotAsked,
    Asked,
    Finished,
}

/// The receiving end of a transfer session: the core of `ferry receive`.
///
/// Driven through [`Session`](crate::transfer::Session). After
/// [`TransferEvent::BatchOffered`], call [`ReceiverSession::accept`] (telling it what is
/// already on disk) or [`ReceiverSession::decline`].
pub struct ReceiverSession {
    connection: Connection<Receiver>,
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
        let receiver = Receiver {
            phase: Phase::Handshake,
            out: Outputs::for_config(&config),
            manifest: Manifest::default(),
            part_size: config.part_size,
            ledger: Ledger::default(),
            stall: Some(now.saturating_add(config.stall_timeout)),
            last_now: now,
            skip_verification: false,
            offload_hashing: false,
            lanes: ReceiverLanes::new(config.connections, config.channel.max_record_payload),
            started: now,
            handshake_rtt_micros: 0,
            on_disk: OnDisk::NotAsked,
            config,
        };
        Ok(ReceiverSession {
            connection: Connection::new(channel, receiver, now),
        })
    }

    /// Accepts the offered batch. `local` lists entries of which the driver already holds
    /// the first `bytes` bytes (a partial file from an earlier run, or a complete one);
    /// the session re-reads and hashes them before claiming them to the sender.
    pub fn accept(&mut self, now: Timestamp, local: &[(usize, u64)]) -> Result<(), TransferError> {
        let receiver = &mut self.connection.side;
        if !matches!(receiver.phase, Phase::Offered) {
            return Err(misuse("accept is only possible while a batch is offered"));
        }
        let check = ResumeCheck::new(&receiver.manifest, local, &receiver.config);
        receiver.phase = Phase::Resume(Box::new(check));
        self.connection.after(now, Ok(()))
    }

    /// Declines the offered batch; the sender is told why.
    pub fn decline(&mut self, now: Timestamp, reason: &str) -> Result<(), TransferError> {
        let receiver = &mut self.connection.side;
        if !matches!(receiver.phase, Phase::Offered) {
            return Err(misuse("decline is only possible while a batch is offered"));
        }
        let _ = wire::send(
            &mut self.connection.channel,
            &Message::Decline(wire::reason(reason)),
        );
        let _ = self.connection.channel.close();
        receiver.phase = Phase::Finished;
        receiver.stall = None;
        self.connection.after(now, Ok(()))
    }

    /// Breaks the core's central guarantee on purpose: files are committed whatever their
    /// hash. It exists only so that the simulator can show its sweep catches such a bug;
    /// never call it elsewhere.
    #[doc(hidden)]
    pub fn skip_verification_for_testing(&mut self) {
        self.connection.side.skip_verification = true;
    }

    /// Resume state of `entry`, for the driver's lock file.
    pub fn progress(&self, entry: usize) -> Option<FileProgress> {
        self.connection.side.ledger.progress(entry)
    }

    /// The bytes a [`DiskCommand::Write`] this session gave asks to be written (empty for
    /// any other command). With [`ReceiverSession::write_finished`], a driver may carry a
    /// write out elsewhere (on a thread of its own, beside the session) instead of through
    /// [`Session::carry_out`](crate::transfer::Session::carry_out): the bytes stay here,
    /// unchanged, until it reports back.
    pub fn write_bytes(&self, command: &DiskCommand) -> &[u8] {
        match (command, &self.connection.side.phase) {
            (DiskCommand::Write { id, .. }, Phase::Streaming(stream)) => stream.write_data(*id),
            _ => &[],
        }
    }

    /// A write given out by [`Session::poll_output`](crate::transfer::Session::poll_output)
    /// is done (or failed, which ends the session). Until then its segment keeps its
    /// buffer, the next segment waits, and nothing of it counts as written: no checkpoint
    /// claims it and no file it ends is committed.
    pub fn write_finished(
        &mut self,
        now: Timestamp,
        command: &DiskCommand,
        result: Result<(), DiskError>,
    ) -> Result<(), TransferError> {
        let not_given = misuse("a write finished that the receiver did not give");
        let DiskCommand::Write { id, .. } = command else {
            return Err(not_given);
        };
        let Some((stream, mut books)) = self.connection.side.streaming() else {
            return Err(not_given);
        };
        let done = stream.write_done(*id, result, &mut books);
        if done.is_ok() {
            books.out.completed();
        }
        self.connection.after(now, done)
    }

    /// See [`Session::work_done`](crate::transfer::Session::work_done).
    fn work_done_side(&mut self, now: Timestamp, work: HashWork) -> Result<(), TransferError> {
        let Some((stream, mut books)) = self.connection.side.streaming() else {
            return Err(misuse(
                "hashing work came back that the session did not give",
            ));
        };
        let done = stream.hashed(work, &mut books);
        self.connection.after(now, done)
    }

    /// Carries out one disk command against `storage` and takes its completion.
    fn carry_out_command(
        &mut self,
        now: Timestamp,
        command: DiskCommand,
        storage: &mut dyn Storage,
    ) -> Result<(), TransferError> {
        if let DiskCommand::Checkpoint { changed } = command {
            return match storage.checkpoint(changed, self) {
                Ok(()) => self.connection.after(now, Ok(())),
                Err(error) => Err(self
                    .connection
                    .disk_failed("saving", "the resume state", error)),
            };
        }
        if command == DiskCommand::Finish {
            if self.connection.side.on_disk != OnDisk::Asked {
                return Err(misuse("a disk command the receiver did not give"));
            }
            return match storage.finish(self) {
                Ok(()) => {
                    self.connection.side.on_disk = OnDisk::Finished;
                    self.connection.after(now, Ok(()))
                }
                Err(error) => Err(self.connection.disk_failed("finishing", "the batch", error)),
            };
        }
        let receiver = &mut self.connection.side;
        let Some(target) = Target::of(&receiver.manifest, &command) else {
            return Err(misuse(
                "a disk command for an entry the batch does not have",
            ));
        };
        let index = target.index;
        let commit = matches!(command, DiskCommand::Commit { .. });
        let (op, result) = match (command, &mut receiver.phase) {
            (DiskCommand::Read { id, offset, .. }, Phase::Resume(check)) if id == VERIFY_READ => {
                let result = storage.read(target, offset, check.read_buffer());
                let done = check.read_done(result).map(|progress| {
                    receiver.out.event(progress);
                    receiver.out.completed();
                });
                return self.connection.after(now, done);
            }
            (write @ DiskCommand::Write { id, offset, .. }, Phase::Streaming(stream)) => {
                let result = storage.write(target, offset, stream.write_data(id));
                return self.write_finished(now, &write, result);
            }
            (DiskCommand::Commit { .. }, _) => ("committing", storage.commit(target)),
            (DiskCommand::Discard { .. }, _) => ("discarding", storage.discard(target)),
            (DiskCommand::CreateDir { .. }, _) => ("creating", storage.create_dir(target)),
            _ => return Err(misuse("a disk command the receiver did not give")),
        };
        if commit {
            self.connection.side.out.commit_carried_out();
        }
        match result {
            Ok(()) => {
                if commit {
                    let out = &mut self.connection.side.out;
                    out.event(TransferEvent::FileDone { entry: index });
                }
                self.connection.after(now, Ok(()))
            }
            Err(error) => {
                if commit {
                    self.connection.side.ledger.commit_failed(index);
                }
                let path = target_path(&self.connection.side.manifest, index);
                Err(self.connection.disk_failed(op, &path, error))
            }
        }
    }

    fn describe_state(&self) -> String {
        let receiver = &self.connection.side;
        let ledger = &receiver.ledger;
        let detail = match &receiver.phase {
            Phase::Resume(check) => check.stage().to_owned(),
            Phase::Streaming(stream) => stream.describe(),
            _ => String::new(),
        };
        format!(
            "receiver {} unresolved {} committed {} failed {} commits due {} on disk {:?} {detail}",
            receiver.phase.name(),
            ledger.unresolved,
            ledger.committed,
            ledger.failed,
            receiver.out.commits_due(),
            receiver.on_disk,
        )
    }
}

fn target_path(manifest: &Manifest, index: usize) -> String {
    manifest
        .get(index)
        .map_or_else(String::new, |e| e.path.to_owned())
}

impl Receiver {
    fn arm_stall(&mut self, now: Timestamp) {
        self.stall = Some(now.saturating_add(self.config.stall_timeout));
    }

    /// The manifest is whole: the driver is asked to accept or decline it.
    fn offer(&mut self) {
        self.ledger = Ledger::new(self.manifest.len());
        self.phase = Phase::Offered;
        self.stall = None;
        self.out.event(TransferEvent::BatchOffered {
            entries: self.manifest.len(),
            bytes: self.manifest.total_bytes(),
        });
    }

    /// The sender's answer to the plan is whole: what it settled goes into the ledger,
    /// and the stream begins.
    fn settle(&mut self, settled: plan::Settled, now: Timestamp) {
        for claim in &settled.claims {
            let size = self
                .manifest
                .get(claim.entry as usize)
                .map_or(0, |e| e.size);
            self.ledger
                .settle_claim(claim.entry, claim.offset, size, claim.prefix);
        }
        self.ledger.count_unresolved(&self.manifest);
        let ledger = &self.ledger;
        self.out
            .event(plan_settled(&self.manifest, |i| ledger.verified(i)));
        let mut stream = Stream::new(
            &self.config,
            self.part_size,
            settled.hashes,
            self.handshake_rtt_micros,
        );
        if self.offload_hashing {
            stream.hashing.offload();
        }
        self.phase = Phase::Streaming(Box::new(stream));
        self.arm_stall(now);
    }

    /// The streaming phase, with the books its segments are checked and written with (as
    /// of the last time the session was called), while streaming.
    fn streaming(&mut self) -> Option<(&mut Stream, Books<'_>)> {
        let Phase::Streaming(stream) = &mut self.phase else {
            return None;
        };
        let books = Books {
            manifest: &self.manifest,
            ledger: &mut self.ledger,
            out: &mut self.out,
            config: &self.config,
            now: self.last_now,
            skip_verification: self.skip_verification,
        };
        Some((stream, books))
    }

    /// The batch is done here: the sender is told, a last checkpoint is asked for, and
    /// the session ends.
    fn finish(&mut self, channel: &mut Channel) {
        let done = Message::Done {
            committed: self.ledger.committed,
            failed: self.ledger.failed,
        };
        if wire::send(channel, &done).is_err() {
            return;
        }
        self.ledger.checkpoint(&mut self.out);
        let _ = channel.close();
        self.phase = Phase::Finished;
        self.stall = None;
        self.out.event(TransferEvent::Finished {
            committed: self.ledger.committed,
            failed: self.ledger.failed,
        });
    }
}

impl Receiver {
    /// True when the output queues have no room for what one more message may bring.
    fn outputs_full(&self) -> bool {
        !self
            .out
            .has_room(2, self.config.max_extents_per_segment + 4)
    }
}

/// A part's data is decrypted straight into its segment's buffer: one copy of every byte
/// received fewer (about 5% of the receiving thread, the slower side on a loopback).
impl Placement for Receiver {
    fn head_len(&self) -> usize {
        wire::PART_HEADER_LEN
    }

    fn place(&mut self, head: &[u8], len: usize) -> Option<&mut [u8]> {
        let Ok(Message::Part { hash, index, .. }) = Message::decode(head, self.limits()) else {
            return None;
        };
        let Phase::Streaming(stream) = &mut self.phase else {
            return None;
        };
        stream.part_destination(hash, index, len).ok()
    }
}

impl Side for Receiver {
    fn hashing(&mut self) -> Option<&mut crate::transfer::work::Hashing> {
        match &mut self.phase {
            Phase::Streaming(stream) => Some(&mut stream.hashing),
            _ => None,
        }
    }

    fn offload_flag(&mut self) -> &mut bool {
        &mut self.offload_hashing
    }

    fn established(&mut self, channel: &Channel, now: Timestamp) -> Result<(), TransferError> {
        self.phase = Phase::Manifest(Intake::new(channel.max_message_len()));
        self.handshake_rtt_micros = now.as_micros().saturating_sub(self.started.as_micros());
        self.out.event(TransferEvent::Connected);
        self.arm_stall(now);
        Ok(())
    }

    fn message(&mut self, now: Timestamp, message: Message<'_>) -> Result<(), TransferError> {
        let config = &self.config;
        let stream = match &mut self.phase {
            Phase::Streaming(stream) => Some(stream),
            _ => None,
        };
        match (message, stream) {
            (Message::ManifestBegin(begin), _) => {
                let Phase::Manifest(intake) = &mut self.phase else {
                    return Err(out_of_order("a second manifest header"));
                };
                self.part_size = intake.begin(&mut self.manifest, begin, config)?;
                if intake.is_complete(&self.manifest)? {
                    self.offer();
                } else {
                    self.arm_stall(now);
                }
            }
            (Message::ManifestEntries(entries), _) => {
                let Phase::Manifest(intake) = &mut self.phase else {
                    return Err(out_of_order(
                        "manifest entries before the manifest header or after the whole manifest",
                    ));
                };
                intake.entries(&mut self.manifest, &entries, config)?;
                if intake.is_complete(&self.manifest)? {
                    self.offer();
                } else {
                    self.arm_stall(now);
                }
            }
            (Message::PlanResult(result), _) => {
                let Phase::Resume(check) = &mut self.phase else {
                    return Err(out_of_order("a plan result the receiver did not ask for"));
                };
                if let Some(settled) = check.on_plan_result(&result)? {
                    self.settle(settled, now);
                }
            }
            (Message::Layout(layout), Some(stream)) => {
                stream.on_layout(&layout, &mut self.ledger, &self.manifest, config)?;
                self.arm_stall(now);
            }
            (Message::Layout(_), None) => {
                return Err(out_of_order("a segment layout out of order"));
            }
            (Message::Adv(adv), Some(stream)) => {
                stream.on_advertisement(&adv, config.segment_size)?;
                self.arm_stall(now);
            }
            (Message::Adv(_), None) => {
                return Err(out_of_order("an advertisement without a layout"));
            }
            (Message::Hmu(update), Some(stream)) => {
                stream.on_hashmap_update(&update)?;
                self.arm_stall(now);
            }
            (Message::Hmu(_), None) => {
                return Err(out_of_order("a hashmap update for an unknown resource"));
            }
            (Message::Part { hash, index, data }, Some(stream)) => {
                stream.on_part(hash, index, data, now)?;
                self.arm_stall(now);
            }
            (Message::Part { .. }, None) => {
                return Err(out_of_order(
                    "a part for a resource that is not being received",
                ));
            }
            (Message::Update(update), Some(stream)) if stream.is_settled(&self.manifest) => {
                self.ledger
                    .on_update(&mut self.manifest, update, &mut self.out)?;
                self.arm_stall(now);
            }
            (Message::Update(_), _) => {
                return Err(file_rule(
                    "an update that does not answer the retry of a file in progress",
                ));
            }
            (Message::Abandon(abandon), Some(stream)) if stream.is_settled(&self.manifest) => {
                self.ledger.on_abandon(abandon, config, &mut self.out)?;
                self.arm_stall(now);
            }
            (Message::Abandon(_), _) => {
                return Err(file_rule("an abandon for an attempt that is not under way"));
            }
            // The sender cancels a segment only right before CANCEL, which carries the
            // reason; nothing is undone here, so no state can be corrupted by it.
            (Message::Icl(_), _) => {}
            // The sender lost a lane: it is given up here too, and the sender told what
            // came on it.
            (Message::LaneDown { lane }, _) => self.lanes.closed(lane),
            (Message::Cancel(reason), _) => {
                return Err(TransferError::Cancelled {
                    by_peer: true,
                    reason: wire::shown_reason(reason),
                });
            }
            _ => return Err(out_of_order("a message the receiver does not expect here")),
        }
        Ok(())
    }

    fn placement(&mut self) -> Option<&mut dyn Placement> {
        matches!(self.phase, Phase::Streaming(_)).then_some(self as &mut dyn Placement)
    }

    fn placed(
        &mut self,
        now: Timestamp,
        message: Message<'_>,
        len: usize,
    ) -> Result<(), TransferError> {
        match (message, &mut self.phase) {
            (Message::Part { hash, index, .. }, Phase::Streaming(stream)) => {
                stream.on_part_placed(hash, index, len, now)?;
                self.arm_stall(now);
                Ok(())
            }
            _ => Err(out_of_order(
                "a part for a resource that is not being received",
            )),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_extents: self.config.max_extents_per_segment,
            max_parts: self.config.segment_size.div_ceil(self.part_size),
        }
    }

    fn advance(&mut self, channel: &mut Channel, now: Timestamp) -> Result<(), TransferError> {
        self.last_now = now;
        if self.ledger.checkpoint_due().is_some_and(|due| due <= now) && self.out.has_room(1, 0) {
            self.ledger.checkpoint(&mut self.out);
        }
        match &mut self.phase {
            Phase::Resume(check) => {
                check.check(&self.manifest, &mut self.out);
                if let Some(deadline) = check.send_claims(channel, &self.config, now) {
                    self.stall = Some(deadline);
                }
            }
            Phase::Streaming(stream) => {
                let settled = stream.is_settled(&self.manifest);
                if !settled {
                    stream.settle(&self.manifest, &mut self.ledger, &mut self.out);
                }
                self.lanes.send_notices(channel);
                stream.send_requests(channel, &self.config, now);
                stream.send_grant(channel, &self.config);
                // Lanes wait for a round trip in doubt to be measured again: a busy
                // loopback is no long path.
                if let Some(secret) = channel.lane_secret()
                    && !stream.window.probing()
                    && self.out.has_room(0, 1)
                    && let Some(lane) = self.lanes.next_wanted(
                        secret,
                        stream.window.rate(),
                        stream.window.rounds(),
                        stream.window.path_rtt(),
                    )
                {
                    stream.window.find_rate_again();
                    self.out.event(TransferEvent::LaneWanted { lane });
                }
                if settled {
                    let mut books = Books {
                        manifest: &self.manifest,
                        ledger: &mut self.ledger,
                        out: &mut self.out,
                        config: &self.config,
                        now,
                        skip_verification: self.skip_verification,
                    };
                    stream.process(&mut books)?;
                }
                stream.send_control(channel, &mut self.ledger);
                // Done once every file is in place and the batch finished on disk, not
                // when a commit is given out: a commit, or the finishing, that fails must
                // still fail the batch at both ends.
                if settled && stream.is_done(&self.ledger) && self.out.commits_due() == 0 {
                    match self.on_disk {
                        OnDisk::NotAsked if self.out.has_room(1, 0) => {
                            self.out.disk(DiskCommand::Finish);
                            self.on_disk = OnDisk::Asked;
                        }
                        OnDisk::Finished if self.out.has_room(1, 1) => self.finish(channel),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn input_blocked(&self, channel: &Channel) -> bool {
        short_of_room(channel)
            || self.outputs_full()
            || matches!(&self.phase, Phase::Streaming(stream) if stream.hashing_behind())
    }

    fn lanes(&self) -> &dyn LaneSet {
        &self.lanes
    }

    fn lanes_mut(&mut self) -> &mut dyn LaneSet {
        &mut self.lanes
    }

    fn join_lane(&mut self, _: &Channel, _: &[u8; LANE_HELLO_LEN]) -> Result<u8, LaneRefused> {
        Err(LaneRefused::NotNow)
    }

    fn lane_connected(&mut self, lane: u8) -> Result<(), TransferError> {
        if self.lanes.connected(lane) {
            Ok(())
        } else {
            Err(misuse("a lane the session did not ask for, or gave up"))
        }
    }

    fn lane_input(
        &mut self,
        now: Timestamp,
        lane: u8,
        input: &[u8],
        consumed: &mut usize,
    ) -> Result<(), TransferError> {
        let limits = self.limits();
        while *consumed < input.len() && !self.outputs_full() {
            let (n, record) = self.lanes.push(lane, &input[*consumed..])?;
            *consumed += n;
            let Some(record) = record else {
                if n == 0 {
                    return Ok(());
                }
                continue;
            };
            match (Message::decode(record, limits)?, &mut self.phase) {
                (Message::Part { hash, index, data }, Phase::Streaming(stream)) => {
                    stream.on_part(hash, index, data, now)?;
                    self.stall = Some(now.saturating_add(self.config.stall_timeout));
                }
                _ => return Err(out_of_order("a lane carries parts only, while streaming")),
            }
        }
        Ok(())
    }

    fn deadline(&self) -> Option<Timestamp> {
        self.stall
    }

    fn wake_at(&self) -> Option<Timestamp> {
        self.ledger.checkpoint_due()
    }

    fn stall_timeout(&self) -> core::time::Duration {
        self.config.stall_timeout
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    fn outputs(&mut self) -> &mut Outputs {
        &mut self.out
    }

    fn cancel_resources(&mut self, channel: &mut Channel) {
        if let Phase::Streaming(stream) = &self.phase {
            send_cancels(channel, Message::Rcl, stream.in_flight());
        }
    }
}
