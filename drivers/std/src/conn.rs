//! The blocking loop that moves bytes between a socket and a session.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use ferry_core::Timestamp;
use ferry_core::transfer::{ReceiverSession, SenderSession, TransferError};

use crate::clock::Clock;
use crate::error::DriverError;

/// What the loop needs from either session.
pub trait Session {
    /// See `SenderSession::handle_input`.
    fn handle_input(&mut self, now: Timestamp, input: &[u8]) -> Result<usize, TransferError>;
    /// See `SenderSession::handle_timeout`.
    fn handle_timeout(&mut self, now: Timestamp) -> Result<(), TransferError>;
    /// See `SenderSession::handle_eof`.
    fn handle_eof(&mut self, now: Timestamp) -> Result<(), TransferError>;
    /// See `SenderSession::poll_transmit`.
    fn poll_transmit(&self) -> &[u8];
    /// See `SenderSession::advance_transmit`.
    fn advance_transmit(&mut self, n: usize);
    /// See `SenderSession::poll_timeout`.
    fn poll_timeout(&self) -> Option<Timestamp>;
    /// True once the batch is finished.
    fn is_finished(&self) -> bool;
    /// The error the session ended with.
    fn error(&self) -> Option<&TransferError>;
    /// Cancels the session because its user interrupted it ([`crate::stop`]).
    fn interrupt(&mut self, now: Timestamp) -> TransferError;
}

macro_rules! session_impl {
    ($t:ty, |$session:ident, $now:ident| $interrupt:expr) => {
        impl Session for $t {
            fn interrupt(&mut self, now: Timestamp) -> TransferError {
                let ($session, $now) = (self, now);
                $interrupt
            }
            fn handle_input(
                &mut self,
                now: Timestamp,
                input: &[u8],
            ) -> Result<usize, TransferError> {
                <$t>::handle_input(self, now, input)
            }
            fn handle_timeout(&mut self, now: Timestamp) -> Result<(), TransferError> {
                <$t>::handle_timeout(self, now)
            }
            fn handle_eof(&mut self, now: Timestamp) -> Result<(), TransferError> {
                <$t>::handle_eof(self, now)
            }
            fn poll_transmit(&self) -> &[u8] {
                <$t>::poll_transmit(self)
            }
            fn advance_transmit(&mut self, n: usize) {
                <$t>::advance_transmit(self, n)
            }
            fn poll_timeout(&self) -> Option<Timestamp> {
                <$t>::poll_timeout(self)
            }
            fn is_finished(&self) -> bool {
                <$t>::is_finished(self)
            }
            fn error(&self) -> Option<&TransferError> {
                <$t>::error(self)
            }
        }
    };
}
session_impl!(SenderSession, |session, now| session
    .cancel(now, crate::stop::REASON));
session_impl!(ReceiverSession, |session, _now| session
    .cancel(crate::stop::REASON));

/// Bytes that crossed the socket during one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes written to the socket.
    pub sent: u64,
    /// Bytes read from it.
    pub received: u64,
}

/// Drives `session` over `stream` until the batch is finished or something fails.
/// `work` drains the session's disk commands and events after every step; it may fail
/// the transfer (a local disk error, say).
pub fn drive<S: Session>(
    stream: &mut TcpStream,
    session: &mut S,
    clock: &Clock,
    traffic: &mut Traffic,
    mut work: impl FnMut(&mut S) -> Result<(), DriverError>,
) -> Result<(), DriverError> {
    let mut buf = vec![0u8; 256 << 10];
    let result = (|| loop {
        if crate::stop::requested() {
            return Err(DriverError::Transfer(session.interrupt(clock.now())));
        }
        work(session)?;
        flush(stream, session, traffic, &mut work)?;
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
        stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match stream.read(&mut buf) {
            Ok(0) => {
                session.handle_eof(clock.now())?;
                work(session)?;
                return Ok(());
            }
            Ok(n) => {
                traffic.received += n as u64;
                let mut at = 0;
                while at < n {
                    at += session.handle_input(clock.now(), &buf[at..n])?;
                    work(session)?;
                    flush(stream, session, traffic, &mut work)?;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                session.handle_timeout(clock.now())?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(DriverError::Network(format!("the connection failed: {e}"))),
        }
    })();
    // Whatever happened, let the peer see what was sealed for it (a close, a cancel).
    let _ = flush(stream, session, traffic, &mut |_| Ok(()));
    let _ = stream.shutdown(Shutdown::Write);
    result
}

fn flush<S: Session>(
    stream: &mut TcpStream,
    session: &mut S,
    traffic: &mut Traffic,
    work: &mut impl FnMut(&mut S) -> Result<(), DriverError>,
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
                work(session)?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(DriverError::Network(format!("sending failed: {e}"))),
        }
    }
}
