//! A receiver that finds every place taken waits in the listen backlog and is served as
//! soon as the clients holding the places leave. (Whether their departures reach the
//! loop in one wake-up or several depends on timing; the loop must accept either way,
//! without a new readiness edge from the listener.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ferry_core::transfer::TransferConfig;
use ferry_mio::{LoopStats, SPARE_CONNECTIONS, serve};
use ferry_std::conn::{Traffic, drive};
use ferry_std::receive::{ReceiveOptions, start_session};
use ferry_std::send::Sender;
use ferry_std::source::SourceTree;
use ferry_std::{Clock, Quiet};

#[test]
fn a_receiver_in_the_backlog_is_served_when_stuck_clients_leave() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("file"), vec![3u8; 300_000]).unwrap();
    let config = TransferConfig::default();
    let tree = SourceTree::scan(std::slice::from_ref(&source), &config.manifest).unwrap();
    let mut sender = Sender::bind(tree, config.clone(), true, 0).unwrap();
    let target = sender.connection_string();
    let port = sender.port();
    let served = std::thread::spawn(move || {
        serve(&mut sender, 1, &mut Quiet, &LoopStats::default()).map(|s| s.delivered.len())
    });

    // Clients that take every place the sender has for one receiver, and stay silent.
    let mut stuck: Vec<TcpStream> = (0..1 + SPARE_CONNECTIONS)
        .map(|_| {
            let mut client = TcpStream::connect((target.ip, port)).unwrap();
            // Accepted: the sender's hello arrives.
            client.read_exact(&mut [0u8; 44]).unwrap();
            client
        })
        .collect();
    // The real receiver connects now and waits in the kernel's backlog.
    let mut stream = TcpStream::connect((target.ip, port)).unwrap();
    // The stuck clients leave at once (garbage instead of a hello), with no new
    // connection to wake the listener afterwards.
    for client in &mut stuck {
        client.write_all(&[0xee; 64]).unwrap();
    }
    let options = ReceiveOptions {
        pod: true,
        port,
        out_dir: dir.path().join("out"),
        connect_timeout: Duration::from_secs(5),
        overwrite: false,
        config,
    };
    let clock = Clock::new();
    let (mut session, mut work) = start_session(&target, &options, &clock).unwrap();
    // Its handshake must complete within the handshake timeout (10 s) of its connect.
    let result = drive(
        &mut stream,
        &mut session,
        &clock,
        &mut Traffic::default(),
        &mut ferry_std::lanes::Lanes::none(),
        |s, _| work.drain(s, clock.now(), &mut Quiet),
    );
    let summary = work.finish(&session, result);
    assert!(summary.is_ok(), "{:?}", summary.err());
    assert_eq!(served.join().unwrap().unwrap(), 1);
    assert_eq!(
        std::fs::read(dir.path().join("out/src/file")).unwrap(),
        vec![3u8; 300_000]
    );
}
