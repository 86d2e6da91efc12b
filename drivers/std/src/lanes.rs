//! The blocking driver's lanes (PROTOCOL.md §8): the session's extra connections, each
//! read (and, on the sender, written) by threads of its own, so that the loop never
//! waits on one of them. The receiver opens lanes when its session asks
//! ([`TransferEvent::LaneWanted`](ferry_core::transfer::TransferEvent::LaneWanted)); the
//! sender takes them from its listener while the session runs, and keeps any other
//! connection that arrives meanwhile for the sessions after.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use ferry_core::lane::{HELLO_PREFIX_LEN, LANE_HELLO_LEN, MAX_LANES, is_lane_hello};
use ferry_core::transfer::Session;

use crate::clock::Clock;
use crate::error::DriverError;

/// What a lane's threads tell the loop.
enum LaneEvent {
    /// The lane's connection is up (receiver): its hello goes out.
    Connected(u8, TcpStream),
    /// The lane's connection could not be opened (receiver).
    Unreachable(u8),
    /// Bytes the lane brought (receiver).
    Data(u8, Vec<u8>),
    /// The lane's connection ended or failed.
    Closed(u8),
}

/// Bytes a lane's writer takes at a time, and chunks it may have queued: a lane holds
/// at most this much beyond the session's own buffer for it.
const CHUNK: usize = 256 << 10;
const QUEUED_CHUNKS: usize = 4;
/// Chunks the readers may have waiting for the loop before they wait themselves.
const QUEUED_EVENTS: usize = 64;
/// How long an accepted connection may take to show whether it is a lane.
const HELLO_WAIT: Duration = Duration::from_secs(10);
/// The longest a receiver waits for a lane's connection.
pub const LANE_CONNECT: Duration = Duration::from_secs(3);
/// How often the sender looks for lanes arriving on its listener.
const ACCEPT_EVERY: Duration = Duration::from_millis(5);
/// While lanes are open the loop looks at them at least this often.
pub(crate) const LANE_TICK: Duration = Duration::from_millis(2);

struct Lane {
    stream: TcpStream,
    /// The sender's writer thread.
    writer: Option<SyncSender<Vec<u8>>>,
}

enum Mode {
    /// No lanes (the mio driver's sessions, tests).
    None,
    /// Receiver: lanes connect to the sender's address.
    Connect {
        address: SocketAddr,
        timeout: Duration,
    },
    /// Sender: lanes arrive on the listener, from the receiver's address only.
    Accept { listener: TcpListener, peer: IpAddr },
}

/// The lanes of one session.
pub struct Lanes {
    mode: Mode,
    lanes: Vec<Option<Lane>>,
    events: Receiver<LaneEvent>,
    events_in: SyncSender<LaneEvent>,
    /// Accepted connections not yet known to be lanes.
    arriving: Vec<(TcpStream, SocketAddr, Instant)>,
    /// Accepted connections that are not lanes: for the sessions after this one.
    others: VecDeque<(TcpStream, SocketAddr)>,
    /// Lanes that opened in all.
    opened: usize,
    /// Bytes the lanes carried (handed to their writers by a sender, read by a receiver).
    carried: u64,
    /// Receiver: lane connects under way.
    connecting: usize,
    /// When the sender next looks at its listener: a look per loop turn would cost a
    /// system call for every read of a busy transfer.
    next_accept: Instant,
}

impl Lanes {
    fn with(mode: Mode) -> Self {
        let (events_in, events) = mpsc::sync_channel(QUEUED_EVENTS);
        Lanes {
            mode,
            lanes: (0..MAX_LANES).map(|_| None).collect(),
            events,
            events_in,
            arriving: Vec::new(),
            others: VecDeque::new(),
            opened: 0,
            carried: 0,
            connecting: 0,
            next_accept: Instant::now(),
        }
    }

    /// A session without lanes.
    pub fn none() -> Self {
        Lanes::with(Mode::None)
    }

    /// A receiver's lanes, to the sender at `address`. A lane gets at most
    /// [`LANE_CONNECT`] (or `timeout`, if shorter) to connect: the loop waits for it, and
    /// a lane is an extra, not a reason to hold up the transfer.
    pub fn connecting(address: SocketAddr, timeout: Duration) -> Self {
        Lanes::with(Mode::Connect {
            address,
            timeout: timeout.min(LANE_CONNECT),
        })
    }

    /// A sender's lanes, from `listener` (made non-blocking until [`Lanes::finish`]),
    /// for the receiver at `peer`.
    pub fn accepting(listener: &TcpListener, peer: IpAddr) -> Result<Self, DriverError> {
        let listener = listener.try_clone()?;
        listener.set_nonblocking(true)?;
        Ok(Lanes::with(Mode::Accept { listener, peer }))
    }

    /// True while any lane is open: the loop then looks at them every [`LANE_TICK`].
    pub fn active(&self) -> bool {
        self.lanes.iter().any(Option::is_some) || !self.arriving.is_empty() || self.connecting > 0
    }

    /// Receiver: opens lane `lane` as the session asked. The connect runs on a thread of
    /// its own (a round trip, or up to [`LANE_CONNECT`] for one that fails: the loop must
    /// not stop reading for it); once it is up, [`Lanes::service`] sends the hello and
    /// starts the lane's reader. A lane that cannot be opened is reported to the session
    /// as closed.
    pub fn connect<S: Session>(&mut self, session: &mut S, clock: &Clock, lane: u8) {
        let Mode::Connect { address, timeout } = self.mode else {
            session.lane_closed(clock.now(), lane);
            return;
        };
        let events = self.events_in.clone();
        self.connecting += 1;
        std::thread::spawn(move || {
            let event = match TcpStream::connect_timeout(&address, timeout) {
                Ok(stream) => LaneEvent::Connected(lane, stream),
                Err(_) => LaneEvent::Unreachable(lane),
            };
            let _ = events.send(event);
        });
    }

    /// Receiver: lane `lane`'s connection is up: its hello goes out and its reader starts.
    fn connected<S: Session>(
        &mut self,
        session: &mut S,
        clock: &Clock,
        lane: u8,
        mut stream: TcpStream,
    ) {
        let _ = stream.set_nodelay(true);
        let opened = session
            .lane_connected(lane)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|()| {
                stream.write_all(session.poll_lane_transmit(lane))?;
                let sent = session.poll_lane_transmit(lane).len();
                session.advance_lane_transmit(lane, sent);
                Ok(())
            });
        match opened {
            Ok(()) => self.start(lane, stream, true),
            Err(_) => {
                let _ = stream.shutdown(Shutdown::Both);
                session.lane_closed(clock.now(), lane);
            }
        }
    }

    /// Starts a lane's threads: a reader (whose bytes are the receiver's data; on the
    /// sender it only notices the end) and, on the sender, a writer.
    fn start(&mut self, lane: u8, stream: TcpStream, receiving: bool) {
        let Ok(mut reading) = stream.try_clone() else {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        let events = self.events_in.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; if receiving { CHUNK } else { 4096 }];
            loop {
                match reading.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) if receiving => {
                        if events
                            .send(LaneEvent::Data(lane, buf[..n].to_vec()))
                            .is_err()
                        {
                            return;
                        }
                    }
                    // A receiver sends nothing on a lane after its hello.
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = events.send(LaneEvent::Closed(lane));
        });
        let writer = (!receiving).then(|| {
            let (chunks_in, chunks) = mpsc::sync_channel::<Vec<u8>>(QUEUED_CHUNKS);
            let events = self.events_in.clone();
            let mut writing = stream.try_clone();
            std::thread::spawn(move || {
                let Ok(writing) = writing.as_mut() else {
                    let _ = events.send(LaneEvent::Closed(lane));
                    return;
                };
                while let Ok(chunk) = chunks.recv() {
                    if writing.write_all(&chunk).is_err() {
                        let _ = writing.shutdown(Shutdown::Both);
                        let _ = events.send(LaneEvent::Closed(lane));
                        return;
                    }
                }
            });
            chunks_in
        });
        self.lanes[usize::from(lane)] = Some(Lane { stream, writer });
        self.opened += 1;
    }

    /// Sender: takes new connections from the listener; each that shows a lane hello
    /// from the receiver's address and proves it belongs to `session` becomes a lane;
    /// any other is kept for the sessions after.
    fn accept<S: Session>(&mut self, session: &mut S) {
        let Mode::Accept { listener, peer } = &self.mode else {
            return;
        };
        let now = Instant::now();
        if now < self.next_accept {
            return;
        }
        self.next_accept = now + ACCEPT_EVERY;
        let peer = *peer;
        let mut arriving = std::mem::take(&mut self.arriving);
        while let Ok((stream, address)) = listener.accept() {
            // Some systems hand out an accepted socket with the listener's mode.
            if stream.set_nonblocking(true).is_ok() {
                arriving.push((stream, address, Instant::now()));
            }
        }
        let mut still = Vec::new();
        for (mut stream, address, since) in arriving {
            let mut prefix = [0u8; LANE_HELLO_LEN];
            let seen = match stream.peek(&mut prefix) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                Err(_) => continue,
            };
            if seen >= HELLO_PREFIX_LEN && !is_lane_hello(&prefix[..seen]) {
                let _ = stream.set_nonblocking(false);
                self.others.push_back((stream, address));
            } else if seen == LANE_HELLO_LEN {
                let _ = stream.read_exact(&mut prefix);
                // A lane must come from where the session's receiver is, and prove it
                // knows the session's secret; anything else is closed.
                if address.ip() == peer
                    && let Ok(lane) = session.join_lane(&prefix)
                    && stream.set_nonblocking(false).is_ok()
                {
                    let _ = stream.set_nodelay(true);
                    self.start(lane, stream, false);
                }
            } else if since.elapsed() < HELLO_WAIT {
                still.push((stream, address, since));
            }
        }
        self.arriving = still;
    }

    /// Does what the lanes need: new lanes joined, their bytes delivered and sent, ended
    /// ones reported, and the ones the session gave up closed. `work` drains the session
    /// after every step, as the loop does.
    pub fn service<S: Session>(
        &mut self,
        session: &mut S,
        clock: &Clock,
        work: &mut impl FnMut(&mut S, &mut Lanes) -> Result<bool, DriverError>,
    ) -> Result<(), DriverError> {
        self.accept(session);
        loop {
            match self.events.try_recv() {
                Ok(LaneEvent::Connected(lane, stream)) => {
                    self.connecting = self.connecting.saturating_sub(1);
                    self.connected(session, clock, lane, stream);
                    work(session, self)?;
                }
                Ok(LaneEvent::Unreachable(lane)) => {
                    self.connecting = self.connecting.saturating_sub(1);
                    session.lane_closed(clock.now(), lane);
                    work(session, self)?;
                }
                Ok(LaneEvent::Data(lane, bytes)) => {
                    self.carried += bytes.len() as u64;
                    let mut at = 0;
                    while at < bytes.len() {
                        at += session.handle_lane_input(clock.now(), lane, &bytes[at..])?;
                        work(session, self)?;
                    }
                }
                Ok(LaneEvent::Closed(lane)) => {
                    if let Some(gone) = self.lanes[usize::from(lane)].take() {
                        let _ = gone.stream.shutdown(Shutdown::Both);
                    }
                    session.lane_closed(clock.now(), lane);
                    work(session, self)?;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        for lane in 1..MAX_LANES as u8 {
            let Some(open) = self.lanes[usize::from(lane)].as_ref() else {
                continue;
            };
            if !session.lane_open(lane) {
                let _ = open.stream.shutdown(Shutdown::Both);
                self.lanes[usize::from(lane)] = None;
                continue;
            }
            let Some(writer) = open.writer.clone() else {
                continue;
            };
            loop {
                let pending = session.poll_lane_transmit(lane);
                if pending.is_empty() {
                    break;
                }
                let chunk = pending[..pending.len().min(CHUNK)].to_vec();
                let n = chunk.len();
                match writer.try_send(chunk) {
                    Ok(()) => {
                        session.advance_lane_transmit(lane, n);
                        self.carried += n as u64;
                        work(session, self)?;
                    }
                    Err(TrySendError::Full(_)) => break,
                    Err(TrySendError::Disconnected(_)) => {
                        session.lane_closed(clock.now(), lane);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Connections the session used: its own and every lane that opened.
    pub fn connections(&self) -> usize {
        1 + self.opened
    }

    /// Bytes the lanes carried: sent on them by a sender, received by a receiver.
    pub fn carried(&self) -> u64 {
        self.carried
    }

    /// Ends the session's lanes; returns the connections that arrived for the sessions
    /// after, and gives the listener back its blocking mode.
    pub fn finish(self) -> VecDeque<(TcpStream, SocketAddr)> {
        for lane in self.lanes.into_iter().flatten() {
            let _ = lane.stream.shutdown(Shutdown::Both);
        }
        if let Mode::Accept { listener, .. } = &self.mode {
            let _ = listener.set_nonblocking(false);
        }
        self.others
    }
}
