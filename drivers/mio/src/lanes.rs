//! The event loop's lanes (PROTOCOL.md §8): a session's extra connections, each a
//! non-blocking socket on the same `Poll` as its session. A receiver connects them when
//! its session asks; a sender tells them from new sessions by their first bytes and hands
//! each to the session whose receiver it comes from and whose secret it proves.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use ferry_core::Timestamp;
use ferry_core::lane::{HELLO_PREFIX_LEN, LANE_HELLO_LEN, MAX_LANES, is_lane_hello};
use ferry_core::transfer::Session;
use ferry_std::DriverError;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// Tokens from here on name lanes: `LANE_TOKENS + connection × MAX_LANES + lane`.
pub(crate) const LANE_TOKENS: usize = 1 << 28;
/// The longest a receiver waits for a lane's connection (as the blocking driver does).
const LANE_CONNECT: Duration = ferry_std::lanes::LANE_CONNECT;
/// Bytes a receiver's lane reads at a time.
const LANE_INPUT: usize = 256 << 10;

/// The token of lane `lane` of the connection in slot `index`.
pub(crate) fn lane_token(index: usize, lane: u8) -> Token {
    Token(LANE_TOKENS + index * MAX_LANES + usize::from(lane))
}

/// The connection slot and lane a token names, if it names a lane.
pub(crate) fn token_lane(token: Token) -> Option<(usize, usize)> {
    let at = token.0.checked_sub(LANE_TOKENS)?;
    (token.0 < crate::ARRIVING).then_some((at / MAX_LANES, at % MAX_LANES))
}

/// One lane's socket.
pub(crate) struct LaneSocket {
    stream: TcpStream,
    /// Receiver: the connect is under way until this deadline.
    connecting: Option<Instant>,
    /// Edge-triggered readiness: true until a read or write would block.
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Receiver: bytes read and not yet taken by the session. A sender reads only to see
    /// the lane end.
    input: Box<[u8]>,
    start: usize,
    end: usize,
}

/// A session's lanes, by number (0, the session's own connection, is never used).
pub(crate) struct Lanes {
    sockets: Vec<Option<LaneSocket>>,
    /// Lanes that opened in all.
    opened: usize,
    /// Bytes the lanes carried (written by a sender, read by a receiver).
    carried: u64,
}

impl Lanes {
    pub(crate) fn new() -> Self {
        Lanes {
            sockets: (0..MAX_LANES).map(|_| None).collect(),
            opened: 0,
            carried: 0,
        }
    }

    /// Connections the session used: its own and every lane that opened.
    pub(crate) fn connections(&self) -> usize {
        1 + self.opened
    }

    /// Bytes the lanes carried: written to them on a sender, read from them on a receiver.
    pub(crate) fn carried(&self) -> u64 {
        self.carried
    }

    pub(crate) fn socket_mut(&mut self, lane: usize) -> Option<&mut LaneSocket> {
        self.sockets.get_mut(lane).and_then(Option::as_mut)
    }

    /// The earliest deadline of a connect under way.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.sockets
            .iter()
            .flatten()
            .filter_map(|s| s.connecting)
            .min()
    }

    /// Receiver: starts connecting lane `lane` to the sender at `peer` (slot `index`). A
    /// connect that cannot even start is reported to the session as a closed lane.
    pub(crate) fn connect<S: Session>(
        &mut self,
        session: &mut S,
        registry: &Registry,
        index: usize,
        peer: SocketAddr,
        lane: u8,
        now: Timestamp,
    ) {
        let started = TcpStream::connect(peer).and_then(|mut stream| {
            registry.register(
                &mut stream,
                lane_token(index, lane),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match started {
            Ok(stream) => self.put(
                lane,
                stream,
                Some(Instant::now() + LANE_CONNECT),
                LANE_INPUT,
            ),
            Err(_) => session.lane_closed(now, lane),
        }
    }

    /// Sender: lane `lane`, joined by its hello, carries the session's parts from now on.
    pub(crate) fn attach(
        &mut self,
        registry: &Registry,
        index: usize,
        lane: u8,
        mut stream: TcpStream,
    ) -> Result<(), DriverError> {
        registry.register(
            &mut stream,
            lane_token(index, lane),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let _ = stream.set_nodelay(true);
        self.put(lane, stream, None, 4096);
        Ok(())
    }

    fn put(&mut self, lane: u8, stream: TcpStream, connecting: Option<Instant>, input: usize) {
        if let Some(slot) = self.sockets.get_mut(usize::from(lane)) {
            *slot = Some(LaneSocket {
                stream,
                connecting,
                readable: true,
                writable: true,
                input: vec![0u8; input].into_boxed_slice(),
                start: 0,
                end: 0,
            });
            self.opened += usize::from(connecting.is_none());
        }
    }

    /// Moves every lane's bytes until its socket would block: connects that completed
    /// send their hello, parts go out (sender) or in (receiver), lanes that ended are
    /// reported to the session, lanes the session gave up are closed. Returns whether
    /// anything moved.
    pub(crate) fn service<S: Session>(
        &mut self,
        session: &mut S,
        registry: &Registry,
        now: Timestamp,
        receiving: bool,
    ) -> Result<bool, DriverError> {
        let mut moved = false;
        for lane in 1..MAX_LANES as u8 {
            let at = usize::from(lane);
            let Some(socket) = self.sockets[at].as_mut() else {
                continue;
            };
            if let Some(deadline) = socket.connecting {
                match connect_state(&socket.stream) {
                    Ok(false) if Instant::now() < deadline => continue,
                    Ok(true) if session.lane_connected(lane).is_ok() => {
                        socket.connecting = None;
                        let _ = socket.stream.set_nodelay(true);
                        self.opened += 1;
                    }
                    _ => {
                        self.drop_lane(registry, lane);
                        session.lane_closed(now, lane);
                        moved = true;
                        continue;
                    }
                }
            }
            if !session.lane_open(lane) {
                self.drop_lane(registry, lane);
                continue;
            }
            let Some(socket) = self.sockets[at].as_mut() else {
                continue;
            };
            let (progress, ended) =
                socket.exchange(session, now, lane, receiving, &mut self.carried)?;
            moved |= progress;
            if ended {
                self.drop_lane(registry, lane);
                session.lane_closed(now, lane);
                moved = true;
            }
        }
        Ok(moved)
    }

    fn drop_lane(&mut self, registry: &Registry, lane: u8) {
        if let Some(mut socket) = self.sockets[usize::from(lane)].take() {
            let _ = socket.stream.shutdown(Shutdown::Both);
            let _ = registry.deregister(&mut socket.stream);
        }
    }

    /// Closes every lane (the session is over).
    pub(crate) fn close_all(&mut self, registry: &Registry) {
        for lane in 1..MAX_LANES as u8 {
            self.drop_lane(registry, lane);
        }
    }
}

impl LaneSocket {
    /// Writes what the session has for the lane and reads what the lane brings, until
    /// the socket would block or the session has no room; returns whether bytes moved
    /// and whether the lane ended.
    fn exchange<S: Session>(
        &mut self,
        session: &mut S,
        now: Timestamp,
        lane: u8,
        receiving: bool,
        carried: &mut u64,
    ) -> Result<(bool, bool), DriverError> {
        let mut moved = false;
        while self.writable {
            let pending = session.poll_lane_transmit(lane);
            if pending.is_empty() {
                break;
            }
            match self.stream.write(pending) {
                Ok(0) => return Ok((moved, true)),
                Ok(n) => {
                    session.advance_lane_transmit(lane, n);
                    *carried += n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Ok((moved, true)),
            }
        }
        loop {
            if receiving && self.start < self.end {
                let taken =
                    session.handle_lane_input(now, lane, &self.input[self.start..self.end])?;
                self.start += taken;
                moved |= taken > 0;
                if taken == 0 {
                    // The session's queues are full: the loop drains them first.
                    return Ok((moved, false));
                }
                continue;
            }
            if !self.readable {
                return Ok((moved, false));
            }
            match self.stream.read(&mut self.input) {
                Ok(0) => return Ok((moved, true)),
                // A receiver sends nothing on a lane after its hello: a sender only
                // looks for the lane's end.
                Ok(n) if receiving => {
                    (self.start, self.end) = (0, n);
                    *carried += n as u64;
                    moved = true;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Ok((moved, true)),
            }
        }
    }
}

/// Whether a non-blocking connect has completed (`Err`: it failed).
fn connect_state(stream: &TcpStream) -> std::io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the first bytes of an accepted connection show it to be.
pub(crate) enum FirstBytes {
    /// Nothing yet.
    Unknown,
    /// A session's hello (or anything else that is not a lane): a new session.
    Session,
    /// A whole lane hello, now read off the socket.
    Lane(Box<[u8; LANE_HELLO_LEN]>),
    /// The connection ended or failed.
    Gone,
}

/// Looks at an accepted connection's first bytes without taking a session's.
pub(crate) fn first_bytes(stream: &mut TcpStream) -> FirstBytes {
    let mut hello = [0u8; LANE_HELLO_LEN];
    match stream.peek(&mut hello) {
        Ok(0) => FirstBytes::Gone,
        Ok(n) if n >= HELLO_PREFIX_LEN && !is_lane_hello(&hello[..n]) => FirstBytes::Session,
        Ok(n) if n == LANE_HELLO_LEN => match stream.read_exact(&mut hello) {
            Ok(()) => FirstBytes::Lane(Box::new(hello)),
            Err(_) => FirstBytes::Gone,
        },
        Ok(_) => FirstBytes::Unknown,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            FirstBytes::Unknown
        }
        Err(_) => FirstBytes::Gone,
    }
}
