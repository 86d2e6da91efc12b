//! `ferry send`: serve one batch until a receiver has it all, surviving bad peers.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ferry_core::transfer::{
    Output, SenderSession, Session, TransferConfig, TransferError, TransferEvent,
};
use ferry_core::{ConnectionString, Error, Timestamp, Token};

use crate::clock::Clock;
use crate::conn::{Traffic, drive};
use crate::error::DriverError;
use crate::lanes::Lanes;
use crate::peer::PeerPolicy;
use crate::source::{SourceReader, SourceTree};
use crate::{OsEntropy, Report, Reporter};

/// How a batch was delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendSummary {
    /// Files and directories the receiver confirmed.
    pub committed: u64,
    /// Of those, the folders.
    pub folders: u64,
    /// Files the receiver could not get (each reported on its own line as it failed).
    pub failed: u64,
    /// Bytes sent as file data in the last session (after resume; a file sent again
    /// counts each time).
    pub bytes: u64,
    /// Bytes the receiver already had.
    pub bytes_present: u64,
    /// Files the receiver already had whole (none of them was sent).
    pub skipped: usize,
    /// Bytes written to the sockets in the last session (its connection and its lanes).
    pub wire_bytes: u64,
    /// How long the last session took.
    pub elapsed: Duration,
    /// Connections that failed before the one that succeeded.
    pub failed_sessions: usize,
    /// Connections the last session used (its own and its lanes).
    pub connections: usize,
    /// Its SHA-256 passes ran on a thread of their own.
    pub hash_thread: bool,
    /// Threads of their own that sealed its parts.
    pub aead_threads: usize,
    /// Its parts were sealed off the session's thread, at least in part (on the threads
    /// above, or on its hashing thread between passes).
    pub records_shared: bool,
}

/// A listening sender: what to print, and the loop that serves.
pub struct Sender {
    listener: TcpListener,
    token: Token,
    tree: SourceTree,
    config: TransferConfig,
    policy: PeerPolicy,
    advertised: IpAddr,
    /// Connections that arrived while a session ran (not its lanes): served next.
    waiting: VecDeque<(TcpStream, SocketAddr)>,
}

impl Sender {
    /// Binds the listener: loopback only with `pod`, else this machine's Tailscale address.
    pub fn bind(
        tree: SourceTree,
        config: TransferConfig,
        pod: bool,
        port: u16,
    ) -> Result<Self, DriverError> {
        let advertised = if pod {
            IpAddr::from([127, 0, 0, 1])
        } else {
            crate::peer::own_tailscale_ipv4()?
        };
        let listener = TcpListener::bind(SocketAddr::new(advertised, port)).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "ports below 1024 need privileges."
            } else {
                "is another ferry send running?"
            };
            DriverError::Network(format!("cannot listen on {advertised}:{port}: {e}; {hint} Try another --port N, or --port 0 for any free port"))
        })?;
        Ok(Sender {
            listener,
            token: Token::generate(&mut OsEntropy),
            tree,
            config,
            policy: PeerPolicy::new(pod),
            advertised,
            waiting: VecDeque::new(),
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// What the receiver needs: `IP:TOKEN`.
    pub fn connection_string(&self) -> ConnectionString {
        ConnectionString {
            ip: self.advertised,
            token: self.token.clone(),
        }
    }

    /// Serves receivers one at a time until one confirms the whole batch. A peer that
    /// fails authentication, is refused by the peer check, or drops mid-transfer is
    /// reported and the next one is served.
    pub fn serve(&mut self, reporter: &mut dyn Reporter) -> Result<SendSummary, DriverError> {
        let mut failed_sessions = 0;
        loop {
            let Some((mut stream, address)) = self.accept()? else {
                return Err(DriverError::Transfer(TransferError::Cancelled {
                    by_peer: false,
                    reason: crate::stop::reason_while_waiting().to_owned(),
                }));
            };
            if let Err(refusal) = self.policy.check(address.ip()) {
                reporter.info(&format!(
                    "refused a connection from {}: {refusal}",
                    address.ip()
                ));
                continue;
            }
            let _ = stream.set_nodelay(true);
            match self.serve_one(&mut stream, reporter) {
                Ok(mut summary) => {
                    summary.failed_sessions = failed_sessions;
                    return Ok(summary);
                }
                // The receiver's user said no, either user stopped: that is the answer. (A
                // receiver that refuses for a reason of its own, files in the way or no
                // space, is left to run again once that is put right.)
                Err(error @ DriverError::Transfer(TransferError::Declined(_))) => {
                    return Err(error);
                }
                Err(DriverError::Transfer(TransferError::Cancelled { by_peer, reason }))
                    if !by_peer || crate::stop::is_users_stop(&reason) =>
                {
                    return Err(DriverError::Transfer(TransferError::Cancelled {
                        by_peer,
                        reason,
                    }));
                }
                Err(error) => {
                    failed_sessions += 1;
                    let reason = format!("a receiver from {} {}", address.ip(), failure(&error));
                    reporter.report(&Report::ReceiverLost { reason: &reason });
                    reporter.info(&format!("{reason}; waiting for a receiver"));
                }
            }
        }
    }

    /// Waits for the next connection; `None` if the user asked to stop meanwhile.
    fn accept(&mut self) -> Result<Option<(TcpStream, SocketAddr)>, DriverError> {
        if let Some(waiting) = self.waiting.pop_front() {
            return Ok(Some(waiting));
        }
        if !crate::stop::installed() {
            return Ok(Some(self.listener.accept()?));
        }
        Ok(crate::os::net::accept_unless(
            &self.listener,
            crate::stop::CHECK_EVERY,
            crate::stop::requested,
        )?)
    }

    /// The listening socket (the mio driver polls a clone of it).
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Applies this sender's peer check (Tailscale peers, or loopback in pod mode) to a
    /// connection from `address`.
    pub fn check_peer(&mut self, address: IpAddr) -> Result<(), DriverError> {
        self.policy.check(address)
    }

    /// A new session for one receiver, and the work that serves its disk reads.
    pub fn start_session(&self, clock: &Clock) -> Result<(SenderSession, Sending), DriverError> {
        let session = SenderSession::new(
            self.config.clone(),
            self.token.clone(),
            self.tree.manifest.clone(),
            &mut OsEntropy,
            clock.now(),
        )?;
        Ok((session, Sending::new(self.tree.clone())))
    }

    fn serve_one(
        &mut self,
        stream: &mut TcpStream,
        reporter: &mut dyn Reporter,
    ) -> Result<SendSummary, DriverError> {
        let clock = Clock::new();
        let started = Instant::now();
        let (mut session, mut work) = self.start_session(&clock)?;
        let mut traffic = Traffic {
            sends_parts: true,
            ..Traffic::default()
        };
        let mut lanes = Lanes::accepting(&self.listener, stream.peer_addr()?.ip())?;
        let driven = drive(
            stream,
            &mut session,
            &clock,
            &mut traffic,
            &mut lanes,
            |session, _| work.drain(session, clock.now(), reporter),
        );
        let (connections, carried) = (lanes.connections(), lanes.carried());
        self.waiting.extend(lanes.finish());
        driven?;
        let mut summary = work.finish(&session)?;
        summary.connections = connections;
        summary.hash_thread = traffic.hash_thread;
        summary.aead_threads = traffic.aead_threads;
        summary.records_shared = traffic.records_shared;
        summary.wire_bytes = traffic.sent + carried;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

/// How a receiver's failed session reads in the sender's report: "failed authentication
/// (wrong token?)" or "failed: <why>".
pub fn failure(error: &DriverError) -> String {
    match error {
        DriverError::Transfer(TransferError::Channel(Error::AuthenticationFailed)) => {
            "failed authentication (wrong token?)".to_owned()
        }
        other => format!("failed: {other}"),
    }
}

/// The sender's side of one session outside the socket: reads the source for the
/// session's disk commands and turns its events into reports. Every driver uses it.
pub struct Sending {
    reader: SourceReader,
    summary: SendSummary,
    files_done: usize,
}

impl Sending {
    /// Work that reads from `tree`.
    pub fn new(tree: SourceTree) -> Self {
        Sending {
            reader: SourceReader::new(tree),
            summary: SendSummary::default(),
            files_done: 0,
        }
    }

    /// Carries out `session`'s outputs until it waits (`false`), or until it has done
    /// [`crate::DRAIN_BUDGET`]'s worth of reading with more to do (`true`: drain again once
    /// the loop has looked at its socket): reads the source for its disk commands and
    /// turns its events into reports.
    pub fn drain(
        &mut self,
        session: &mut SenderSession,
        now: Timestamp,
        reporter: &mut dyn Reporter,
    ) -> Result<bool, DriverError> {
        let mut budget = crate::DRAIN_BUDGET;
        loop {
            match session.poll_output() {
                Output::Disk(command) => {
                    let cost = crate::drain_cost(&command);
                    session.carry_out(now, command, &mut self.reader)?;
                    budget = budget.saturating_sub(cost);
                    if budget == 0 {
                        return Ok(true);
                    }
                }
                Output::Event(event) => self.report(session, event, reporter),
                Output::Timeout(_) => return Ok(false),
            }
        }
    }

    fn report(
        &mut self,
        session: &SenderSession,
        event: TransferEvent,
        reporter: &mut dyn Reporter,
    ) {
        match event {
            TransferEvent::PlanSettled {
                skipped,
                resumed,
                fresh,
                bytes_present,
                bytes_to_send,
            } => {
                self.summary.bytes_present = bytes_present;
                self.summary.skipped = skipped;
                self.summary.bytes = bytes_to_send;
                crate::report_plan(
                    reporter,
                    Report::Plan {
                        skipped,
                        resumed,
                        fresh,
                        bytes_present,
                        bytes_to_send,
                    },
                );
                reporter.start(skipped + resumed + fresh, bytes_to_send);
            }
            TransferEvent::Progress { bytes } => {
                // What moved, as the receiver counts it too: a file sent again counts
                // each time.
                self.summary.bytes = bytes;
                reporter.progress(bytes, self.files_done);
            }
            TransferEvent::ResumeCheck { checked, total } => reporter.checking(checked, total),
            TransferEvent::FileRetry { entry, attempt } => {
                let path = crate::report_retry(reporter, session.manifest(), entry, attempt);
                reporter.info(&format!(
                    "{path} changed while being sent; sending it again (attempt {attempt})"
                ));
            }
            TransferEvent::ReadFailed { entry, error } => {
                let path = session.manifest().get(entry).map_or("?", |e| e.path);
                // The system's words (or the driver's, for a link or FIFO swapped in); the
                // receiver is told the class only (PROTOCOL.md §6.4).
                let reason = format!("cannot read {path}: {error}");
                reporter.report(&Report::FileFailed {
                    path,
                    reason: &reason,
                });
                reporter.info(&format!("{reason}; the other files go on"));
            }
            TransferEvent::FileDone { entry } => {
                self.files_done += 1;
                let path = session.manifest().get(entry).map_or("?", |e| e.path);
                reporter.report(&Report::FileDone { path });
            }
            TransferEvent::Finished { committed, failed } => {
                self.summary.committed = committed;
                self.summary.failed = failed;
                self.summary.folders = crate::batch_counts(session.manifest()).1;
            }
            _ => {}
        }
    }

    /// What the session delivered, once it has ended; its error if it did not finish.
    pub fn finish(self, session: &SenderSession) -> Result<SendSummary, DriverError> {
        if !session.is_finished() {
            return Err(DriverError::Transfer(
                session.error().cloned().unwrap_or(TransferError::PeerEnded),
            ));
        }
        Ok(self.summary)
    }
}
