//! The secure channel: hellos, key confirmation and records, as a sans-IO state machine.
//!
//! # Driving a channel
//! A driver owns the socket and the clock. After creating a [`Channel`] and after every
//! `handle_*` or `send_*` call, it drains the outputs in this order:
//! 1. [`Channel::poll_event`] until `None`;
//! 2. [`Channel::take_message`]: at most one application message is pending at a time.
//!    `handle_input` stops consuming bytes while one is waiting (returning how many it
//!    took), so the driver takes it, then offers the rest of its input again. Leaving a
//!    message untaken is how an application exerts backpressure on the peer;
//! 3. [`Channel::poll_transmit`]: write those bytes to the socket and report how many
//!    were written with [`Channel::advance_transmit`];
//! 4. [`Channel::poll_timeout`]: call [`Channel::handle_timeout`] when that time comes.
//!
//! Any `handle_*` call that returns an error leaves the channel failed: every later call
//! returns the same error and nothing new is sealed. In every case, close the socket only
//! once [`Channel::poll_transmit`] is empty, so that what this side sealed (its `close`,
//! or the confirmation that tells a peer with the wrong token why it failed) arrives.

use std::collections::VecDeque;

use crate::config::{Config, ConfigError};
use crate::crypto::{EphemeralKey, RecordCipher, TAG_LEN};
use crate::entropy::Entropy;
use crate::error::{Error, TimeoutPhase};
use crate::handshake::{self, HELLO_LEN, Role};
use crate::lane::LaneSecret;
use crate::opening::{OpenQueue, OpenWork, Taken};
use crate::record::{
    ContentType, Direction, HEADER_LEN, Placement, RecordReader, TransmitBuffer, sealed_len,
};
use crate::sealing::{NotHandedOut, SealWork};
use crate::time::Timestamp;
use crate::token::Token;

/// Something the application should know about; see the module docs for when to poll.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Both sides proved they hold the same key: application messages may flow.
    HandshakeComplete,
    /// The peer said it will send nothing more.
    PeerClosed,
}

/// Why a message could not be queued. Unlike [`Error`], these leave the channel usable
/// (except `Failed`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The handshake has not completed; wait for [`Event::HandshakeComplete`].
    #[error("the handshake has not completed yet")]
    NotEstablished,
    /// The message exceeds the configured record payload.
    #[error("a message of {len} bytes exceeds the record limit of {max} bytes")]
    TooLarge {
        /// The message length.
        len: usize,
        /// See [`Channel::max_message_len`].
        max: usize,
    },
    /// Not enough room in the send buffer now; transmit pending bytes and try again.
    #[error("the send buffer is full ({free} bytes free, {needed} needed)")]
    Backpressure {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes free now.
        free: usize,
    },
    /// [`Channel::close`] was called.
    #[error("the channel was closed by this side")]
    Closed,
    /// The channel failed earlier.
    #[error("the channel failed: {0}")]
    Failed(Error),
}

#[derive(Clone, Copy)]
enum Timer {
    Handshake = 0,
    Idle = 1,
    Keepalive = 2,
}

/// The channel's timers as a fixed table: arming one never allocates.
#[derive(Default)]
struct Timers([Option<Timestamp>; 3]);

impl Timers {
    fn set(&mut self, timer: Timer, at: Timestamp) {
        self.0[timer as usize] = Some(at);
    }
    fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }
    fn expired(&self, timer: Timer, now: Timestamp) -> bool {
        self.0[timer as usize].is_some_and(|at| at <= now)
    }
    fn next(&self) -> Option<Timestamp> {
        self.0.iter().flatten().min().copied()
    }
}

struct HelloState {
    key: EphemeralKey,
    our_hello: [u8; HELLO_LEN],
    peer_hello: [u8; HELLO_LEN],
    received: usize,
}

struct Keyed {
    transcript: [u8; 32],
    /// What the session's lanes derive their keys and proofs from.
    lanes: LaneSecret,
    /// The smaller of our record limit and the peer's: what we may send.
    send_limit: usize,
    outgoing: Direction,
    incoming: Direction,
    confirmed: bool,
}

enum State {
    Hello(Box<HelloState>),
    Keyed(Keyed),
}

enum Delivery {
    None,
    Ready(core::ops::Range<usize>),
    /// A data record whose payload's head is here, and whose next `len` bytes went
    /// where the placement chose.
    Placed {
        head: core::ops::Range<usize>,
        len: usize,
    },
}

/// One end of an encrypted, authenticated connection, without any IO.
pub struct Channel {
    role: Role,
    token: Token,
    config: Config,
    state: State,
    tx: TransmitBuffer,
    rx: RecordReader,
    timers: Timers,
    events: VecDeque<Event>,
    delivery: Delivery,
    now: Timestamp,
    failed: Option<Error>,
    peer_closed: bool,
    closed: bool,
    /// Data records with a tail (parts) are composed for a driver's threads to seal
    /// ([`Channel::offload_sealing`]).
    offload_sealing: bool,
    /// Records the driver showed before giving them, to open on its threads
    /// ([`Channel::offload_opening`]).
    opening: Option<Box<OpenQueue>>,
}

impl Channel {
    /// A channel for `role` that authenticates with `token`. Its hello is ready to transmit
    /// at once; the ephemeral key comes from `entropy`.
    pub fn new(
        role: Role,
        token: Token,
        config: Config,
        entropy: &mut dyn Entropy,
        now: Timestamp,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let key = EphemeralKey::generate(entropy);
        // validate() bounds the payload to 16 MiB, so it fits in the hello's u32.
        let record_limit = u32::try_from(config.max_record_payload).unwrap_or(u32::MAX);
        let our_hello = handshake::encode_hello(role, record_limit, key.public());
        let mut tx = TransmitBuffer::new(config.send_buffer);
        if let Some(out) = tx.append(HELLO_LEN) {
            out.copy_from_slice(&our_hello);
        }
        let mut timers = Timers::default();
        timers.set(
            Timer::Handshake,
            now.saturating_add(config.handshake_timeout),
        );
        Ok(Channel {
            role,
            token,
            rx: RecordReader::new(config.max_record_payload),
            state: State::Hello(Box::new(HelloState {
                key,
                our_hello,
                peer_hello: [0; HELLO_LEN],
                received: 0,
            })),
            config,
            tx,
            timers,
            events: VecDeque::with_capacity(2),
            delivery: Delivery::None,
            now,
            failed: None,
            peer_closed: false,
            closed: false,
            offload_sealing: false,
            opening: None,
        })
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once both sides have confirmed the key.
    pub fn is_established(&self) -> bool {
        matches!(&self.state, State::Keyed(keyed) if keyed.confirmed) && self.failed.is_none()
    }

    /// The error the channel failed with, if it has.
    pub fn error(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    /// SHA-256 over both hellos, once they are known. Equal on both ends of an honest
    /// connection; useful for logging and for binding higher layers to this session.
    pub fn transcript_hash(&self) -> Option<[u8; 32]> {
        match &self.state {
            State::Keyed(keyed) => Some(keyed.transcript),
            State::Hello(_) => None,
        }
    }

    /// The secret the session's lanes derive from, once keyed.
    pub(crate) fn lane_secret(&self) -> Option<&LaneSecret> {
        match &self.state {
            State::Keyed(keyed) => Some(&keyed.lanes),
            State::Hello(_) => None,
        }
    }

    /// The largest message [`Channel::send_message`] accepts: the smaller of this side's
    /// and the peer's `max_record_payload` once the hellos are exchanged (each side states
    /// its limit in its hello), this side's before.
    pub fn max_message_len(&self) -> usize {
        match &self.state {
            State::Keyed(keyed) => keyed.send_limit,
            State::Hello(_) => self.config.max_record_payload,
        }
    }

    /// The largest message that fits in the send buffer right now.
    pub fn send_capacity(&self) -> usize {
        self.send_room().min(self.max_message_len())
    }

    /// Payload bytes the send buffer could take right now across any number of records
    /// (not capped at one record): what a sender budgets several messages against.
    pub fn send_room(&self) -> usize {
        self.tx.free().saturating_sub(sealed_len(0))
    }

    fn fail(&mut self, error: Error) -> Error {
        self.timers = Timers::default();
        self.failed = Some(error.clone());
        error
    }

    fn check_alive(&self) -> Result<(), Error> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn advance_clock(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
    }

    fn arm(&mut self, timer: Timer) {
        let after = match timer {
            Timer::Handshake => self.config.handshake_timeout,
            Timer::Idle => self.config.idle_timeout,
            Timer::Keepalive => self.config.keepalive_interval,
        };
        self.timers.set(timer, self.now.saturating_add(after));
    }

    /// Feeds bytes received from the peer; returns how many were consumed. Fewer than
    /// `input.len()` means a message is waiting in [`Channel::take_message`]: take it and
    /// offer the rest again.
    pub fn handle_input(&mut self, now: Timestamp, input: &[u8]) -> Result<usize, Error> {
        self.read_input(now, input, None)
    }

    /// As [`Channel::handle_input`], with a data record that comes whole in `input`
    /// decrypted, past its first bytes, where `placement` chooses: then
    /// [`Channel::take_placed`] gives those first bytes instead of
    /// [`Channel::take_message`] giving the whole message.
    pub(crate) fn handle_input_placing(
        &mut self,
        now: Timestamp,
        input: &[u8],
        placement: &mut dyn Placement,
    ) -> Result<usize, Error> {
        self.read_input(now, input, Some(placement))
    }

    fn read_input(
        &mut self,
        now: Timestamp,
        input: &[u8],
        mut placement: Option<&mut (dyn Placement + '_)>,
    ) -> Result<usize, Error> {
        self.check_alive()?;
        self.advance_clock(now);
        let mut consumed = 0;
        while consumed < input.len() && matches!(self.delivery, Delivery::None) {
            // The next record is out being opened on a thread: it is taken once back.
            if self.rx.partial_len() == 0 && self.input_waits() {
                break;
            }
            let rest = &input[consumed..];
            let step = if self.peer_closed {
                Err(Error::DataAfterClose)
            } else if matches!(self.state, State::Hello(_)) {
                self.read_hello(rest)
            } else {
                self.read_record(rest, placement.as_deref_mut())
            };
            match step {
                Ok(n) => consumed += n,
                Err(error) => return Err(self.fail(error)),
            }
        }
        if consumed > 0 && self.is_established() && !self.peer_closed {
            self.arm(Timer::Idle);
        }
        Ok(consumed)
    }

    fn read_hello(&mut self, input: &[u8]) -> Result<usize, Error> {
        let State::Hello(hello) = &mut self.state else {
            return Ok(0);
        };
        let n = (HELLO_LEN - hello.received).min(input.len());
        hello.peer_hello[hello.received..hello.received + n].copy_from_slice(&input[..n]);
        hello.received += n;
        handshake::check_hello_prefix(&hello.peer_hello[..hello.received], self.role)?;
        if hello.received < HELLO_LEN {
            return Ok(n);
        }
        let schedule = handshake::key_schedule(
            &hello.key,
            self.role,
            &hello.our_hello,
            &hello.peer_hello,
            &self.token,
        )?;
        let send_limit =
            handshake::hello_record_limit(&hello.peer_hello).min(self.config.max_record_payload);
        let (ours, theirs) = match self.role {
            Role::Sender => (
                &schedule.keys.sender_to_receiver,
                &schedule.keys.receiver_to_sender,
            ),
            Role::Receiver => (
                &schedule.keys.receiver_to_sender,
                &schedule.keys.sender_to_receiver,
            ),
        };
        self.state = State::Keyed(Keyed {
            transcript: schedule.transcript,
            lanes: LaneSecret::new(
                self.token.as_bytes(),
                &schedule.shared_secret,
                &schedule.transcript,
            ),
            send_limit,
            outgoing: Direction::new(RecordCipher::new(ours)),
            incoming: Direction::new(RecordCipher::new(theirs)),
            confirmed: false,
        });
        // The confirmation proves we derived the same keys; the peer releases nothing
        // before it has checked it.
        self.seal(ContentType::Confirm, &schedule.transcript)?;
        Ok(n)
    }

    fn read_record(
        &mut self,
        input: &[u8],
        placement: Option<&mut (dyn Placement + '_)>,
    ) -> Result<usize, Error> {
        let State::Keyed(keyed) = &mut self.state else {
            return Ok(0);
        };
        let record = keyed.incoming.sequence();
        // Only data is placed, and data only counts once the peer proved its key.
        let mut placement = placement.filter(|_| keyed.confirmed);
        // A record a driver's thread opened is taken from there, once whole here.
        let mut opening = self.opening.as_deref_mut().filter(|_| keyed.confirmed);
        // The work must be for the record the stream brings, header and tag alike (a
        // driver that showed other bytes than it gives gets the record opened here).
        let mut opened_there = |rx: &mut RecordReader,
                                header: [u8; HEADER_LEN],
                                tag: &[u8],
                                direction: &mut Direction,
                                placement| {
            match opening.as_deref_mut().map(|o| o.take(record)) {
                Some(Taken::Opened(work)) if work.header() == header && work.tag() == tag => {
                    let opened = rx.take_opened(header, &work, direction, placement);
                    if let Some(opening) = opening.as_deref_mut() {
                        opening.recycle(work);
                    }
                    opened.map(Some)
                }
                Some(Taken::Forged(work)) if work.header() == header && work.tag() == tag => {
                    Err(RecordReader::forged(record))
                }
                Some(Taken::NotRun) => Err(Error::Internal(
                    "a record came back from the driver unopened",
                )),
                _ => Ok(None),
            }
        };
        let (n, opened) = match self.rx.whole_len(input)? {
            Some(total) => {
                let mut header = [0u8; HEADER_LEN];
                header.copy_from_slice(&input[..HEADER_LEN]);
                let tag = &input[total - TAG_LEN..total];
                let there = opened_there(
                    &mut self.rx,
                    header,
                    tag,
                    &mut keyed.incoming,
                    placement.as_deref_mut(),
                )?;
                match there {
                    Some(opened) => (total, opened),
                    None => self
                        .rx
                        .take_whole(input, &mut keyed.incoming, placement.as_deref_mut())?
                        .ok_or(Error::Internal("a whole record was not taken whole"))?,
                }
            }
            None => {
                let (n, complete) = self.rx.push(input)?;
                if !complete {
                    return Ok(n);
                }
                let (header, tag) = (self.rx.gathered_header(), self.rx.gathered_tag());
                let there = opened_there(
                    &mut self.rx,
                    header,
                    &tag,
                    &mut keyed.incoming,
                    placement.as_deref_mut(),
                )?;
                match there {
                    Some(opened) => (n, opened),
                    None => (n, self.rx.open(&mut keyed.incoming, placement)?),
                }
            }
        };
        let unexpected = |why| Error::UnexpectedRecord { record, why };
        match (opened.content, keyed.confirmed) {
            (ContentType::Confirm, false) => {
                if self.rx.bytes(opened.payload) != keyed.transcript {
                    return Err(Error::AuthenticationFailed);
                }
                keyed.confirmed = true;
                self.events.push_back(Event::HandshakeComplete);
                self.timers.clear(Timer::Handshake);
                self.arm(Timer::Idle);
                self.arm(Timer::Keepalive);
                self.rx.clear();
            }
            (ContentType::Confirm, true) => return Err(unexpected("a second key confirmation")),
            (_, false) => return Err(unexpected("a record before the key confirmation")),
            (ContentType::Data, true) => {
                self.delivery = match opened.placed {
                    Some(len) => Delivery::Placed {
                        head: opened.payload,
                        len,
                    },
                    None => Delivery::Ready(opened.payload),
                }
            }
            (ContentType::Keepalive, true) => {
                if !opened.payload.is_empty() {
                    return Err(unexpected("a keepalive with a payload"));
                }
                self.rx.clear();
            }
            (ContentType::Close, true) => {
                if !opened.payload.is_empty() {
                    return Err(unexpected("a close with a payload"));
                }
                self.peer_closed = true;
                // The peer will send nothing more; silence is now expected.
                self.timers.clear(Timer::Idle);
                self.events.push_back(Event::PeerClosed);
                self.rx.clear();
            }
        }
        Ok(n)
    }

    /// Reports that the peer closed its end of the stream. Fine after
    /// [`Event::PeerClosed`]; anywhere else it is an error naming what was cut short.
    pub fn handle_eof(&mut self, now: Timestamp) -> Result<(), Error> {
        self.check_alive()?;
        self.advance_clock(now);
        if self.peer_closed {
            return Ok(());
        }
        let mid_hello = matches!(&self.state, State::Hello(h) if h.received > 0);
        let error = if mid_hello || self.rx.partial_len() > 0 {
            Error::Truncated
        } else {
            Error::UnexpectedEof
        };
        Err(self.fail(error))
    }

    /// Fires every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Result<(), Error> {
        self.check_alive()?;
        self.advance_clock(now);
        if self.timers.expired(Timer::Handshake, self.now) {
            let after = self.config.handshake_timeout;
            return Err(self.fail(Error::Timeout {
                phase: TimeoutPhase::Handshake,
                after,
            }));
        }
        if self.timers.expired(Timer::Idle, self.now) {
            let after = self.config.idle_timeout;
            return Err(self.fail(Error::Timeout {
                phase: TimeoutPhase::Idle,
                after,
            }));
        }
        if self.timers.expired(Timer::Keepalive, self.now) {
            if self.tx.free() >= sealed_len(0) {
                if let Err(error) = self.seal(ContentType::Keepalive, &[]) {
                    return Err(self.fail(error));
                }
            } else {
                // Records are waiting to go out anyway; they will keep the peer awake.
                self.arm(Timer::Keepalive);
            }
        }
        Ok(())
    }

    /// The earliest time [`Channel::handle_timeout`] has work to do; never earlier than
    /// the latest `now` the channel was given.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.next().map(|at| at.max(self.now))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The application message that arrived, if one is waiting. It counts as consumed
    /// at once; the slice stays valid until the next call on the channel.
    pub fn take_message(&mut self) -> Option<&[u8]> {
        let Delivery::Ready(range) = &self.delivery else {
            return None;
        };
        let range = range.clone();
        self.delivery = Delivery::None;
        self.rx.clear();
        Some(self.rx.bytes(range))
    }

    /// The head of the data record whose rest was placed ([`Channel::handle_input_placing`]),
    /// and how many bytes were placed.
    pub(crate) fn take_placed(&mut self) -> Option<(&[u8], usize)> {
        let Delivery::Placed { head, len } = &self.delivery else {
            return None;
        };
        let (head, len) = (head.clone(), *len);
        self.delivery = Delivery::None;
        self.rx.clear();
        Some((self.rx.bytes(head), len))
    }

    /// Bytes ready for the wire. After a failure, what was sealed before it is still
    /// offered (so a peer with the wrong token learns "authentication failed" from our
    /// confirmation instead of waiting for a timeout); nothing new is added.
    pub fn poll_transmit(&self) -> &[u8] {
        self.tx.pending()
    }

    /// Marks the first `n` bytes of [`Channel::poll_transmit`] as written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx.advance(n);
    }

    /// From now on, messages sent with a tail ([`Channel::send_with_tail`]: bulk data)
    /// are composed for the driver to seal on threads of its own
    /// ([`crate::sealing`]): it takes each batch from [`Channel::poll_seal_work`], runs it
    /// anywhere ([`SealWork::run`]), and gives it back with [`Channel::seal_done`]. What is
    /// composed behind a batch goes to the wire only after it; while
    /// [`Channel::sealing_pending`] says so, an empty [`Channel::poll_transmit`] does not
    /// mean everything went out.
    pub fn offload_sealing(&mut self) {
        self.offload_sealing = true;
    }

    /// The next batch of records to seal, if one is waiting (after any send); only with
    /// [`Channel::offload_sealing`].
    pub fn poll_seal_work(&mut self) -> Option<SealWork> {
        self.tx.poll_seal_work()
    }

    /// A batch from [`Channel::poll_seal_work`] has run; its records, and those behind it
    /// that are ready, can go to the wire. A batch this channel did not hand out is
    /// refused ([`Error::Internal`]) and the channel goes on; one whose records would not
    /// seal fails it.
    pub fn seal_done(&mut self, work: SealWork) -> Result<(), Error> {
        match self.tx.seal_done(work) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.fail(Error::Internal(
                "a batch of records came back unsealed (not run, or the AEAD refused)",
            ))),
            Err(NotHandedOut) => Err(Error::Internal(
                "sealed records came back that this channel did not hand out",
            )),
        }
    }

    /// Records composed for threads to seal are waiting to be handed out or are out.
    pub fn sealing_pending(&self) -> bool {
        self.tx.sealing_pending()
    }

    /// From now on the driver shows the channel every chunk of its input as it reads it,
    /// in order, before it gives it to [`Channel::handle_input`] ([`Channel::pre_open`]),
    /// and the records wholly inside each chunk are opened on its threads
    /// ([`crate::opening`]): [`Channel::poll_open_work`], [`OpenWork::run`] anywhere,
    /// [`Channel::open_done`]. Only before any input has been given (later it does
    /// nothing: the scan must see the stream from its start).
    pub fn offload_opening(&mut self) {
        let fresh = matches!(&self.state, State::Hello(hello) if hello.received == 0);
        if fresh && self.opening.is_none() {
            let capacity = self
                .config
                .send_buffer
                .max(sealed_len(self.config.max_record_payload));
            self.opening = Some(Box::new(OpenQueue::new(
                HELLO_LEN,
                self.config.max_record_payload,
                capacity,
            )));
        }
    }

    /// Bytes the driver read and will give to [`Channel::handle_input`] next, after the
    /// ones it showed before: the records wholly inside them (once the keys exist) are
    /// queued to be opened on its threads, as far as the queue has room.
    pub fn pre_open(&mut self, input: &[u8]) {
        let Some(opening) = &mut self.opening else {
            return;
        };
        let cipher = match &self.state {
            State::Keyed(keyed) => Some(keyed.incoming.cipher()),
            State::Hello(_) => None,
        };
        // The key confirmation (record 0) is the reader's own.
        opening.scan(input, cipher, 1);
    }

    /// The next record to open on a thread, if one waits.
    pub fn poll_open_work(&mut self) -> Option<OpenWork> {
        self.opening.as_mut()?.poll()
    }

    /// A record from [`Channel::poll_open_work`] has run. One from another connection is
    /// refused ([`Error::Internal`]), and the channel goes on.
    pub fn open_done(&mut self, work: OpenWork) -> Result<(), Error> {
        let refused =
            Error::Internal("an opened record came back that this channel did not hand out");
        let (Some(opening), State::Keyed(keyed)) = (&mut self.opening, &self.state) else {
            return Err(refused);
        };
        opening
            .done(work, keyed.incoming.cipher())
            .map_err(|_| refused)
    }

    /// Records wait to be handed out to open, or are out.
    pub fn opening_pending(&self) -> bool {
        self.opening
            .as_ref()
            .is_some_and(|opening| opening.pending())
    }

    /// The next record the reader will reach is being opened on a thread:
    /// [`Channel::handle_input`] takes nothing until it is back (a driver waits for a
    /// record to come back).
    pub fn input_waits(&self) -> bool {
        match (&self.opening, &self.state) {
            (Some(opening), State::Keyed(keyed)) => opening.waits_at(keyed.incoming.sequence()),
            _ => false,
        }
    }

    /// Queues an application message.
    pub fn send_message(&mut self, message: &[u8]) -> Result<(), SendError> {
        self.send_with(message.len(), |buf| buf.copy_from_slice(message))
    }

    /// Queues an application message of `len` bytes that `fill` writes straight into the
    /// send buffer, sparing a copy on the bulk-data path.
    pub fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), SendError> {
        self.send_with_tail(len, fill, &[])
    }

    /// Queues an application message of `head_len` bytes that `fill` writes straight into
    /// the send buffer, followed by `tail`, which is encrypted from where it is into the
    /// send buffer: a bulk payload is never copied on its own.
    pub fn send_with_tail(
        &mut self,
        head_len: usize,
        fill: impl FnOnce(&mut [u8]),
        tail: &[u8],
    ) -> Result<(), SendError> {
        let len = head_len + tail.len();
        self.check_sendable(len)?;
        self.seal_with(
            ContentType::Data,
            head_len,
            |buf| {
                fill(buf);
                buf.len()
            },
            tail,
        )
        .map_err(|error| SendError::Failed(self.fail(error)))
    }

    /// Queues a message of at most `max_len` bytes that `fill` writes straight into the
    /// send buffer, returning how many bytes it wrote: for messages whose exact size is
    /// only known once encoded.
    pub fn send_up_to(
        &mut self,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<(), SendError> {
        self.check_sendable(max_len)?;
        self.seal_with(ContentType::Data, max_len, fill, &[])
            .map_err(|error| SendError::Failed(self.fail(error)))
    }

    /// The preconditions of sealing a record of `len` payload bytes for the application.
    fn check_sendable(&self, len: usize) -> Result<(), SendError> {
        if let Some(error) = &self.failed {
            return Err(SendError::Failed(error.clone()));
        }
        if self.closed {
            return Err(SendError::Closed);
        }
        if !self.is_established() {
            return Err(SendError::NotEstablished);
        }
        let max = self.max_message_len();
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        let needed = sealed_len(len);
        let free = self.tx.free();
        if needed > free {
            return Err(SendError::Backpressure { needed, free });
        }
        Ok(())
    }

    /// Tells the peer this side will send nothing more. Queued behind what is already
    /// waiting; the driver closes the socket once [`Channel::poll_transmit`] is empty.
    pub fn close(&mut self) -> Result<(), SendError> {
        if self.closed && self.failed.is_none() {
            return Ok(());
        }
        self.check_sendable(0)?;
        self.seal(ContentType::Close, &[])
            .map_err(|error| SendError::Failed(self.fail(error)))?;
        self.closed = true;
        self.timers.clear(Timer::Keepalive);
        Ok(())
    }

    fn seal(&mut self, content: ContentType, payload: &[u8]) -> Result<(), Error> {
        self.seal_with(
            content,
            payload.len(),
            |buf| {
                buf.copy_from_slice(payload);
                buf.len()
            },
            &[],
        )
    }

    /// Appends one sealed record: at most `max_len` payload bytes that `fill` writes
    /// (returning how many), then `tail`, encrypted from where it is; the caller has
    /// checked that it fits. A record that cannot be sealed is removed again, so no
    /// plaintext is ever left to transmit.
    fn seal_with(
        &mut self,
        content: ContentType,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
        tail: &[u8],
    ) -> Result<(), Error> {
        let State::Keyed(keyed) = &mut self.state else {
            return Err(Error::Internal(
                "a record was sealed before the keys existed",
            ));
        };
        keyed.outgoing.check_sequence()?;
        if self.offload_sealing && !tail.is_empty() {
            // A part: composed here, sealed on a driver's thread.
            self.tx.offload_sealing(keyed.outgoing.cipher());
            let total = sealed_len(max_len + tail.len());
            let Some(out) = self.tx.append_deferred(total) else {
                return Err(Error::SendBufferTooSmall { needed: total });
            };
            let sequence =
                compose_with_tail(&mut keyed.outgoing, content, out, max_len, fill, tail)
                    .inspect_err(|_| self.tx.truncate_last(total))?;
            if !self.tx.defer_last(total, sequence) {
                return Err(Error::Internal(
                    "a composed record could not be queued to seal",
                ));
            }
            if keyed.confirmed && !self.closed {
                self.arm(Timer::Keepalive);
            }
            return Ok(());
        }
        let reserved = sealed_len(max_len + tail.len());
        let Some(out) = self.tx.append(reserved) else {
            return Err(Error::SendBufferTooSmall { needed: reserved });
        };
        let len = fill(&mut out[HEADER_LEN + 1..HEADER_LEN + 1 + max_len]).min(max_len);
        let total = sealed_len(len + tail.len());
        let sealed = keyed.outgoing.seal(content, &mut out[..total], tail);
        // Give back what the message did not use (it sits at the end of the buffer).
        self.tx.truncate_last(reserved - total);
        if let Err(error) = sealed {
            self.tx.truncate_last(total);
            return Err(error);
        }
        if keyed.confirmed && !self.closed {
            self.arm(Timer::Keepalive);
        }
        Ok(())
    }
}

/// Composes a record for a thread to seal: `fill` writes its head (exactly `head_len`
/// bytes: the caller checked the record's size against it), then `tail` is copied in
/// behind it, then the header and sequence number are fixed.
pub(crate) fn compose_with_tail(
    direction: &mut Direction,
    content: ContentType,
    out: &mut [u8],
    head_len: usize,
    fill: impl FnOnce(&mut [u8]) -> usize,
    tail: &[u8],
) -> Result<u64, Error> {
    let head = HEADER_LEN + 1;
    let written = fill(&mut out[head..head + head_len]);
    if written != head_len {
        return Err(Error::Internal("a part's head was not the length it said"));
    }
    out[head + head_len..head + head_len + tail.len()].copy_from_slice(tail);
    direction.compose(content, out)
}
