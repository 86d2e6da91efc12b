//! The blocking loop that moves bytes between a socket and a session.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use ferry_core::transfer::Session;

use crate::clock::Clock;
use crate::error::DriverError;
use crate::hashing::Workers;
use crate::lanes::Lanes;

/// Bytes read from the socket at a time.
const READ: usize = 256 << 10;

/// Bytes that crossed the socket during one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes written to the socket.
    pub sent: u64,
    /// Bytes read from it.
    pub received: u64,
    /// The session's SHA-256 passes ran on a thread of their own
    /// ([`crate::hashing::wanted`]).
    pub hash_thread: bool,
    /// Set before driving: this side sends parts, whose sealing may run on threads
    /// ([`crate::hashing::aead_threads`]); a receiver may open its records there.
    pub sends_parts: bool,
    /// Threads of their own that sealed the session's parts, or opened its records.
    pub aead_threads: usize,
    /// The session's parts were sealed, or its records opened, off its own thread, at
    /// least in part (on the threads above, or on its hashing thread between passes).
    pub records_shared: bool,
}

/// Drives `session` over `stream`, and its `lanes`, until the batch is finished or
/// something fails. `work` drains the session's disk commands and events after every
/// step (opening the lanes it asks for), true if it stopped with more to do (then the
/// loop only looks at the socket before it drains again); it may fail the transfer (a
/// local disk error, say).
pub fn drive<S: Session>(
    stream: &mut TcpStream,
    session: &mut S,
    clock: &Clock,
    traffic: &mut Traffic,
    lanes: &mut Lanes,
    mut work: impl FnMut(&mut S, &mut Lanes) -> Result<bool, DriverError>,
) -> Result<(), DriverError> {
    let mut buf = vec![0u8; READ];
    // The session's SHA-256 passes (and a sender's sealing, or a receiver's opening) run
    // beside this loop; they are handed out and taken back around every step of it.
    let peer = stream.peer_addr().ok().map(|address| address.ip());
    let sealers = crate::hashing::aead_threads(peer);
    let shared = crate::hashing::records_shared();
    let hasher = RefCell::new(Workers::start(
        session,
        peer,
        sealers,
        shared,
        traffic.sends_parts,
    ));
    traffic.hash_thread = hasher.borrow().is_some();
    traffic.aead_threads = hasher.borrow().as_ref().map_or(0, Workers::sealers);
    traffic.records_shared = hasher.borrow().as_ref().is_some_and(Workers::takes_records);
    // A receiver whose records are opened on threads reads one chunk ahead while it
    // waits for them, so that the threads open the next chunk while it takes this one.
    let opening = !traffic.sends_parts && traffic.records_shared;
    let mut ahead = if opening { vec![0u8; READ] } else { Vec::new() };
    let mut ahead_len = 0;
    let mut ahead_end: Option<std::io::Result<usize>> = None;
    // Whether the newest drain stopped with disk work left (see `drive`).
    let unfinished = Cell::new(false);
    let mut work = |session: &mut S, lanes: &mut Lanes| -> Result<bool, DriverError> {
        if let Some(hasher) = hasher.borrow_mut().as_mut() {
            hasher.collect(session, clock.now(), false)?;
        }
        let more = work(session, lanes)?;
        unfinished.set(more);
        if let Some(hasher) = hasher.borrow_mut().as_mut() {
            hasher.dispatch(session)?;
        }
        Ok(more)
    };
    // Waits for work the session is waiting for (a pass, a batch of records); false if
    // none is out.
    let wait_for_pass = |session: &mut S| -> Result<bool, DriverError> {
        match hasher.borrow_mut().as_mut() {
            Some(hasher) if hasher.busy() => hasher.collect(session, clock.now(), true),
            _ => Ok(false),
        }
    };
    // A write waits at most this long before the loop looks at the peer's side again: a
    // peer that stops reading must not hold this side past its timeout, or past Ctrl-C.
    stream.set_write_timeout(Some(crate::stop::CHECK_EVERY))?;
    // The read timeout last given to the socket: one system call a read saved, as it
    // mostly stays the same (whole milliseconds, never longer than the wait).
    let mut read_timeout = None;
    let result = (|| loop {
        if crate::stop::requested() {
            return Err(DriverError::Transfer(
                session.cancel(clock.now(), crate::stop::reason()),
            ));
        }
        work(session, lanes)?;
        flush(stream, session, clock, traffic, lanes, &mut work)?;
        lanes.service(session, clock, &mut work)?;
        flush(stream, session, clock, traffic, lanes, &mut work)?;
        if let Some(error) = session.error() {
            return Err(DriverError::Transfer(error.clone()));
        }
        if session.is_finished() {
            return Ok(());
        }
        let mut wait = session
            .poll_timeout()
            .map_or(Duration::from_secs(1), |at| clock.until(at));
        if crate::stop::installed() {
            wait = wait.min(crate::stop::CHECK_EVERY);
        }
        if lanes.active() {
            wait = wait.min(crate::lanes::LANE_TICK);
        }
        // A chunk read ahead (its records already out being opened) is taken next, as
        // what it ended with: data, the end of the stream, or a failure.
        let read_ahead = ahead_len > 0 || ahead_end.is_some();
        // Disk work left over from a long drain (a check of what is already here) goes
        // on unless there is input first; the session's timers still run meanwhile (its
        // keepalives go out with the next flush).
        if !read_ahead && unfinished.get() && !crate::os::net::readable_now(stream) {
            if session.poll_timeout().is_some_and(|at| at <= clock.now()) {
                session.handle_timeout(clock.now())?;
            }
            continue;
        }
        // With nothing to read yet, work that is out is what to wait for: a pass's
        // segment moves on when it is back, a batch's records go out.
        let pass_out = hasher.borrow().as_ref().is_some_and(Workers::busy);
        if !read_ahead
            && pass_out
            && !crate::os::net::readable_now(stream)
            && wait_for_pass(session)?
        {
            continue;
        }
        let timeout = Duration::from_millis(wait.as_millis().max(1) as u64);
        if read_timeout != Some(timeout) {
            stream.set_read_timeout(Some(timeout))?;
            read_timeout = Some(timeout);
        }
        let (read, shown) = if ahead_len > 0 {
            core::mem::swap(&mut buf, &mut ahead);
            (Ok(core::mem::take(&mut ahead_len)), true)
        } else if let Some(end) = ahead_end.take() {
            (end, true)
        } else {
            (stream.read(&mut buf), false)
        };
        match read {
            Ok(0) if traffic.received == 0 => {
                return Err(network_error("the connection closed", None, traffic));
            }
            Ok(0) => {
                session.handle_eof(clock.now())?;
                while work(session, lanes)? {}
                return Ok(());
            }
            Ok(n) => {
                if !shown {
                    traffic.received += n as u64;
                    if opening {
                        session.pre_open(&buf[..n]);
                        work(session, lanes)?;
                    }
                }
                let mut at = 0;
                while at < n {
                    // The next record is out being opened: read the next chunk meanwhile
                    // (once: the loop's other duties come between chunks), its records
                    // going out too, then wait for it.
                    while opening && session.input_waits() {
                        if ahead_len == 0
                            && ahead_end.is_none()
                            && crate::os::net::readable_now(stream)
                        {
                            match stream.read(&mut ahead) {
                                Ok(0) => ahead_end = Some(Ok(0)),
                                Ok(m) => {
                                    traffic.received += m as u64;
                                    ahead_len = m;
                                    session.pre_open(&ahead[..m]);
                                    work(session, lanes)?;
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        ErrorKind::WouldBlock
                                            | ErrorKind::TimedOut
                                            | ErrorKind::Interrupted
                                    ) => {}
                                // Reported once what came before it is taken.
                                Err(e) => ahead_end = Some(Err(e)),
                            }
                        }
                        if !wait_for_pass(session)? {
                            break;
                        }
                    }
                    let took = session.handle_input(clock.now(), &buf[at..n])?;
                    at += took;
                    if took == 0 {
                        // Its passes are all out and the next segment is in: wait.
                        wait_for_pass(session)?;
                    }
                    work(session, lanes)?;
                    flush(stream, session, clock, traffic, lanes, &mut work)?;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                session.handle_timeout(clock.now())?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(network_error("the connection failed", Some(&e), traffic)),
        }
    })();
    // A session that is finished lost nothing when its last words (a close, a notice
    // about a lane the peer closed as it left) met the peer's closed connection.
    let result = match result {
        Err(DriverError::Network(_)) if session.is_finished() => Ok(()),
        other => other,
    };
    // Whatever happened, let the peer see what was sealed for it (a close, a cancel),
    // sealing first what waits for the threads.
    if let Some(workers) = hasher.borrow_mut().as_mut() {
        workers.finish_sealing(session, clock.now());
    }
    let until = std::time::Instant::now() + last_words_at_most(traffic.sends_parts);
    let waited = say_last_words(stream, session, traffic, until);
    let _ = stream.shutdown(Shutdown::Write);
    if result.is_err() {
        // Words that had to wait for the peer, or a cancel its user asked for, may still
        // be on their way even if the system took them at once (its send buffer holds
        // seconds of a slow path), and closing could throw them away. Any other peer,
        // one that failed its handshake and trickles bytes say, holds this side 2 s.
        let until = if waited || crate::stop::requested() {
            until
        } else {
            until.min(std::time::Instant::now() + LINGER)
        };
        linger(stream, until);
    }
    result
}

/// A connection that failed or closed, as the user reads it. A peer that closed it before
/// it said anything most likely refused this machine (a sender's Tailscale peer check
/// closes the connection unread: a reset, or an end if nothing had been sent to it yet),
/// or is not Ferry.
fn network_error(what: &str, error: Option<&std::io::Error>, traffic: &Traffic) -> DriverError {
    let what = match error {
        Some(error) => format!("{what}: {error}"),
        None => what.to_owned(),
    };
    if traffic.received == 0 {
        DriverError::Network(format!(
            "{what}; the other side closed the connection before it said anything: it may \
             have refused this machine (each side admits only its Tailscale peers), or it is \
             not ferry"
        ))
    } else {
        DriverError::Network(what)
    }
}

/// How long an ended session goes on with its last words while the peer is silent: what
/// is left to write is given up once no byte has gone out for this long, and reading
/// after the last word (see [`linger`]) once none has come in for this long.
const LINGER: Duration = Duration::from_secs(2);

/// The most an ended session's last words may take, however slowly they go out.
pub const LAST_WORDS_AT_MOST: Duration = Duration::from_secs(30);

/// How long an ended session may take over its last words and the reading after them, in
/// all: a sender's may wait behind seconds of data on a slow path (up to
/// [`LAST_WORDS_AT_MOST`]); a receiver's go out at once, and its user, who may have
/// pressed Ctrl-C, waits no longer than [`LINGER`] for the sender's side to close.
pub fn last_words_at_most(sends_parts: bool) -> Duration {
    if sends_parts {
        LAST_WORDS_AT_MOST
    } else {
        LINGER
    }
}

/// Writes what an ended session still has for its peer (a close; a cancel, behind the
/// records sealed before it) for as long as the peer takes it: on a slow path a cancel
/// may wait behind seconds of data, and a stream cut short of it ends mid-record, which
/// the peer can only call a broken connection. Given up once no byte has gone out for
/// [`LINGER`] (a peer that stopped reading), or at `until`. What the peer sends meanwhile
/// is read and dropped, so that neither side waits on the other. True if a write had to
/// wait for the peer.
fn say_last_words<S: Session>(
    stream: &mut TcpStream,
    session: &mut S,
    traffic: &mut Traffic,
    until: std::time::Instant,
) -> bool {
    let mut wrote = std::time::Instant::now();
    let mut waited = false;
    let mut sink = vec![0u8; 64 << 10];
    while !session.poll_transmit().is_empty()
        && wrote.elapsed() < LINGER
        && std::time::Instant::now() < until
    {
        match stream.write(session.poll_transmit()) {
            Ok(0) => break,
            Ok(n) => {
                traffic.sent += n as u64;
                session.advance_transmit(n);
                wrote = std::time::Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                waited = true;
                while crate::os::net::readable_now(stream) && std::time::Instant::now() < until {
                    match stream.read(&mut sink) {
                        Ok(0) => return waited,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::Interrupted
                                    | ErrorKind::WouldBlock
                                    | ErrorKind::TimedOut
                            ) =>
                        {
                            break;
                        }
                        Err(_) => return waited,
                    }
                }
            }
            Err(_) => break,
        }
    }
    waited
}

/// Reads and drops what the peer still sends until it closes: closing a socket with
/// unread bytes in it makes the system reset the connection, which throws away what is
/// still queued for the peer (on a slow path, seconds of it, the last word last) and can
/// reach the peer before it. A peer still reading what was sent keeps answering; one
/// silent for [`LINGER`] is given up on, and any at `until`.
fn linger(stream: &mut TcpStream, until: std::time::Instant) {
    let mut heard = std::time::Instant::now();
    let mut sink = vec![0u8; 64 << 10];
    loop {
        let until = (heard + LINGER).min(until);
        let Some(left) = until.checked_duration_since(std::time::Instant::now()) else {
            return;
        };
        if stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => heard = std::time::Instant::now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Writes what the session has sealed until it has nothing more, or until the peer, not
/// reading, has sent something to read first (the loop reads it, then writes again).
fn flush<S: Session>(
    stream: &mut TcpStream,
    session: &mut S,
    clock: &Clock,
    traffic: &mut Traffic,
    lanes: &mut Lanes,
    work: &mut impl FnMut(&mut S, &mut Lanes) -> Result<bool, DriverError>,
) -> Result<(), DriverError> {
    loop {
        let pending = session.poll_transmit();
        if pending.is_empty() {
            return Ok(());
        }
        match stream.write(pending) {
            Ok(0) => {
                return Err(DriverError::Network(
                    "the connection closed while sending".into(),
                ));
            }
            Ok(n) => {
                traffic.sent += n as u64;
                session.advance_transmit(n);
                work(session, lanes)?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The peer has not read for a while. What it sent meanwhile comes
                // first; if it sends nothing either, the session's timers decide (a
                // peer that makes no progress for the timeout ends it), and a stop the
                // user asked for is heard.
                if crate::stop::requested() && session.error().is_none() {
                    return Err(DriverError::Transfer(
                        session.cancel(clock.now(), crate::stop::reason()),
                    ));
                }
                if crate::os::net::readable_now(stream) {
                    return Ok(());
                }
                session.handle_timeout(clock.now())?;
                if let Some(error) = session.error() {
                    return Err(DriverError::Transfer(error.clone()));
                }
            }
            Err(e) => return Err(network_error("sending failed", Some(&e), traffic)),
        }
    }
}
