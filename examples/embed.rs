//! The template for bringing Ferry into your own event loop: a receiver driven by a
//! hand-written loop around `poll(2)`, with no framework.
//!
//!     cargo run --example embed -- PATH...      (sends PATH over loopback to ./embed-out)
//!
//! The core never touches a socket or a clock. Whatever your loop looks like, it does
//! four things for each session, and this file is nothing more than those four:
//!   1. bytes from the socket go to `handle_input` (it may take only part when busy);
//!   2. bytes from `poll_transmit` go to the socket, then `advance_transmit`;
//!   3. sleep no longer than `poll_timeout`, and call `handle_timeout` once it passes;
//!   4. take `poll_output` until it says `Timeout`: carry out each disk command with
//!      `carry_out` against a `Storage`, and act on each event. Here the std driver's
//!      `Receiving` gives both (`.part` files, lock file, checkpoints; resume decisions);
//!      implement `Storage` yourself if your files live elsewhere.
//!
//! For demonstration the sender runs in a thread on the blocking driver.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use ferry_core::transfer::{Output, Session, TransferConfig};
use ferry_std::receive::{ReceiveOptions, start_session};
use ferry_std::send::Sender;
use ferry_std::source::SourceTree;
use ferry_std::{Clock, DriverError, Quiet, Reporter};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Prints what the session reports.
struct Print;

impl Reporter for Print {
    fn info(&mut self, line: &str) {
        println!("{line}");
    }
    fn start(&mut self, _files: usize, _bytes: u64) {}
    fn progress(&mut self, _bytes: u64, _files: usize) {}
}

fn main() -> Result<(), DriverError> {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        eprintln!("usage: cargo run --example embed -- PATH...");
        std::process::exit(2);
    }
    let config = TransferConfig::default();
    let tree = SourceTree::scan(&paths, &config.manifest)?;
    let mut sender = Sender::bind(tree, config.clone(), true, 0)?;
    let (target, port) = (sender.connection_string(), sender.port());
    std::thread::spawn(move || sender.serve(&mut Quiet));

    let options = ReceiveOptions {
        pod: true,
        port,
        out_dir: PathBuf::from("embed-out"),
        connect_timeout: Duration::from_secs(5),
        overwrite: true,
        config,
    };
    // (A real receiver checks the peer first: ferry_std::peer::PeerPolicy.)
    let address = (target.ip, port).into();
    let mut stream = TcpStream::connect_timeout(&address, options.connect_timeout)?;
    stream.set_nonblocking(true)?;
    let clock = Clock::new();
    let (mut session, mut work) = start_session(&target, &options, &clock)?;
    let mut input = vec![0u8; 64 << 10];
    let (mut start, mut end) = (0, 0);
    let result = (|| -> Result<(), DriverError> {
        loop {
            // 4. Disk commands and events, until the session waits.
            let now = clock.now();
            loop {
                match session.poll_output() {
                    Output::Disk(command) => session.carry_out(now, command, work.storage())?,
                    Output::Event(e) => work.handle_event(&mut session, e, now, &mut Print)?,
                    Output::Timeout(_) => break,
                }
            }
            if session.is_finished() {
                return Ok(());
            }
            // 2. Outgoing bytes, as far as the socket takes them.
            while !session.poll_transmit().is_empty() {
                match stream.write(session.poll_transmit()) {
                    Ok(n) => session.advance_transmit(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // 1. Incoming bytes: first what the session could not take last time.
            if start < end {
                let taken = session.handle_input(clock.now(), &input[start..end])?;
                start += taken;
                if taken > 0 {
                    continue;
                }
            } else {
                match stream.read(&mut input) {
                    Ok(0) => return Ok(session.handle_eof(clock.now())?),
                    Ok(n) => {
                        (start, end) = (0, n);
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // 3. Nothing more to do now: sleep until the socket is ready or a timer is due.
            // Ask for input only when the session took the last; it refuses more while
            // its own send buffer is full, and then waits for the socket to drain.
            let wait = session.poll_timeout().map(|at| clock.until(at));
            let timeout = wait.map_or(PollTimeout::NONE, |d| {
                let ms = d.as_micros().div_ceil(1000) as u64; // never wake early
                PollTimeout::try_from(Duration::from_millis(ms)).unwrap_or(PollTimeout::MAX)
            });
            let mut interest = PollFlags::empty();
            if start == end {
                interest |= PollFlags::POLLIN;
            }
            if !session.poll_transmit().is_empty() {
                interest |= PollFlags::POLLOUT;
            }
            match poll(&mut [PollFd::new(stream.as_fd(), interest)], timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(std::io::Error::from(e).into()),
            }
            if session.poll_timeout().is_some_and(|at| at <= clock.now()) {
                session.handle_timeout(clock.now())?;
            }
        }
    })();
    // Whatever happened, the session's last words (its close, or a cancel and why) go
    // out before the socket is dropped.
    let _ = work.drain(&mut session, clock.now(), &mut Print);
    let rest = session.poll_transmit().len();
    if stream.set_nonblocking(false).is_ok() && stream.write_all(session.poll_transmit()).is_ok() {
        session.advance_transmit(rest);
    }
    let summary = work.finish(&session, result)?;
    let seconds = summary.elapsed.as_secs_f64();
    println!(
        "done: {} entries in embed-out in {seconds:.2} s",
        summary.committed
    );
    Ok(())
}
