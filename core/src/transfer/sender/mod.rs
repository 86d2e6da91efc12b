//! The sending side of a transfer: serves the manifest, checks resume claims, cuts the
//! bytes still needed into segments and serves each as a Resource.
//!
//! One phase at a time, each owning its data: the manifest going out ([`offer`]), the
//! receiver's plan checked ([`plan`]), then the stream ([`stream`]: segments in
//! [`slot`]s, files sent again in [`retry`]). Where each entry stands lives in the
//! [`ledger`] throughout.

mod ledger;
mod offer;
mod plan;
mod retry;
mod slot;
mod stream;

use std::sync::Arc;

use crate::channel::Channel;
use crate::entropy::Entropy;
use crate::handshake::Role;
use crate::lane::{LANE_HELLO_LEN, LaneRefused};
use crate::time::Timestamp;
use crate::token::Token;
use crate::transfer::connection::short_of_room;
use crate::transfer::connection::{Connection, Side, send_cancels};
use crate::transfer::lanes::{LaneSet, SenderLanes};
use crate::transfer::manifest::Manifest;
use crate::transfer::outputs::{Outputs, VERIFY_READ};
use crate::transfer::resume::{plan_settled, reread_allowance};
use crate::transfer::session::impl_session;
use crate::transfer::storage::{Storage, Target};
use crate::transfer::violation::{misuse, out_of_order};
use crate::transfer::wire::{self, Limits, Message};
use crate::transfer::{DiskCommand, HashWork, TransferConfig, TransferError, TransferEvent};

use ledger::EntryState;
use offer::Offering;
use plan::PlanCheck;
use stream::{Books, Stream};

/// What the stream works on besides its own data, from a sender's fields (a method
/// would borrow the whole sender while its phase is borrowed too).
macro_rules! books {
    ($sender:expr) => {
        Books {
            manifest: &mut $sender.manifest,
            entries: &mut $sender.entries,
            out: &mut $sender.out,
            config: &$sender.config,
        }
    };
}

/// Where the sender is, with what that phase needs.
enum Phase {
    Handshake,
    Manifest(Offering),
    /// Waiting for the receiver's plan, then checking its claims.
    Plan(PlanCheck),
    Streaming(Stream),
    Finished,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Handshake => "handshake",
            Phase::Manifest(_) => "manifest",
            Phase::Plan(check) if check.is_checking() => "checking claims",
            Phase::Plan(_) => "awaiting the plan",
            Phase::Streaming(_) => "streaming",
            Phase::Finished => "finished",
        }
    }
}

/// The sender's side of a session; see [`SenderSession`].
pub(crate) struct Sender {
    config: TransferConfig,
    /// Shared with the driver (and other sessions of the same batch) until a file is
    /// reopened with another size: a batch may hold a million entries.
    manifest: Arc<Manifest>,
    entries: Vec<EntryState>,
    phase: Phase,
    out: Outputs,
    /// Seeds the random hashes of the segments.
    seed: u64,
    /// Segments the receiver allows advertised and not yet proven (none until its first
    /// GRANT).
    grant: usize,
    /// When the receiver is overdue.
    stall: Option<Timestamp>,
    /// The session's other connections, opened by the receiver (PROTOCOL.md §8).
    lanes: SenderLanes,
    /// The driver runs the SHA-256 passes ([`Session::offload_hashing`](crate::transfer::Session::offload_hashing)).
    offload_hashing: bool,
}

/// The sending end of a transfer session: the core of `ferry send`.
///
/// Driven through [`Session`](crate::transfer::Session).
pub struct SenderSession {
    connection: Connection<Sender>,
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
        let sender = Sender {
            entries: vec![EntryState::NEW; manifest.len()],
            phase: Phase::Handshake,
            out: Outputs::for_config(&config),
            seed: u64::from_be_bytes(seed),
            grant: 0,
            stall: None,
            offload_hashing: false,
            lanes: SenderLanes::new(
                config.channel.send_buffer,
                config.segment_buffers() * config.parts_per_segment(),
            ),
            manifest,
            config,
        };
        Ok(SenderSession {
            connection: Connection::new(channel, sender, now),
        })
    }

    /// See [`Session::work_done`](crate::transfer::Session::work_done).
    fn work_done_side(&mut self, now: Timestamp, work: HashWork) -> Result<(), TransferError> {
        let sender = &mut self.connection.side;
        let Phase::Streaming(stream) = &mut sender.phase else {
            return Err(misuse(
                "hashing work came back that the session did not give",
            ));
        };
        let done = stream.hashed(work, &mut books!(sender));
        self.connection.after(now, done)
    }

    /// Carries out one disk command against `storage` and takes its completion.
    fn carry_out_command(
        &mut self,
        now: Timestamp,
        command: DiskCommand,
        storage: &mut dyn Storage,
    ) -> Result<(), TransferError> {
        let sender = &mut self.connection.side;
        let Some(target) = Target::of(&sender.manifest, &command) else {
            return Err(misuse(
                "a disk command for an entry the batch does not have",
            ));
        };
        let index = target.index;
        let done = match (command, &mut sender.phase) {
            (DiskCommand::Read { id, offset, .. }, Phase::Plan(check)) if id == VERIFY_READ => {
                let result = storage.read(target, offset, check.read_buffer());
                check
                    .read_done(result)
                    .map(|progress| sender.out.event(progress))
            }
            (DiskCommand::Read { id, offset, .. }, Phase::Streaming(stream)) => {
                let result = storage.read(target, offset, stream.read_buffer(id));
                stream.read_done(id, result, &mut books!(sender))
            }
            (DiskCommand::Reopen { .. }, Phase::Streaming(stream)) => {
                let result = storage.reopen(target);
                stream.reopen_done(index, result, &mut books!(sender))
            }
            _ => Err(misuse("a disk command the sender did not give")),
        };
        if done.is_ok() {
            sender.out.completed();
        }
        self.connection.after(now, done)
    }

    fn describe_state(&self) -> String {
        let sender = &self.connection.side;
        let detail = match &sender.phase {
            Phase::Streaming(stream) => stream.describe(),
            _ => String::new(),
        };
        format!("sender {} {detail}", sender.phase.name())
    }
}

impl Sender {
    fn arm_stall(&mut self, now: Timestamp) {
        self.stall = Some(now.saturating_add(self.config.stall_timeout));
    }

    /// The claims are checked: the plan is settled, and the stream begins.
    fn settle(&mut self, settled: plan::Settled) {
        let entries = &self.entries;
        let event = plan_settled(&self.manifest, |i| entries[i].start);
        let stream_total = match event {
            TransferEvent::PlanSettled { bytes_to_send, .. } => bytes_to_send,
            _ => 0,
        };
        self.out.event(event);
        let mut stream = Stream::new(&self.config, settled, stream_total, self.seed);
        if self.offload_hashing {
            stream.hashing.offload();
        }
        self.phase = Phase::Streaming(stream);
    }
}

impl Side for Sender {
    fn hashing(&mut self) -> Option<&mut crate::transfer::work::Hashing> {
        match &mut self.phase {
            Phase::Streaming(stream) => Some(&mut stream.hashing),
            _ => None,
        }
    }

    fn offload_flag(&mut self) -> &mut bool {
        &mut self.offload_hashing
    }

    fn established(&mut self, _: &Channel, now: Timestamp) -> Result<(), TransferError> {
        self.phase = Phase::Manifest(Offering::default());
        self.out.event(TransferEvent::Connected);
        self.arm_stall(now);
        Ok(())
    }

    fn message(&mut self, now: Timestamp, message: Message<'_>) -> Result<(), TransferError> {
        let mut books = books!(self);
        match (message, &mut self.phase) {
            (Message::Plan(plan), Phase::Plan(check)) => {
                check.on_plan(&plan, books.manifest, books.entries, books.config)?;
            }
            (Message::Plan(_), _) => {
                return Err(out_of_order("a resume plan outside the planning phase"));
            }
            (Message::Decline(reason), _) => {
                return Err(TransferError::Declined(wire::shown_reason(reason)));
            }
            (Message::Req(request), Phase::Streaming(stream)) => {
                stream.on_request(&request, books.config)?;
                self.arm_stall(now);
            }
            (Message::Prf(proof), Phase::Streaming(stream)) => {
                stream.on_proof(proof, books.out)?;
                self.lanes.trim(|seq| stream.is_advertised(seq));
                self.arm_stall(now);
            }
            (Message::Retry { entry, attempt }, Phase::Streaming(stream)) => {
                stream.on_retry(entry, attempt, &mut books)?;
            }
            (Message::Grant { segments }, Phase::Streaming(_)) => {
                self.grant = segments as usize;
            }
            (Message::Grant { segments }, Phase::Plan(check)) if check.is_checking() => {
                self.grant = segments as usize;
            }
            (Message::Grant { .. }, _) => return Err(out_of_order("a grant before the plan")),
            (Message::LaneLost { lane, parts }, phase) => {
                let lost = self.lanes.lost(lane, parts)?;
                if let Phase::Streaming(stream) = phase {
                    stream.send_again(lost.into_iter())?;
                }
            }
            // The receiver rejects a segment whose data did not match its hash (it asks
            // for the files again), or each one in flight right before CANCEL.
            (Message::Rcl(hash), Phase::Streaming(stream)) => {
                stream.on_reject(&hash);
                self.lanes.trim(|seq| stream.is_advertised(seq));
            }
            (Message::Rcl(_), _) => {}
            (Message::Done { committed, failed }, Phase::Streaming(stream)) => {
                if stream.in_flight() || !stream.retry_queue.is_empty() {
                    return Err(out_of_order("done while segments are still in flight"));
                }
                self.phase = Phase::Finished;
                self.stall = None;
                self.out
                    .event(TransferEvent::Finished { committed, failed });
            }
            (Message::Cancel(reason), _) => {
                return Err(TransferError::Cancelled {
                    by_peer: true,
                    reason: wire::shown_reason(reason),
                });
            }
            _ => return Err(out_of_order("a message the sender does not expect here")),
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_extents: self.config.max_extents_per_segment,
            max_parts: self.config.parts_per_segment(),
        }
    }

    fn advance(&mut self, channel: &mut Channel, now: Timestamp) -> Result<(), TransferError> {
        // A phase that ends inside this call hands straight over to the next one.
        loop {
            let phase = self.phase.name();
            match &mut self.phase {
                Phase::Handshake => {}
                Phase::Manifest(offering) => {
                    let (sent, done) = offering.send(channel, &self.manifest, &self.config);
                    if sent {
                        // Progress: a slow link is not a stalled peer.
                        self.arm_stall(now);
                    }
                    if done {
                        // The receiver now decides and re-reads what it already holds
                        // before it answers, which the wait allows for (at most all of
                        // the batch).
                        self.phase = Phase::Plan(PlanCheck::default());
                        self.stall = Some(now.saturating_add(reread_allowance(
                            self.config.stall_timeout,
                            self.manifest.total_bytes(),
                        )));
                    }
                }
                Phase::Plan(check) if check.is_checking() => {
                    // Re-reading claimed files is our own work, not a wait on the peer.
                    self.stall = None;
                    if let Some(settled) =
                        check.check(&self.manifest, &mut self.entries, &mut self.out)
                    {
                        self.settle(settled);
                    }
                }
                Phase::Plan(_) => {}
                Phase::Streaming(stream) => {
                    let grant = self.grant;
                    stream.send_plan_result(channel);
                    if stream.result_sent {
                        let mut books = books!(self);
                        stream.ask_reopens(&mut books);
                        stream.seal_segments(&mut books)?;
                        stream.send_notices(channel);
                        stream.advertise(channel, books.config);
                        self.lanes.send_notices(channel);
                        let buffers = books.config.segment_buffers();
                        stream.refill(&mut books, buffers);
                        stream.send_parts(channel, &mut self.lanes, books.config);
                        stream.prepare(&mut books, grant, buffers);
                        if self.stall.is_none() {
                            self.arm_stall(now);
                        }
                    }
                }
                Phase::Finished => {
                    let _ = channel.close();
                }
            }
            if self.phase.name() == phase {
                return Ok(());
            }
        }
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
        matches!(self.phase, Phase::Finished)
    }

    fn outputs(&mut self) -> &mut Outputs {
        &mut self.out
    }

    fn lanes(&self) -> &dyn LaneSet {
        &self.lanes
    }

    fn lanes_mut(&mut self) -> &mut dyn LaneSet {
        &mut self.lanes
    }

    fn join_lane(
        &mut self,
        channel: &Channel,
        hello: &[u8; LANE_HELLO_LEN],
    ) -> Result<u8, LaneRefused> {
        let secret = channel.lane_secret().ok_or(LaneRefused::NotNow)?;
        self.lanes.join(secret, hello)
    }

    fn lane_connected(&mut self, _: u8) -> Result<(), TransferError> {
        Err(misuse("a sender opens no lanes; the receiver does"))
    }

    fn lane_input(
        &mut self,
        _: Timestamp,
        _: u8,
        _: &[u8],
        _: &mut usize,
    ) -> Result<(), TransferError> {
        Err(misuse("a sender takes no input on lanes"))
    }

    fn cancel_resources(&mut self, channel: &mut Channel) {
        if let Phase::Streaming(stream) = &self.phase {
            send_cancels(channel, Message::Icl, stream.advertised_hashes());
        }
    }
}
