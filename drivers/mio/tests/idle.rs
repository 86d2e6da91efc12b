//! An event loop with open but quiet sessions sleeps until their next timer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferry_core::transfer::{Output, ReceiverSession, Session, TransferConfig, TransferEvent};
use ferry_mio::{LoopStats, serve};
use ferry_std::send::Sender;
use ferry_std::source::SourceTree;
use ferry_std::{Clock, OsEntropy, Quiet};

/// Drives a receiver by hand through the handshake until the sender's batch is offered,
/// then stops: the sender's session is established and has nothing to do but wait.
fn receiver_until_offered(address: (std::net::IpAddr, u16), token: ferry_core::Token) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    let clock = Clock::new();
    let mut session = ReceiverSession::new(
        TransferConfig::default(),
        token,
        &mut OsEntropy,
        clock.now(),
    )
    .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let pending = session.poll_transmit().len();
        if pending > 0 {
            stream.write_all(session.poll_transmit()).unwrap();
            session.advance_transmit(pending);
        }
        while let Output::Event(event) = session.poll_output() {
            if matches!(event, TransferEvent::BatchOffered { .. }) {
                return stream;
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the sender closed before offering its batch");
        let mut at = 0;
        while at < n {
            at += session.handle_input(clock.now(), &buf[at..n]).unwrap();
        }
    }
}

#[test]
fn quiet_sessions_do_not_wake_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), vec![7u8; 1 << 20]).unwrap();
    let config = TransferConfig::default();
    let tree = SourceTree::scan(&[dir.path().to_owned()], &config.manifest).unwrap();
    let mut sender = Sender::bind(tree, config, true, 0).unwrap();
    let address = (sender.connection_string().ip, sender.port());
    let token = sender.connection_string().token;
    let stats = Arc::new(LoopStats::default());
    let loop_stats = Arc::clone(&stats);
    // The loop runs until the test process ends: it waits for a receiver that never
    // takes the batch.
    std::thread::spawn(move || serve(&mut sender, 1, &mut Quiet, &loop_stats));

    // One established session waiting on its keepalive timer (15 s), one connection that
    // never says anything (handshake timer, 10 s).
    let _established = receiver_until_offered(address, token);
    let _silent = TcpStream::connect(address).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let before = stats.wakeups.load(Ordering::Relaxed);
    let window = Duration::from_secs(2);
    std::thread::sleep(window);
    let wakeups = stats.wakeups.load(Ordering::Relaxed) - before;
    assert!(
        wakeups <= 4,
        "the loop woke {wakeups} times in {window:?} with nothing to do"
    );
}
