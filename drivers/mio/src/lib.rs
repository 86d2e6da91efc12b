//! mio event-loop driver for Ferry: many sessions on one `mio::Poll`.
//!
//! Each connection owns its session and the std driver's per-session work
//! ([`Sending`], [`Receiving`]): the same source reads, `.part` files, lock file, and
//! peer check, nothing copied. File reads and writes run inline on the loop: they hit the
//! page cache, and durability (`syncfs` and the lock) already happens on the std
//! driver's checkpoint thread; `cargo run --release --example bench` puts one receiver
//! through this loop beside the blocking driver. The sessions' SHA-256 passes run on one
//! thread beside the loop (each session on a chain of its own, the loop woken as each
//! pass comes back), where the blocking driver would give a session a thread of its own
//! (`ferry_std::hashing::wanted`).
//!
//! Sockets are non-blocking and edge-triggered. A session whose socket is full keeps its
//! unsent bytes and stops taking input, which pauses that session only. The loop sleeps
//! in `poll` until a socket is ready or the earliest session timer is due; a busy session
//! yields after a bounded amount of work so that the others get their turn.
//! `FERRY_MIO_TRACE=1` prints each session's state after every turn.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod hashing;
mod lanes;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_core::transfer::{ReceiverSession, SenderSession, Session, TransferError};
use ferry_core::{ConnectionString, Timestamp};
use ferry_std::conn::{Traffic, last_words_at_most};
use ferry_std::peer::PeerPolicy;
use ferry_std::receive::{ReceiveOptions, ReceiveSummary, Receiving, connect_error};
use ferry_std::send::{SendSummary, Sender, Sending, failure};
use ferry_std::{CheckLine, Clock, DriverError, Report, Reporter};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

use crate::hashing::{LoopHasher, WAKE};
use crate::lanes::{FirstBytes, Lanes, first_bytes, token_lane};

/// Counters a caller can watch while the loop runs.
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Returns from `poll`: readiness, a due timer, or a busy session's turn.
    pub wakeups: AtomicU64,
}

/// What a connection does outside its socket: carry out its session's outputs (disk
/// commands against its files, events as reports) until the session waits.
pub trait Drain<S> {
    /// True on a receiver: its lanes bring parts (a sender's lanes take them).
    const RECEIVING: bool;

    /// See [`Sending::drain`] and [`Receiving::drain`]: true if it stopped with more to
    /// do (its budget of disk work is spent; the session's turn ends there).
    fn drain(
        &mut self,
        session: &mut S,
        now: Timestamp,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, DriverError>;

    /// Lanes the session asked for since the last call (a receiver's), to connect.
    fn lanes_wanted(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

impl Drain<SenderSession> for Sending {
    const RECEIVING: bool = false;

    fn drain(
        &mut self,
        session: &mut SenderSession,
        now: Timestamp,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, DriverError> {
        Sending::drain(self, session, now, reporter)
    }
}

impl Drain<ReceiverSession> for Receiving {
    const RECEIVING: bool = true;

    fn drain(
        &mut self,
        session: &mut ReceiverSession,
        now: Timestamp,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, DriverError> {
        Receiving::drain(self, session, now, reporter)
    }

    fn lanes_wanted(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.lanes_wanted)
    }
}

/// Reads (and writes) one session may do before the loop moves to the next.
const TURN: usize = 32;
const INPUT_BUFFER: usize = 256 << 10;
const LISTENER: Token = Token(usize::MAX);
/// How long an ended session goes on with its last words (a close, a cancel) while the
/// peer takes none of them, and after them reads what the peer sends while it sends
/// something: a slow path may hold seconds of data ahead of a sender's cancel (at most
/// [`last_words_at_most`] in all).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Tokens from here on name connects still under way in [`receive_all`].
const CONNECTING: usize = 1 << 30;
/// Tokens from here on name accepted connections not yet known to be a session or a
/// lane ([`serve`]).
const ARRIVING: usize = 1 << 29;
/// How long [`serve`] waits for the first bytes of a connection from a receiver it is
/// already serving, to tell a lane (whose hello comes at once) from a new session; a
/// client from anywhere else, or one that stays silent that long, gets a session at once.
const LANE_HELLO_WAIT: Duration = Duration::from_millis(250);
/// Connections [`serve`] accepts beyond the receivers it still waits for.
pub const SPARE_CONNECTIONS: usize = 8;

/// One session's reports among several: its lines prefixed with its peer, and the rest
/// to the caller's reporter for that peer, where it has one ([`Reporter::for_peer`]).
struct Prefixed<'a> {
    peer: &'a str,
    inner: &'a mut dyn Reporter,
    /// How far this session's check of a resume is, as lines, where the caller's
    /// reporter does not tell sessions apart.
    check_line: &'a mut CheckLine,
}

impl Reporter for Prefixed<'_> {
    fn info(&mut self, line: &str) {
        self.inner.info(&format!("{}: {line}", self.peer));
    }
    fn report(&mut self, report: &Report<'_>) {
        if let Some(reporter) = self.inner.for_peer(self.peer) {
            reporter.report(report);
        }
    }
    fn start(&mut self, files: usize, bytes: u64) {
        if let Some(reporter) = self.inner.for_peer(self.peer) {
            reporter.start(files, bytes);
        }
    }
    fn progress(&mut self, bytes: u64, files: usize) {
        if let Some(reporter) = self.inner.for_peer(self.peer) {
            reporter.progress(bytes, files);
        }
    }
    fn checking(&mut self, checked: u64, total: u64) {
        if let Some(reporter) = self.inner.for_peer(self.peer) {
            reporter.checking(checked, total);
            return;
        }
        if let Some(line) = self.check_line.due(checked, total) {
            self.info(&line);
        }
    }
}

/// One connection and its session.
struct Conn<S, W> {
    stream: TcpStream,
    peer: SocketAddr,
    label: String,
    session: S,
    work: W,
    /// Bytes read but not yet taken by the session (it takes them as it has room).
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// Edge-triggered readiness: true until a read or write would block.
    readable: bool,
    writable: bool,
    eof: bool,
    traffic: Traffic,
    /// Which of the caller's targets this is.
    tag: usize,
    started: Instant,
    /// The session is over; its last bytes (a close, a cancel with its reason) are being
    /// flushed until this deadline, and, if it failed, the peer's read until it closes.
    closing: Option<(Result<(), DriverError>, Instant, Instant)>,
    /// This side has half-closed the connection after its last words.
    half_closed: bool,
    /// Its lanes (PROTOCOL.md §8), and its slot on the loop (their tokens follow from it).
    lanes: Lanes,
    index: usize,
    /// Its number among the loop's sessions, which names its chain on the hashing
    /// thread (a slot is used again; a number is not).
    id: u64,
    /// How far its check of a resume is, as lines (see [`Prefixed`]).
    check_line: CheckLine,
}

/// How a session's turn ended.
enum Turn {
    /// Waiting for the socket or a timer.
    Idle,
    /// Stopped only because its turn was used up.
    Busy,
    /// The session is over (finished, failed, or the peer left).
    Over(Result<(), DriverError>),
}

impl<S: Session, W: Drain<S>> Conn<S, W> {
    fn new(stream: TcpStream, peer: SocketAddr, session: S, work: W) -> Self {
        Conn {
            stream,
            peer,
            label: peer.to_string(),
            session,
            work,
            input: vec![0u8; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            readable: true,
            writable: true,
            eof: false,
            traffic: Traffic::default(),
            tag: 0,
            started: Instant::now(),
            closing: None,
            half_closed: false,
            lanes: Lanes::new(),
            index: 0,
            id: 0,
            check_line: CheckLine::default(),
        }
    }

    /// Hands the session's waiting SHA-256 passes to the loop's hashing thread, and its
    /// batches of records to its sealing threads, if it has them run there: true if
    /// there were any.
    fn hand_out(&mut self, hasher: Option<&LoopHasher>) -> Result<bool, DriverError> {
        let Some(hasher) = hasher else {
            return Ok(false);
        };
        let mut any = false;
        if self.traffic.hash_thread {
            any |= hasher.dispatch(self.id, &mut self.session)?;
        }
        if self.traffic.aead_threads > 0 {
            any |= hasher.dispatch_sealing(self.id, &mut self.session)?;
        }
        Ok(any)
    }

    fn turn(
        &mut self,
        clock: &Clock,
        registry: &Registry,
        hasher: Option<&LoopHasher>,
        reporter: &mut dyn Reporter,
        trace: bool,
    ) -> Turn {
        if self.closing.is_none() {
            let outcome = self.play(clock, registry, hasher, reporter, trace);
            let Turn::Over(result) = outcome else {
                return outcome;
            };
            let now = Instant::now();
            let at_most = last_words_at_most(self.traffic.sends_parts);
            self.closing = Some((result, now + CLOSE_GRACE, now + at_most));
        }
        // Its last words may sit behind records still being sealed.
        let _ = self.hand_out(hasher);
        self.flush_closing()
    }

    /// Flushes what an ended session still has to say; over once it is out, the peer is
    /// gone, or the grace period has passed. A session that failed (a cancel, say) then
    /// half-closes and reads and drops what the peer still sends until it closes, within
    /// the same grace: closing a socket with unread bytes in it makes the system reset
    /// the connection, and the peer, still sending, would meet the reset before it read
    /// the cancel (the blocking driver's `linger`).
    fn flush_closing(&mut self) -> Turn {
        let (sent, received) = (self.traffic.sent, self.traffic.received);
        while self.writable && !self.session.poll_transmit().is_empty() {
            match self.stream.write(self.session.poll_transmit()) {
                Ok(n) if n > 0 => {
                    self.traffic.sent += n as u64;
                    self.session.advance_transmit(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break,
            }
        }
        let flushed = (self.session.poll_transmit().is_empty() || self.writable)
            && !self.session.sealing_pending();
        // The grace runs from the last byte that went out, or, once all has, came in.
        if let Some((_, deadline, cap)) = self.closing.as_mut()
            && self.traffic.sent > sent
        {
            *deadline = (Instant::now() + CLOSE_GRACE).min(*cap);
        }
        let moved = |deadline: &mut Instant, cap: Instant| {
            *deadline = (Instant::now() + CLOSE_GRACE).min(cap);
        };
        match self.closing.take() {
            Some((result, deadline, cap)) if !flushed && Instant::now() < deadline => {
                self.closing = Some((result, deadline, cap));
                Turn::Idle
            }
            Some((result @ Err(_), mut deadline, cap))
                if !self.eof && Instant::now() < deadline =>
            {
                if !self.half_closed {
                    let _ = self.stream.shutdown(Shutdown::Write);
                    self.half_closed = true;
                }
                self.drop_input();
                if self.traffic.received > received {
                    moved(&mut deadline, cap);
                }
                if self.eof {
                    Turn::Over(result)
                } else {
                    self.closing = Some((result, deadline, cap));
                    // Still readable: its turn was used up, not its input.
                    if self.readable {
                        Turn::Busy
                    } else {
                        Turn::Idle
                    }
                }
            }
            Some((result, _, _)) => Turn::Over(result),
            None => Turn::Idle,
        }
    }

    /// Reads and drops what the peer sends until the socket would block, or for a turn's
    /// worth of reads (a peer that never stops sending must not hold the loop); marks the
    /// end of its stream (or a failed read) as `eof`.
    fn drop_input(&mut self) {
        for _ in 0..TURN {
            if !self.readable || self.eof {
                return;
            }
            match self.stream.read(&mut self.input) {
                Ok(0) => self.eof = true,
                Ok(n) => self.traffic.received += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.eof = true,
            }
        }
    }

    fn play(
        &mut self,
        clock: &Clock,
        registry: &Registry,
        hasher: Option<&LoopHasher>,
        reporter: &mut dyn Reporter,
        trace: bool,
    ) -> Turn {
        let label = std::mem::take(&mut self.label);
        let mut check_line = std::mem::take(&mut self.check_line);
        let advanced = self.advance(
            clock,
            registry,
            hasher,
            &mut Prefixed {
                peer: &label,
                inner: reporter,
                check_line: &mut check_line,
            },
        );
        self.label = label;
        self.check_line = check_line;
        if trace {
            eprintln!(
                "turn {} -> {:?} r={} w={} in={}..{} tx={} fin={} eof={} err={:?} timeout={:?}",
                self.peer,
                advanced.as_ref().map_err(|e| e.to_string()),
                self.readable,
                self.writable,
                self.start,
                self.end,
                self.session.poll_transmit().len(),
                self.session.is_finished(),
                self.eof,
                self.session.error(),
                self.session.poll_timeout().map(|t| clock.until(t))
            );
        }
        match advanced {
            // A finished session lost nothing when its last words (a close, a notice
            // about a lane the peer closed as it left) met the peer's closed connection.
            Err(DriverError::Network(_)) if self.session.is_finished() => Turn::Over(Ok(())),
            Err(error) => Turn::Over(Err(error)),
            Ok(_) if self.session.error().is_some() => Turn::Over(Err(DriverError::Transfer(
                self.session
                    .error()
                    .cloned()
                    .unwrap_or(TransferError::PeerEnded),
            ))),
            Ok(_)
                if self.session.poll_transmit().is_empty()
                    && (self.session.is_finished() || self.eof) =>
            {
                Turn::Over(Ok(()))
            }
            Ok(true) => Turn::Busy,
            Ok(false) => Turn::Idle,
        }
    }

    /// Moves bytes until the socket would block, the session waits, or the turn is used
    /// up (`Ok(true)`).
    fn advance(
        &mut self,
        clock: &Clock,
        registry: &Registry,
        hasher: Option<&LoopHasher>,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, DriverError> {
        let now = clock.now();
        if ferry_std::stop::requested() {
            return Err(DriverError::Transfer(
                self.session.cancel(now, ferry_std::stop::reason()),
            ));
        }
        if self.session.poll_timeout().is_some_and(|at| at <= now) {
            self.session.handle_timeout(now)?;
        }
        for _ in 0..TURN {
            let now = clock.now();
            // A drain that spent its budget (a long check of what is already here) ends
            // the turn once the socket is seen to: the other sessions go next.
            let spent = self.work.drain(&mut self.session, now, reporter)?;
            self.hand_out(hasher)?;
            for lane in self.work.lanes_wanted() {
                let (index, peer) = (self.index, self.peer);
                self.lanes
                    .connect(&mut self.session, registry, index, peer, lane, now);
            }
            let mut moved = self
                .lanes
                .service(&mut self.session, registry, now, W::RECEIVING)?;
            if moved {
                self.work.drain(&mut self.session, now, reporter)?;
            }
            while self.writable {
                let pending = self.session.poll_transmit();
                if pending.is_empty() {
                    break;
                }
                match self.stream.write(pending) {
                    Ok(0) => {
                        return Err(DriverError::Network(
                            "the connection closed while sending".into(),
                        ));
                    }
                    Ok(n) => {
                        self.traffic.sent += n as u64;
                        self.session.advance_transmit(n);
                        self.work.drain(&mut self.session, now, reporter)?;
                        moved = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(DriverError::Network(format!("sending failed: {e}"))),
                }
            }
            if self.start < self.end {
                let taken = self
                    .session
                    .handle_input(now, &self.input[self.start..self.end])?;
                self.start += taken;
                // It took nothing while a pass waits to be handed out: hand it out and
                // go on; while all its passes are out, the hashing thread wakes the loop.
                moved |= taken > 0 || self.hand_out(hasher)?;
            } else if self.readable && !self.eof {
                match self.stream.read(&mut self.input) {
                    Ok(0) => {
                        self.eof = true;
                        self.session.handle_eof(now)?;
                        while self.work.drain(&mut self.session, now, reporter)? {}
                    }
                    Ok(n) => {
                        self.traffic.received += n as u64;
                        (self.start, self.end) = (0, n);
                        moved = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => moved = true,
                    Err(e) => {
                        return Err(DriverError::Network(format!("the connection failed: {e}")));
                    }
                }
            }
            if spent && self.session.error().is_none() {
                self.hand_out(hasher)?;
                return Ok(true);
            }
            // A finished session goes round once more: its close still has to be written.
            if !moved || self.session.error().is_some() {
                self.hand_out(hasher)?;
                return Ok(false);
            }
        }
        self.hand_out(hasher)?;
        Ok(true)
    }

    /// When this connection next needs a turn without socket readiness.
    fn next_deadline(&self, clock: &Clock) -> Option<Duration> {
        let connect = self
            .lanes
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        match &self.closing {
            Some((_, deadline, _)) => Some(deadline.saturating_duration_since(Instant::now())),
            None => self
                .session
                .poll_timeout()
                .map(|at| clock.until(at))
                .into_iter()
                .chain(connect)
                .min(),
        }
    }

    /// Half-closes the socket, closes the lanes and takes them all off the loop.
    fn close(&mut self, poll: &Poll) {
        self.lanes.close_all(poll.registry());
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = poll.registry().deregister(&mut self.stream);
    }
}

/// A connection whose session is over, and how it ended.
type Ended<S, W> = (Conn<S, W>, Result<(), DriverError>);

/// The set of connections on one `Poll`, and the waiting.
struct Loop<S, W> {
    poll: Poll,
    events: Events,
    conns: Vec<Option<Conn<S, W>>>,
    clock: Clock,
    /// `FERRY_MIO_TRACE=1`: one line per session turn on stderr, for debugging.
    trace: bool,
    /// The SHA-256 passes' thread, started for the first session that hands them out;
    /// and the number the next session gets.
    hasher: Option<LoopHasher>,
    next_id: u64,
}

impl<S: Session, W: Drain<S>> Loop<S, W> {
    fn new() -> Result<Self, DriverError> {
        Ok(Loop {
            poll: Poll::new()?,
            events: Events::with_capacity(256),
            conns: Vec::new(),
            clock: Clock::new(),
            trace: std::env::var_os("FERRY_MIO_TRACE").is_some(),
            hasher: None,
            next_id: 0,
        })
    }

    fn active(&self) -> usize {
        self.conns.iter().flatten().count()
    }

    fn add(&mut self, mut conn: Conn<S, W>) -> Result<(), DriverError> {
        let index = match self.conns.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.poll.registry().register(
            &mut conn.stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conn.index = index;
        conn.id = self.next_id;
        self.next_id += 1;
        // Its passes go to the loop's hashing thread where the std driver would give them
        // a thread of their own, and a sender's records to the loop's sealing threads
        // where it would seal on threads.
        let peer = Some(conn.peer.ip());
        if ferry_std::hashing::wanted(peer) {
            if self.hasher.is_none() {
                let sealers = if conn.traffic.sends_parts {
                    ferry_std::hashing::aead_threads(peer)
                } else {
                    0
                };
                self.hasher = LoopHasher::start(self.poll.registry(), sealers).ok();
            }
            if let Some(hasher) = &self.hasher {
                conn.session.offload_hashing();
                conn.traffic.hash_thread = true;
                if conn.traffic.sends_parts && hasher.sealers() > 0 {
                    conn.session.offload_sealing();
                    conn.traffic.aead_threads = hasher.sealers();
                    conn.traffic.records_shared = true;
                }
            }
        }
        self.conns[index] = Some(conn);
        Ok(())
    }

    /// Gives each session the passes the hashing thread has done for it, and the
    /// batches the sealing threads have.
    fn take_passes(&mut self) {
        let Some(hasher) = &self.hasher else { return };
        let now = self.clock.now();
        for (id, work) in hasher.back() {
            if let Some(conn) = self.conns.iter_mut().flatten().find(|c| c.id == id) {
                // A pass that cannot be taken ends its session, which its turn reports.
                let _ = conn.session.work_done(now, work);
            }
        }
        for (id, work) in hasher.sealed() {
            if let Some(conn) = self.conns.iter_mut().flatten().find(|c| c.id == id) {
                // So does a batch.
                let _ = conn.session.seal_done(work);
            }
        }
    }

    /// Sleeps until a socket is ready, the earliest timer (or `also`) is due, or at once
    /// if `busy`. Returns the ready tokens that are not connections (the listener, connects
    /// under way).
    fn wait(
        &mut self,
        busy: bool,
        also: Option<Duration>,
        stats: &LoopStats,
    ) -> Result<Vec<Token>, DriverError> {
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.conns
                .iter()
                .flatten()
                .filter_map(|c| c.next_deadline(&self.clock))
                .chain(also)
                .chain(ferry_std::stop::installed().then_some(ferry_std::stop::CHECK_EVERY))
                .min()
                // Whole milliseconds, rounded up: a timer is never polled for early.
                .map(|d| Duration::from_millis(d.as_micros().div_ceil(1000) as u64))
        };
        match self.poll.poll(&mut self.events, timeout) {
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(Vec::new()),
            other => other?,
        }
        stats.wakeups.fetch_add(1, Ordering::Relaxed);
        let mut others = Vec::new();
        let mut woken = false;
        for event in &self.events {
            if event.token() == WAKE {
                woken = true;
                continue;
            }
            let readable = event.is_readable() || event.is_read_closed();
            let writable = event.is_writable() || event.is_write_closed();
            if let Some((index, lane)) = token_lane(event.token()) {
                let socket = self
                    .conns
                    .get_mut(index)
                    .and_then(Option::as_mut)
                    .and_then(|conn| conn.lanes.socket_mut(lane));
                if let Some(socket) = socket {
                    socket.readable |= readable;
                    socket.writable |= writable;
                }
                continue;
            }
            match self.conns.get_mut(event.token().0) {
                Some(Some(conn)) => {
                    conn.readable |= readable;
                    conn.writable |= writable;
                }
                _ => others.push(event.token()),
            }
        }
        if woken {
            self.take_passes();
        }
        Ok(others)
    }

    /// Gives every connection a turn; returns the ended ones and whether any is busy.
    fn turns(&mut self, reporter: &mut dyn Reporter) -> (Vec<Ended<S, W>>, bool) {
        let mut ended = Vec::new();
        let mut busy = false;
        for slot in &mut self.conns {
            let Some(conn) = slot else { continue };
            let hasher = self.hasher.as_ref();
            match conn.turn(
                &self.clock,
                self.poll.registry(),
                hasher,
                reporter,
                self.trace,
            ) {
                Turn::Idle => {}
                Turn::Busy => busy = true,
                Turn::Over(result) => {
                    if let Some(mut conn) = slot.take() {
                        if let Some(hasher) = hasher {
                            hasher.forget(conn.id);
                        }
                        conn.close(&self.poll);
                        ended.push((conn, result));
                    }
                }
            }
        }
        (ended, busy)
    }
}

/// The error of a loop its user stopped (Ctrl-C) with no session left to cancel: the
/// sessions it cancelled were told to resume; with none, it only waited.
fn interrupted(had_sessions: bool) -> DriverError {
    let reason = if had_sessions {
        ferry_std::stop::reason()
    } else {
        ferry_std::stop::reason_while_waiting()
    };
    DriverError::Transfer(TransferError::Cancelled {
        by_peer: false,
        reason: reason.to_owned(),
    })
}

/// What [`serve`] delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeSummary {
    /// Each receiver that confirmed the whole batch, with what its session moved.
    pub delivered: Vec<(SocketAddr, SendSummary)>,
    /// Connections that failed or were refused.
    pub failed_sessions: usize,
}

/// Serves `sender`'s batch to `receivers` receivers, up to that many at once on one
/// event loop (plus [`SPARE_CONNECTIONS`] for clients that fail or stall in their
/// handshake), each with its own session (handshake, resume plan, windows). Returns once
/// `receivers` of them have confirmed the whole batch. A receiver that fails (wrong token,
/// garbage, a stall, a disconnect) is reported on its own line and frees its place.
pub fn serve(
    sender: &mut Sender,
    receivers: usize,
    reporter: &mut dyn Reporter,
    stats: &LoopStats,
) -> Result<ServeSummary, DriverError> {
    let receivers = receivers.max(1);
    let std_listener = sender.listener().try_clone()?;
    std_listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(std_listener);
    let mut event_loop: Loop<SenderSession, Sending> = Loop::new()?;
    event_loop
        .poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut summary = ServeSummary::default();
    let mut pending_accepts = true;
    // Accepted connections whose first bytes will say whether they are a new session or
    // a lane of one under way.
    let mut arriving: Vec<Option<(TcpStream, SocketAddr, Instant)>> = Vec::new();
    // Whether any session ran: a stop then cancelled something a rerun resumes.
    let mut had_sessions = false;
    while summary.delivered.len() < receivers {
        had_sessions |= event_loop.active() > 0;
        if ferry_std::stop::requested() && event_loop.active() == 0 {
            return Err(interrupted(had_sessions));
        }
        // Accept only while there is room (the rest wait in the kernel's backlog), with a
        // few spare places so that clients stuck in their handshake cannot keep the
        // receivers still to come waiting until they time out.
        // Each session may bring up to seven lanes besides.
        let lanes = (ferry_core::lane::MAX_LANES - 1) * event_loop.active();
        let room = |delivered: usize| receivers - delivered + SPARE_CONNECTIONS + lanes;
        let mut accept_failed = false;
        let taken = |event_loop: &Loop<_, _>, arriving: &[Option<_>]| {
            event_loop.active() + arriving.iter().flatten().count()
        };
        while pending_accepts && taken(&event_loop, &arriving) < room(summary.delivered.len()) {
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    pending_accepts = false;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // Out of file descriptors, say: the sessions under way go on, and
                    // accepting is tried again shortly.
                    reporter.info(&format!("cannot accept a connection now: {e}"));
                    accept_failed = true;
                    break;
                }
            };
            if let Err(refusal) = sender.check_peer(peer.ip()) {
                reporter.info(&format!(
                    "refused a connection from {}: {refusal}",
                    peer.ip()
                ));
                summary.failed_sessions += 1;
                continue;
            }
            let slot = arriving
                .iter()
                .position(Option::is_none)
                .unwrap_or_else(|| {
                    arriving.push(None);
                    arriving.len() - 1
                });
            let mut stream = stream;
            event_loop.poll.registry().register(
                &mut stream,
                Token(ARRIVING + slot),
                Interest::READABLE,
            )?;
            arriving[slot] = Some((stream, peer, Instant::now()));
        }
        for slot in &mut arriving {
            let Some((stream, peer, since)) = slot else {
                continue;
            };
            let serving = event_loop
                .conns
                .iter()
                .flatten()
                .any(|conn| conn.peer.ip() == peer.ip());
            let first = first_bytes(stream);
            if matches!(first, FirstBytes::Unknown) && serving && since.elapsed() < LANE_HELLO_WAIT
            {
                continue;
            }
            let Some((mut stream, peer, _)) = slot.take() else {
                continue;
            };
            let registry = event_loop.poll.registry();
            let _ = registry.deregister(&mut stream);
            match first {
                FirstBytes::Gone => {}
                FirstBytes::Lane(hello) => {
                    // A lane must come from where its session's receiver is and prove it
                    // knows the session's secret; anything else is closed.
                    let joined = event_loop.conns.iter_mut().flatten().find_map(|conn| {
                        (conn.peer.ip() == peer.ip())
                            .then(|| conn.session.join_lane(&hello).ok())
                            .flatten()
                            .map(|lane| (conn, lane))
                    });
                    match joined {
                        Some((conn, lane)) => {
                            conn.lanes.attach(registry, conn.index, lane, stream)?
                        }
                        None => {
                            let _ = stream.shutdown(Shutdown::Both);
                            reporter.info(&format!(
                                "refused a connection from {}: a lane of no session here",
                                peer.ip()
                            ));
                        }
                    }
                }
                FirstBytes::Session | FirstBytes::Unknown => {
                    let _ = stream.set_nodelay(true);
                    let (session, work) = sender.start_session(&event_loop.clock)?;
                    let mut conn = Conn::new(stream, peer, session, work);
                    conn.traffic.sends_parts = true;
                    event_loop.add(conn)?;
                    reporter.info(&format!("{peer}: connected"));
                }
            }
        }
        let (ended, busy) = event_loop.turns(reporter);
        had_sessions |= !ended.is_empty();
        for (conn, result) in ended {
            let peer = conn.peer;
            let since = conn.started.elapsed();
            match result.and_then(|()| conn.work.finish(&conn.session)) {
                Ok(mut delivered) => {
                    delivered.wire_bytes = conn.traffic.sent + conn.lanes.carried();
                    delivered.connections = conn.lanes.connections();
                    delivered.hash_thread = conn.traffic.hash_thread;
                    delivered.aead_threads = conn.traffic.aead_threads;
                    delivered.records_shared = conn.traffic.records_shared;
                    delivered.elapsed = since;
                    let missing = match delivered.failed {
                        0 => String::new(),
                        n => format!(", all but {n} files that could not be delivered"),
                    };
                    if let Some(its) = reporter.for_peer(&conn.label) {
                        its.arrived();
                    }
                    reporter.peer_gone(&conn.label);
                    reporter.info(&format!(
                        "{peer}: received the batch ({} bytes in {:.1} s{missing})",
                        delivered.bytes,
                        since.as_secs_f64()
                    ));
                    summary.delivered.push((peer, delivered));
                }
                Err(error) => {
                    summary.failed_sessions += 1;
                    let reason = format!("a receiver from {peer} {}", failure(&error));
                    let lost = Report::ReceiverLost { reason: &reason };
                    match reporter.for_peer(&conn.label) {
                        Some(its) => its.report(&lost),
                        None => reporter.report(&lost),
                    }
                    reporter.peer_gone(&conn.label);
                    reporter.info(&reason);
                }
            }
        }
        if summary.delivered.len() >= receivers {
            break;
        }
        // A place freed while connections wait in the backlog: take them now, since the
        // listener's readiness edge has already been seen.
        let can_accept = pending_accepts
            && !accept_failed
            && taken(&event_loop, &arriving) < room(summary.delivered.len());
        let retry = accept_failed.then_some(Duration::from_millis(100));
        // A connection still silent is looked at again when its wait is over.
        let silent = arriving
            .iter()
            .flatten()
            .map(|(_, _, since)| {
                (*since + LANE_HELLO_WAIT).saturating_duration_since(Instant::now())
            })
            .min();
        let also = retry.into_iter().chain(silent).min();
        let ready = event_loop.wait(busy || can_accept, also, stats)?;
        pending_accepts |= accept_failed || ready.contains(&LISTENER);
    }
    Ok(summary)
}

/// Receives several batches at once on one event loop, one session per target, each into
/// its own output directory with its own `.part` files and lock. Returns each receive's
/// outcome, in the order given.
pub fn receive_all(
    targets: &[(ConnectionString, ReceiveOptions)],
    reporter: &mut dyn Reporter,
    stats: &LoopStats,
) -> Vec<Result<ReceiveSummary, DriverError>> {
    let mut outcomes: Vec<Option<Result<ReceiveSummary, DriverError>>> =
        (0..targets.len()).map(|_| None).collect();
    let mut event_loop: Loop<ReceiverSession, Receiving> = match Loop::new() {
        Ok(event_loop) => event_loop,
        Err(error) => {
            let why = error.to_string();
            return targets
                .iter()
                .map(|_| {
                    Err(DriverError::Network(format!(
                        "cannot start the event loop: {why}"
                    )))
                })
                .collect();
        }
    };
    // Connects under way. A session starts only once its connection is up, so that a
    // slow connect does not eat into its handshake time.
    let mut connecting: Vec<Option<(TcpStream, Instant)>> = Vec::new();
    for (i, (target, options)) in targets.iter().enumerate() {
        let address = SocketAddr::new(target.ip, options.port);
        let started = PeerPolicy::new(options.pod)
            .check(target.ip)
            .and_then(|()| {
                let mut stream =
                    TcpStream::connect(address).map_err(|e| connect_error(address, &e))?;
                event_loop.poll.registry().register(
                    &mut stream,
                    Token(CONNECTING + i),
                    Interest::WRITABLE,
                )?;
                Ok((stream, Instant::now() + options.connect_timeout))
            });
        match started {
            Ok(pending) => connecting.push(Some(pending)),
            Err(error) => {
                outcomes[i] = Some(Err(error));
                connecting.push(None);
            }
        }
    }
    let mut busy;
    loop {
        // Connects that finished (or failed, or ran out of time) since the last look.
        for (i, pending) in connecting.iter_mut().enumerate() {
            let Some((stream, deadline)) = pending else {
                continue;
            };
            let (target, options) = &targets[i];
            let address = SocketAddr::new(target.ip, options.port);
            let connected = match stream.take_error() {
                Ok(Some(e)) | Err(e) => Err(connect_error(address, &e)),
                Ok(None) => match stream.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if matches!(e.kind(), ErrorKind::NotConnected) => {
                        if Instant::now() >= *deadline {
                            let timed_out = std::io::Error::from(ErrorKind::TimedOut);
                            Err(connect_error(address, &timed_out))
                        } else {
                            Ok(false)
                        }
                    }
                    Err(e) => Err(connect_error(address, &e)),
                },
            };
            match connected {
                Ok(false) => {}
                Ok(true) => {
                    let Some((mut stream, _)) = pending.take() else {
                        continue;
                    };
                    let _ = event_loop.poll.registry().deregister(&mut stream);
                    let _ = stream.set_nodelay(true);
                    let added =
                        ferry_std::receive::start_session(target, options, &event_loop.clock)
                            .and_then(|(session, work)| {
                                let mut conn = Conn::new(stream, address, session, work);
                                conn.tag = i;
                                event_loop.add(conn)
                            });
                    if let Err(error) = added {
                        outcomes[i] = Some(Err(error));
                    }
                }
                Err(error) => {
                    *pending = None;
                    outcomes[i] = Some(Err(error));
                }
            }
        }
        let (ended, now_busy) = event_loop.turns(reporter);
        busy = now_busy;
        for (conn, result) in ended {
            let (connections, hash_thread) = (conn.lanes.connections(), conn.traffic.hash_thread);
            let wire_bytes = conn.traffic.received + conn.lanes.carried();
            let outcome = conn.work.finish(&conn.session, result);
            outcomes[conn.tag] = Some(outcome.map(|summary| ReceiveSummary {
                connections,
                hash_thread,
                wire_bytes,
                ..summary
            }));
        }
        let waiting = connecting.iter().flatten().map(|(_, d)| *d).min();
        if event_loop.active() == 0 && waiting.is_none() {
            break;
        }
        let also = waiting.map(|d| d.saturating_duration_since(Instant::now()));
        if let Err(error) = event_loop.wait(busy, also, stats) {
            // Whatever is under way ends here, each saving what a later run can resume.
            let why = error.to_string();
            for slot in &mut event_loop.conns {
                if let Some(conn) = slot.take() {
                    let failed = DriverError::Network(format!("the event loop failed: {why}"));
                    outcomes[conn.tag] = Some(conn.work.finish(&conn.session, Err(failed)));
                }
            }
            break;
        }
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(DriverError::Network(
                    "the event loop stopped before this receive ended".into(),
                ))
            })
        })
        .collect()
}
