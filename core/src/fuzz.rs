//! Bodies of the fuzz targets in `fuzz/`, compiled with the crate so they cannot rot;
//! `core/tests/fuzz_bodies.rs` also runs them on every `cargo test`. Each must return
//! normally for every input: a panic here is a bug.

use crate::channel::Channel;
use crate::config::Config;
use crate::entropy::SeededEntropy;
use crate::handshake::Role;
use crate::time::Timestamp;
use crate::token::Token;

/// Splits `data` into a chunking pattern (its first byte) and the bytes to feed.
fn chunk_size(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (usize::from(first % 64) + 1, rest),
        None => (1, data),
    }
}

/// Feeds `input` to `channel` in chunks, taking messages and checking the invariants a
/// driver relies on. Returns when the channel fails or the input is used up.
fn feed_checked(channel: &mut Channel, input: &[u8], chunk: usize, mut now: Timestamp) {
    for piece in input.chunks(chunk) {
        now = now.saturating_add(core::time::Duration::from_millis(1));
        let mut offset = 0;
        while offset < piece.len() {
            match channel.handle_input(now, &piece[offset..]) {
                Ok(n) => offset += n,
                Err(_) => return,
            }
            if channel.take_message().is_some() {
                assert!(
                    channel.is_established(),
                    "message released before confirmation"
                );
            }
            while channel.poll_event().is_some() {}
            if let Some(at) = channel.poll_timeout() {
                assert!(at >= now, "timeout in the past");
            }
        }
    }
    if channel
        .handle_timeout(now.saturating_add(Config::default().idle_timeout))
        .is_ok()
    {
        let _ = channel.handle_eof(now);
    }
}

/// A fresh endpoint fed arbitrary bytes from the first one on: hello parsing, the key
/// schedule and record framing, with the real AEAD unless the null suite is enabled.
pub fn channel_from_wire(data: &[u8]) {
    let (chunk, input) = chunk_size(data);
    let role = if chunk % 2 == 0 {
        Role::Sender
    } else {
        Role::Receiver
    };
    let mut entropy = SeededEntropy::new(1);
    let token = Token::generate(&mut entropy);
    let Ok(mut channel) = Channel::new(
        role,
        token,
        Config::default(),
        &mut entropy,
        Timestamp::ZERO,
    ) else {
        return;
    };
    feed_checked(&mut channel, input, chunk, Timestamp::ZERO);
}

/// A receiver that completed a real handshake with a real sender, then fed arbitrary
/// bytes as the sender's records. With `insecure-null-crypto` a record authenticates when
/// its tag is its sequence number, so the fuzzer reaches the content-type and ordering
/// rules behind the AEAD.
pub fn channel_after_handshake(data: &[u8]) {
    let (chunk, input) = chunk_size(data);
    let mut entropy = SeededEntropy::new(2);
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    let (Ok(mut sender), Ok(mut receiver)) = (
        Channel::new(
            Role::Sender,
            token.clone(),
            Config::default(),
            &mut entropy,
            now,
        ),
        Channel::new(Role::Receiver, token, Config::default(), &mut entropy, now),
    ) else {
        return;
    };
    for _ in 0..3 {
        let to_receiver = sender.poll_transmit().to_vec();
        sender.advance_transmit(to_receiver.len());
        let to_sender = receiver.poll_transmit().to_vec();
        receiver.advance_transmit(to_sender.len());
        let fed = receiver
            .handle_input(now, &to_receiver)
            .and(sender.handle_input(now, &to_sender));
        assert!(fed.is_ok(), "an honest handshake failed: {fed:?}");
    }
    assert!(
        receiver.is_established(),
        "honest handshake did not complete"
    );
    feed_checked(&mut receiver, input, chunk, now);
}
