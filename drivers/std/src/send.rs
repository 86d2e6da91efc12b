//! `ferry send`: serve one batch until a receiver has it all, surviving bad peers.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use ferry_core::transfer::{
    DiskCommand, SenderSession, TransferConfig, TransferError, TransferEvent,
};
use ferry_core::{ConnectionString, Error, Token};

use crate::clock::Clock;
use crate::conn::{Traffic, drive};
use crate::error::DriverError;
use crate::peer::PeerPolicy;
use crate::source::{SourceReader, SourceTree};
use crate::{OsEntropy, Reporter};

/// How a batch was delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendSummary {
    /// Files and directories the receiver confirmed.
    pub committed: u64,
    /// Bytes sent as file data in the last session (after resume).
    pub bytes: u64,
    /// Bytes the receiver already had.
    pub bytes_present: u64,
    /// Bytes written to the socket in the last session.
    pub wire_bytes: u64,
    /// How long the last session took.
    pub elapsed: Duration,
    /// Connections that failed before the one that succeeded.
    pub failed_sessions: usize,
}

/// A listening sender: what to print, and the loop that serves.
pub struct Sender {
    listener: TcpListener,
    token: Token,
    tree: SourceTree,
    config: TransferConfig,
    policy: PeerPolicy,
    advertised: IpAddr,
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
            DriverError::Network(format!("cannot listen on {advertised}:{port}: {e}; is another ferry send running? Try --port"))
        })?;
        Ok(Sender {
            listener,
            token: Token::generate(&mut OsEntropy),
            tree,
            config,
            policy: PeerPolicy::new(pod),
            advertised,
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
            let (mut stream, address) = self.listener.accept()?;
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
                Err(DriverError::Transfer(TransferError::Declined(reason))) => {
                    return Err(DriverError::Transfer(TransferError::Declined(reason)));
                }
                Err(error) => {
                    failed_sessions += 1;
                    let what = match &error {
                        DriverError::Transfer(TransferError::Channel(
                            Error::AuthenticationFailed,
                        )) => "failed authentication (wrong token?)".to_owned(),
                        other => format!("failed: {other}"),
                    };
                    reporter.info(&format!(
                        "a receiver from {} {what}; still waiting for the right one",
                        address.ip()
                    ));
                }
            }
        }
    }

    fn serve_one(
        &mut self,
        stream: &mut std::net::TcpStream,
        reporter: &mut dyn Reporter,
    ) -> Result<SendSummary, DriverError> {
        let clock = Clock::new();
        let started = Instant::now();
        let mut session = SenderSession::new(
            self.config.clone(),
            self.token.clone(),
            self.tree.manifest.clone(),
            &mut OsEntropy,
            clock.now(),
        )?;
        let mut reader = SourceReader::new(self.tree.clone());
        let mut summary = SendSummary::default();
        let mut traffic = Traffic::default();
        let mut files_done = 0;
        drive(stream, &mut session, &clock, &mut traffic, |session| {
            while let Some(command) = session.poll_disk() {
                if let DiskCommand::Read {
                    id,
                    entry,
                    offset,
                    len,
                } = command
                {
                    let result = reader.read(entry, offset, &mut session.read_buffer(id)[..len]);
                    session.handle_read_done(clock.now(), id, result)?;
                }
            }
            while let Some(event) = session.poll_event() {
                match event {
                    TransferEvent::PlanSettled {
                        skipped,
                        resumed,
                        fresh,
                        bytes_present,
                        bytes_to_send,
                    } => {
                        summary.bytes_present = bytes_present;
                        summary.bytes = bytes_to_send;
                        if skipped + resumed > 0 {
                            reporter.info(&format!("Resuming transfer: {skipped} completed, {resumed} partial, {fresh} fresh"));
                        }
                        reporter.start(skipped + resumed + fresh, bytes_to_send);
                    }
                    TransferEvent::Progress { bytes } => reporter.progress(bytes, files_done),
                    TransferEvent::FileRetry { entry, attempt } => {
                        let path = session.manifest().get(entry).map_or("?", |e| e.path);
                        reporter.info(&format!(
                            "{path} changed while being sent; sending it again (attempt {attempt})"
                        ));
                    }
                    TransferEvent::ReadFailed { entry, error } => {
                        let path = session.manifest().get(entry).map_or("?", |e| e.path);
                        reporter.info(&format!("cannot read {path}: {error}"));
                    }
                    TransferEvent::FileDone { .. } => files_done += 1,
                    TransferEvent::Finished { committed, failed } => {
                        summary.committed = committed;
                        if failed > 0 {
                            return Err(DriverError::Unverified {
                                failed,
                                names: "see the receiver's report".into(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        })?;
        if !session.is_finished() {
            return Err(DriverError::Transfer(
                session.error().cloned().unwrap_or(TransferError::PeerEnded),
            ));
        }
        summary.wire_bytes = traffic.sent;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}
