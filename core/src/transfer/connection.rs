//! The connection both sessions are: a channel and the side of the transfer it carries,
//! driven together, with the failure and the clock they share.

use crate::channel::{Channel, Event};
use crate::lane::{LANE_HELLO_LEN, LaneRefused};
use crate::record::{Placement, sealed_len};
use crate::sealing::SealWork;
use crate::time::Timestamp;
use crate::transfer::lanes::LaneSet;
use crate::transfer::outputs::Outputs;
use crate::transfer::session::Output;
use crate::transfer::violation::misuse;
use crate::transfer::wire::{self, Limits, Message};
use crate::transfer::{DiskError, TransferError};

/// The role-specific half of a session: the sender's or the receiver's side of the
/// transfer, driven by a [`Connection`].
pub(crate) trait Side {
    /// The streaming phase's SHA-256 passes, while streaming.
    fn hashing(&mut self) -> Option<&mut crate::transfer::work::Hashing>;
    /// Whether the driver runs the passes (`Session::offload_hashing`): applied to the
    /// streaming phase when the side makes it.
    fn offload_flag(&mut self) -> &mut bool;
    /// The handshake completed.
    fn established(&mut self, channel: &Channel, now: Timestamp) -> Result<(), TransferError>;
    /// One transfer message arrived.
    fn message(&mut self, now: Timestamp, message: Message<'_>) -> Result<(), TransferError>;
    /// Where a part's data may be decrypted straight to, if this side takes parts now.
    fn placement(&mut self) -> Option<&mut dyn Placement> {
        None
    }
    /// A part (`message`, its data empty) whose `len` bytes of data went where
    /// [`Side::placement`] chose arrived.
    fn placed(
        &mut self,
        _now: Timestamp,
        _message: Message<'_>,
        _len: usize,
    ) -> Result<(), TransferError> {
        Err(crate::transfer::violation::out_of_order(
            "a part for a side that takes none",
        ))
    }
    /// What a message to this side may hold at most.
    fn limits(&self) -> Limits;
    /// Does whatever can be done now: takes the next step of its phase and sends what is
    /// due, as far as the channel and the output queues have room.
    fn advance(&mut self, channel: &mut Channel, now: Timestamp) -> Result<(), TransferError>;
    /// True when the side cannot take another message until the driver drains it.
    fn input_blocked(&self, channel: &Channel) -> bool;
    /// When the side gives up waiting for the peer.
    fn deadline(&self) -> Option<Timestamp>;
    /// How long it waits (for the error message).
    fn stall_timeout(&self) -> core::time::Duration;
    /// When the side has something of its own to do (a checkpoint), if it does.
    fn wake_at(&self) -> Option<Timestamp> {
        None
    }
    /// The batch is finished: a close from the peer is expected now.
    fn finished(&self) -> bool;
    /// The session is ending early: cancel every Resource in flight (ICL from the
    /// sender, RCL from the receiver), as RNS does.
    fn cancel_resources(&mut self, channel: &mut Channel);
    /// The side's output queues.
    fn outputs(&mut self) -> &mut Outputs;
    /// The side's lanes (PROTOCOL.md §8).
    fn lanes(&self) -> &dyn LaneSet;
    /// See [`Side::lanes`].
    fn lanes_mut(&mut self) -> &mut dyn LaneSet;
    /// Sender: a lane hello arrived; the lane it opens, if it proves it belongs here.
    fn join_lane(
        &mut self,
        channel: &Channel,
        hello: &[u8; LANE_HELLO_LEN],
    ) -> Result<u8, LaneRefused>;
    /// Receiver: the driver connected a lane the side asked for.
    fn lane_connected(&mut self, lane: u8) -> Result<(), TransferError>;
    /// Receiver: bytes from a lane's connection, taken up to the first time the outputs
    /// fill (`consumed` counts them).
    fn lane_input(
        &mut self,
        now: Timestamp,
        lane: u8,
        input: &[u8],
        consumed: &mut usize,
    ) -> Result<(), TransferError>;
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

/// A [`Channel`] and the [`Side`] of the transfer it carries, driven together: both
/// sessions are one of these.
pub(crate) struct Connection<S> {
    pub(crate) channel: Channel,
    pub(crate) side: S,
    failed: Option<TransferError>,
    now: Timestamp,
}

impl<S: Side> Connection<S> {
    pub(crate) fn new(channel: Channel, side: S, now: Timestamp) -> Self {
        Connection {
            channel,
            side,
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

    /// Records the failure; tells the peer why if the channel still works. A driver's
    /// misuse is only returned: the session goes on, and the peer never hears of it.
    pub(crate) fn fail(&mut self, error: TransferError) -> TransferError {
        if matches!(error, TransferError::Misuse(_)) {
            return error;
        }
        if self.failed.is_none()
            && !matches!(
                error,
                TransferError::Channel(_)
                    | TransferError::Cancelled { by_peer: true, .. }
                    | TransferError::Declined(_)
            )
        {
            self.side.cancel_resources(&mut self.channel);
            // A cancel says the user's reason as it is; any other failure says what failed.
            let text = match &error {
                TransferError::Cancelled { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            let _ = wire::send(&mut self.channel, &Message::Cancel(wire::reason(&text)));
            let _ = self.channel.close();
        }
        self.failed.get_or_insert(error).clone()
    }

    fn channel_events(&mut self) -> Result<(), TransferError> {
        while let Some(event) = self.channel.poll_event() {
            match event {
                Event::HandshakeComplete => self.side.established(&self.channel, self.now)?,
                Event::PeerClosed if !self.side.finished() => {
                    return Err(TransferError::PeerEnded);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn input_inner(&mut self, input: &[u8], consumed: &mut usize) -> Result<(), TransferError> {
        loop {
            self.side.advance(&mut self.channel, self.now)?;
            if *consumed == input.len() || self.side.input_blocked(&self.channel) {
                return Ok(());
            }
            let rest = &input[*consumed..];
            let n = match self.side.placement() {
                Some(placement) => self
                    .channel
                    .handle_input_placing(self.now, rest, placement)?,
                None => self.channel.handle_input(self.now, rest)?,
            };
            *consumed += n;
            self.channel_events()?;
            let limits = self.side.limits();
            if let Some(record) = self.channel.take_message() {
                let message = Message::decode(record, limits)?;
                self.side.message(self.now, message)?;
            } else if let Some((head, len)) = self.channel.take_placed() {
                let message = Message::decode(head, limits)?;
                self.side.placed(self.now, message, len)?;
            } else if n == 0 {
                return Ok(());
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

    /// Lets the side act on something that happened outside the channel (a disk
    /// completion, a user decision).
    pub(crate) fn after(
        &mut self,
        now: Timestamp,
        result: Result<(), TransferError>,
    ) -> Result<(), TransferError> {
        self.check()?;
        self.now = self.now.max(now);
        let result = result.and_then(|()| self.side.advance(&mut self.channel, self.now));
        result.map_err(|error| self.fail(error))
    }

    pub(crate) fn handle_timeout(&mut self, now: Timestamp) -> Result<(), TransferError> {
        self.check()?;
        self.now = self.now.max(now);
        let result = (|| {
            self.channel.handle_timeout(self.now)?;
            self.channel_events()?;
            if self.side.deadline().is_some_and(|at| at <= self.now) {
                return Err(TransferError::Stalled(self.side.stall_timeout()));
            }
            self.side.advance(&mut self.channel, self.now)
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
                if self.side.finished() {
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

    /// Parts from now on are composed for the driver's threads to seal, on the session's
    /// own connection and on its lanes.
    pub(crate) fn offload_sealing(&mut self) {
        self.channel.offload_sealing();
        self.side.lanes_mut().offload_sealing();
    }

    /// The next batch of records to seal: the session's own connection's first, then its
    /// lanes'.
    pub(crate) fn poll_seal_work(&mut self) -> Option<SealWork> {
        self.channel
            .poll_seal_work()
            .or_else(|| self.side.lanes_mut().poll_seal_work())
    }

    /// A batch from [`Connection::poll_seal_work`] is back.
    pub(crate) fn seal_done(&mut self, work: SealWork) -> Result<(), TransferError> {
        if work.lane.is_some() {
            return self
                .side
                .lanes_mut()
                .seal_done(work)
                .map_err(|error| self.fail(error));
        }
        match self.channel.seal_done(work) {
            Ok(()) => Ok(()),
            Err(error) if self.channel.error().is_some() => Err(self.fail(error.into())),
            Err(_) => Err(misuse(
                "sealed records came back that the session did not hand out",
            )),
        }
    }

    /// Records composed for the driver's threads and not yet back.
    pub(crate) fn sealing_pending(&self) -> bool {
        self.channel.sealing_pending() || self.side.lanes().sealing_pending()
    }

    /// `n` bytes of a lane's were written: the lane's freed room is refilled at once.
    pub(crate) fn advance_lane_transmit(&mut self, lane: u8, n: usize) {
        self.side.lanes_mut().advance(lane, n);
        self.drained();
    }

    /// A lane hello arrived: the lane it opens, if the session takes it.
    pub(crate) fn join_lane(&mut self, hello: &[u8; LANE_HELLO_LEN]) -> Result<u8, LaneRefused> {
        if self.failed.is_some() || self.side.finished() {
            return Err(LaneRefused::NotNow);
        }
        self.side.join_lane(&self.channel, hello)
    }

    /// Bytes from a lane's connection; returns how many were taken.
    pub(crate) fn handle_lane_input(
        &mut self,
        now: Timestamp,
        lane: u8,
        input: &[u8],
    ) -> Result<usize, TransferError> {
        self.check()?;
        self.now = self.now.max(now);
        let mut consumed = 0;
        match self.side.lane_input(self.now, lane, input, &mut consumed) {
            Ok(()) => {
                self.drained();
                Ok(consumed)
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// A lane's connection is gone: the side sends what it carried again elsewhere.
    pub(crate) fn lane_closed(&mut self, now: Timestamp, lane: u8) {
        self.now = self.now.max(now);
        if self.side.finished() {
            // The peer closes its lanes as it leaves: nothing is lost, and a notice
            // would only meet a closed connection.
            return;
        }
        self.side.lanes_mut().closed(lane);
        self.drained();
    }

    /// The driver has drained a queue: work that waited for room in it can go on.
    pub(crate) fn drained(&mut self) {
        if self.failed.is_none()
            && let Err(error) = self.side.advance(&mut self.channel, self.now)
        {
            self.fail(error);
        }
    }

    /// The next output: events first (so that progress shows while disk work goes on),
    /// then disk commands; once both queues are empty, work that waited for room in them
    /// goes on, and if that brings nothing, the timeout.
    pub(crate) fn poll_output(&mut self) -> Output {
        let next = |side: &mut S| {
            let out = side.outputs();
            out.poll_event()
                .map(Output::Event)
                .or_else(|| out.poll_disk().map(Output::Disk))
        };
        if let Some(output) = next(&mut self.side) {
            return output;
        }
        self.drained();
        next(&mut self.side).unwrap_or_else(|| Output::Timeout(self.poll_timeout()))
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
        self.side.finished()
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
            self.side.deadline(),
            self.side.wake_at(),
            self.channel.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.max(self.now))
    }
}
