//! Waiting for a connection while watching for the user's stop request.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Accepts the next connection, checking `stop()` at least every `every`; `None` once it
/// returns true.
#[cfg(unix)]
pub fn accept_unless(
    listener: &TcpListener,
    every: Duration,
    stop: impl Fn() -> bool,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    loop {
        if stop() {
            return Ok(None);
        }
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let wait = PollTimeout::try_from(every).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, wait) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => return listener.accept().map(Some),
            Err(errno) => return Err(io::Error::from_raw_os_error(errno as i32)),
        }
    }
}

/// Accepts the next connection, checking `stop()` at least every `every`; `None` once it
/// returns true. (Windows has no `poll` on a listener in the standard library: the
/// listener is asked without blocking, between short waits.)
#[cfg(windows)]
pub fn accept_unless(
    listener: &TcpListener,
    every: Duration,
    stop: impl Fn() -> bool,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    listener.set_nonblocking(true)?;
    let accepted = loop {
        if stop() {
            break Ok(None);
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                break stream.set_nonblocking(false).map(|()| Some((stream, peer)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(every.min(Duration::from_millis(50)));
            }
            Err(e) => break Err(e),
        }
    };
    listener.set_nonblocking(false)?;
    accepted
}

/// True if `stream` has bytes (or its end) to read right now, without waiting.
#[cfg(unix)]
pub fn readable_now(stream: &TcpStream) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    // An error here (not expected) says "readable": the read that follows reports it.
    !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

/// True if `stream` has bytes (or its end) to read right now, without waiting: Windows
/// has no `poll` in the standard library, so this peeks at one byte without blocking.
#[cfg(windows)]
pub fn readable_now(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        // Cannot ask: "readable", and the read that follows (with its timeout) finds out.
        return true;
    }
    let peeked = stream.peek(&mut [0u8; 1]);
    let restored = stream.set_nonblocking(false);
    restored.is_err() || !matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
