//! Two Ferry endpoints over real loopback TCP: handshake, one message each way, close.
//!
//! Run with `cargo run -p ferry-examples --bin channel_demo`. It shows the whole driver
//! contract of `ferry_core::Channel` in one blocking loop: feed received bytes, take a
//! message, write pending bytes, honour the timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ferry_core::{Channel, Config, Event, Role, Timestamp, Token};
use ferry_std::OsEntropy;

/// Runs one endpoint until the peer has closed: sends `message` once established.
fn run(mut stream: TcpStream, role: Role, token: Token, message: &str) -> Result<String, String> {
    let start = Instant::now();
    let now = || Timestamp::from_micros(start.elapsed().as_micros() as u64);
    let mut channel = Channel::new(role, token, Config::default(), &mut OsEntropy, now())
        .map_err(|e| e.to_string())?;
    let mut received = String::new();
    let mut peer_closed = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(event) = channel.poll_event() {
            match event {
                Event::HandshakeComplete => {
                    channel
                        .send_message(message.as_bytes())
                        .map_err(|e| e.to_string())?;
                    channel.close().map_err(|e| e.to_string())?;
                }
                Event::PeerClosed => peer_closed = true,
                _ => {}
            }
        }
        let pending = channel.poll_transmit();
        if !pending.is_empty() {
            stream.write_all(pending).map_err(|e| e.to_string())?;
            let written = pending.len();
            channel.advance_transmit(written);
        }
        // Done only when both directions are closed and our own close is on the wire.
        if peer_closed {
            return Ok(received);
        }
        let wait = channel
            .poll_timeout()
            .map(|at| Duration::from_micros(at.as_micros().saturating_sub(now().as_micros())));
        stream
            .set_read_timeout(Some(
                wait.unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(1)),
            ))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => channel.handle_eof(now()).map_err(|e| e.to_string())?,
            Ok(n) => {
                let mut offset = 0;
                while offset < n {
                    offset += channel
                        .handle_input(now(), &buf[offset..n])
                        .map_err(|e| e.to_string())?;
                    if let Some(message) = channel.take_message() {
                        received = String::from_utf8_lossy(message).into_owned();
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                channel.handle_timeout(now()).map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Runs both endpoints; returns what the receiver and the sender received.
fn demo() -> Result<(String, String), String> {
    let token = Token::generate(&mut OsEntropy);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("sender listening on {address}, token {token}");
    let sender_token = token.clone();
    let sender = std::thread::spawn(move || {
        let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
        run(stream, Role::Sender, sender_token, "hello from the sender")
    });
    let stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    let at_receiver = run(stream, Role::Receiver, token, "hello from the receiver")?;
    let at_sender = sender
        .join()
        .map_err(|_| "sender thread panicked".to_string())??;
    Ok((at_receiver, at_sender))
}

fn main() -> Result<(), String> {
    let (at_receiver, at_sender) = demo()?;
    println!("receiver got: {at_receiver}");
    println!("sender got:   {at_sender}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_endpoints_exchange_a_message_over_loopback_tcp() {
        let (at_receiver, at_sender) = super::demo().unwrap();
        assert_eq!(at_receiver, "hello from the sender");
        assert_eq!(at_sender, "hello from the receiver");
    }
}
