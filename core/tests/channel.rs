//! Behaviour of the secure channel: handshake, records, tampering, timers.

mod common;

use std::time::Duration;

use common::{FixedEntropy, Pair, Side, feed, seal_record, split_records};
use ferry_core::handshake::{HELLO_LEN, MAGIC, VERSION, derive_secrets};
use ferry_core::record::{HEADER_LEN, sealed_len};
use ferry_core::{
    Channel, Config, ConfigError, Error, Event, Role, SeededEntropy, SendError, TimeoutPhase,
    Timestamp, Token,
};

fn messages_both_ways(pair: &mut Pair, rounds: usize) {
    for i in 0..rounds {
        pair.sender
            .send_message(format!("to receiver {i}").as_bytes())
            .unwrap();
        pair.receiver
            .send_message(format!("to sender {i}").as_bytes())
            .unwrap();
    }
    // A large message too, so chunking crosses record and header boundaries.
    pair.sender.send_message(&vec![0xab; 5000]).unwrap();
    pair.drive();
}

#[test]
fn handshake_and_records_survive_every_chunk_size() {
    // Learn the total size of one session's traffic, then replay it chunked every way.
    let mut reference = Pair::handshake(1);
    messages_both_ways(&mut reference, 3);
    let total = reference
        .sender_seen
        .wire
        .len()
        .max(reference.receiver_seen.wire.len());
    let expected_at_receiver = reference.receiver_seen.messages.clone();
    let expected_at_sender = reference.sender_seen.messages.clone();
    assert_eq!(expected_at_receiver.len(), 4);
    assert_eq!(expected_at_sender.len(), 3);

    for chunk in 1..=total {
        let mut pair = Pair::new(1);
        pair.chunk = chunk;
        pair.drive();
        assert!(pair.sender.is_established(), "chunk {chunk}");
        assert!(pair.receiver.is_established(), "chunk {chunk}");
        messages_both_ways(&mut pair, 3);
        assert_eq!(
            pair.receiver_seen.messages, expected_at_receiver,
            "chunk {chunk}"
        );
        assert_eq!(
            pair.sender_seen.messages, expected_at_sender,
            "chunk {chunk}"
        );
        assert_eq!(pair.sender_seen.events, vec![Event::HandshakeComplete]);
        assert_eq!(pair.receiver_seen.events, vec![Event::HandshakeComplete]);
        assert!(pair.sender_seen.error.is_none() && pair.receiver_seen.error.is_none());
    }
}

#[test]
fn both_sides_derive_the_same_transcript() {
    let pair = Pair::handshake(2);
    assert!(pair.sender.transcript_hash().is_some());
    assert_eq!(
        pair.sender.transcript_hash(),
        pair.receiver.transcript_hash()
    );
}

#[test]
fn wrong_token_fails_both_sides_before_any_message() {
    let mut entropy = SeededEntropy::new(3);
    let right = Token::generate(&mut entropy);
    let wrong = Token::generate(&mut entropy);
    let mut pair = Pair::with_tokens(3, right, wrong, Config::default());
    pair.drive();
    assert_eq!(pair.sender_seen.error, Some(Error::AuthenticationFailed));
    assert_eq!(pair.receiver_seen.error, Some(Error::AuthenticationFailed));
    assert!(!pair.sender.is_established() && !pair.receiver.is_established());
    // Neither side may send application data, and nothing was delivered.
    assert!(matches!(
        pair.sender.send_message(b"secret"),
        Err(SendError::Failed(Error::AuthenticationFailed))
    ));
    assert!(pair.sender_seen.messages.is_empty() && pair.receiver_seen.messages.is_empty());
    assert_eq!(
        Error::AuthenticationFailed.to_string(),
        "authentication failed: wrong token or tampered connection"
    );
}

#[test]
fn sending_before_the_handshake_is_refused() {
    let mut pair = Pair::new(4);
    assert_eq!(
        pair.sender.send_message(b"early"),
        Err(SendError::NotEstablished)
    );
    pair.drive();
    assert_eq!(pair.sender.send_message(b"now"), Ok(()));
}

fn hello_with(role: u8, version: u16, public: [u8; 32]) -> Vec<u8> {
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&version.to_be_bytes());
    hello.push(role);
    hello.extend_from_slice(&(256u32 << 10).to_be_bytes());
    hello.extend_from_slice(&public);
    assert_eq!(hello.len(), HELLO_LEN);
    hello
}

fn receiver_fed(bytes: &[u8]) -> Option<Error> {
    let mut entropy = SeededEntropy::new(5);
    let token = Token::generate(&mut entropy);
    let mut receiver = Channel::new(
        Role::Receiver,
        token,
        Config::default(),
        &mut entropy,
        Timestamp::ZERO,
    )
    .unwrap();
    let mut seen = common::Seen::default();
    feed(&mut receiver, &mut seen, Timestamp::ZERO, bytes, usize::MAX);
    assert!(seen.messages.is_empty());
    seen.error
}

#[test]
fn low_order_public_keys_are_rejected() {
    // Every u-coordinate of small order on Curve25519 and its twist (0, 1, the two points
    // of order 8), and the non-canonical encodings p-1, p, p+1 of -1, 0 and 1: each makes
    // the shared secret all zeros, which proves nothing about the peer.
    let mut one = [0u8; 32];
    one[0] = 1;
    let points = [
        [0u8; 32],
        one,
        le_hex("57119fd0dd4e22d8868e1c58c45c44045bef839c55b1d0b1248c50a3bc959c5f"),
        le_hex("00b8495f16056286fdb1329ceb8d09da6ac49ff1fae35616aeb8413b7c7aebe0"),
        le_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffec"),
        le_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed"),
        le_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffee"),
    ];
    for public in points {
        assert_eq!(
            receiver_fed(&hello_with(1, VERSION, public)),
            Some(Error::NonContributoryKey),
            "{public:02x?}"
        );
    }
}

#[test]
fn strangers_and_other_versions_get_clear_errors() {
    assert_eq!(
        receiver_fed(b"GET / HTTP/1.1\r\n"),
        Some(Error::NotFerryPeer)
    );
    // Rejected as soon as the first wrong byte arrives, not after a whole hello.
    assert_eq!(receiver_fed(b"G"), Some(Error::NotFerryPeer));
    assert_eq!(
        receiver_fed(&hello_with(1, VERSION + 1, [9; 32])[..7]),
        Some(Error::VersionMismatch {
            ours: VERSION,
            theirs: VERSION + 1
        })
    );
    assert_eq!(
        receiver_fed(&hello_with(2, VERSION, [9; 32])),
        Some(Error::RoleConflict(Role::Receiver))
    );
    assert_eq!(
        receiver_fed(&hello_with(7, VERSION, [9; 32])),
        Some(Error::MalformedHello("unknown role byte"))
    );
    let message = Error::VersionMismatch { ours: 1, theirs: 2 }.to_string();
    assert!(
        message.contains("version 1") && message.contains("version 2"),
        "{message}"
    );
}

#[test]
fn every_single_byte_flip_is_an_error_never_corrupt_plaintext() {
    let mut reference = Pair::handshake(6);
    messages_both_ways(&mut reference, 20);
    let expected_at_receiver = reference.receiver_seen.messages.clone();
    let expected_at_sender = reference.sender_seen.messages.clone();
    assert!(
        reference.sender_seen.wire.len() > 4096,
        "sweep must cover 4 KiB of traffic"
    );
    for direction in [Side::Sender, Side::Receiver] {
        let wire_len = match direction {
            Side::Sender => reference.sender_seen.wire.len(),
            Side::Receiver => reference.receiver_seen.wire.len(),
        };
        for position in 0..wire_len.min(4096) {
            let mut pair = Pair::new(6);
            let mut tamper = |from: Side, offset: usize, bytes: &mut Vec<u8>| {
                if from == direction && (offset..offset + bytes.len()).contains(&position) {
                    // A different bit at each position, so every bit lane is exercised.
                    bytes[position - offset] ^= 1 << (position % 8);
                }
            };
            pair.drive_with(&mut tamper);
            if pair.sender.is_established() && pair.receiver.is_established() {
                for i in 0..20 {
                    let _ = pair
                        .sender
                        .send_message(format!("to receiver {i}").as_bytes());
                    let _ = pair
                        .receiver
                        .send_message(format!("to sender {i}").as_bytes());
                }
                let _ = pair.sender.send_message(&vec![0xab; 5000]);
                let _ = pair.sender.close();
                let _ = pair.receiver.close();
                pair.drive_with(&mut tamper);
            }
            // The connection ends here; a flipped length byte may have left the victim
            // waiting for a record that never completes, which the end of stream reveals.
            let (victim_channel, victim) = match direction {
                Side::Sender => (&mut pair.receiver, &mut pair.receiver_seen),
                Side::Receiver => (&mut pair.sender, &mut pair.sender_seen),
            };
            if victim.error.is_none() {
                victim.error = victim_channel.handle_eof(pair.now).err();
            }
            assert!(
                victim.error.is_some(),
                "flip at {position} ({direction:?}) went unnoticed"
            );
            // Whatever was delivered before the error is a prefix of the real messages.
            let expected = match direction {
                Side::Sender => &expected_at_receiver,
                Side::Receiver => &expected_at_sender,
            };
            assert!(
                expected.starts_with(&victim.messages),
                "flip at {position}: corrupt delivery"
            );
        }
    }
}

/// Replays the sender's stream to a fresh receiver with the same keys, with the records
/// rearranged by `edit`; returns what the receiver saw.
fn replay_to_receiver(seed: u64, edit: impl Fn(&mut Vec<Vec<u8>>)) -> common::Seen {
    let mut reference = Pair::handshake(seed);
    for i in 0..4 {
        reference
            .sender
            .send_message(format!("message {i}").as_bytes())
            .unwrap();
    }
    reference.drive();
    let (hello, mut records) = split_records(&reference.sender_seen.wire);
    edit(&mut records);
    let mut pair = Pair::new(seed);
    // Let the receiver answer the hello so its keys match the recorded sender's.
    let mut stream = hello;
    stream.extend(records.concat());
    let mut seen = common::Seen::default();
    feed(
        &mut pair.receiver,
        &mut seen,
        Timestamp::ZERO,
        &stream,
        usize::MAX,
    );
    seen
}

#[test]
fn dropped_duplicated_and_reordered_records_are_integrity_errors() {
    let intact = replay_to_receiver(7, |_| {});
    assert!(intact.error.is_none());
    assert_eq!(intact.messages.len(), 4);

    let dropped = replay_to_receiver(7, |records| {
        records.remove(2);
    });
    assert_eq!(dropped.error, Some(Error::Integrity { record: 2 }));
    assert_eq!(dropped.messages, vec![b"message 0".to_vec()]);

    let duplicated = replay_to_receiver(7, |records| {
        let copy = records[1].clone();
        records.insert(2, copy);
    });
    assert_eq!(duplicated.error, Some(Error::Integrity { record: 2 }));
    assert_eq!(duplicated.messages, vec![b"message 0".to_vec()]);
    assert_eq!(duplicated.messages, vec![b"message 0".to_vec()]);

    let reordered = replay_to_receiver(7, |records| records.swap(2, 3));
    assert_eq!(reordered.error, Some(Error::Integrity { record: 2 }));
    assert_eq!(reordered.messages.len(), 1);
}

#[test]
fn truncation_and_eof_are_named() {
    let mut pair = Pair::handshake(8);
    pair.sender.send_message(b"cut me").unwrap();
    let bytes = pair.sender.poll_transmit().to_vec();
    let mut seen = common::Seen::default();
    feed(
        &mut pair.receiver,
        &mut seen,
        Timestamp::ZERO,
        &bytes[..bytes.len() - 3],
        usize::MAX,
    );
    assert!(seen.messages.is_empty());
    assert_eq!(
        pair.receiver.handle_eof(Timestamp::ZERO),
        Err(Error::Truncated)
    );

    let mut pair = Pair::handshake(8);
    assert_eq!(
        pair.receiver.handle_eof(Timestamp::ZERO),
        Err(Error::UnexpectedEof)
    );

    let mut pair = Pair::handshake(8);
    pair.sender.send_message(b"last words").unwrap();
    pair.sender.close().unwrap();
    pair.drive();
    assert_eq!(pair.receiver_seen.messages, vec![b"last words".to_vec()]);
    assert_eq!(pair.receiver_seen.events.last(), Some(&Event::PeerClosed));
    assert_eq!(pair.receiver.handle_eof(Timestamp::ZERO), Ok(()));
    assert_eq!(pair.sender.send_message(b"more"), Err(SendError::Closed));
}

#[test]
fn oversized_and_undersized_record_headers_are_refused() {
    let config = Config::default();
    let mut pair = Pair::handshake(9);
    let mut seen = common::Seen::default();
    let too_long = (sealed_len(config.max_record_payload) - HEADER_LEN + 1) as u32;
    feed(
        &mut pair.receiver,
        &mut seen,
        Timestamp::ZERO,
        &too_long.to_be_bytes(),
        usize::MAX,
    );
    assert_eq!(
        seen.error,
        Some(Error::RecordTooLarge {
            len: u64::from(too_long),
            max: u64::from(too_long) - 1
        })
    );

    let mut pair = Pair::handshake(9);
    let mut seen = common::Seen::default();
    feed(
        &mut pair.receiver,
        &mut seen,
        Timestamp::ZERO,
        &16u32.to_be_bytes(),
        usize::MAX,
    );
    assert_eq!(seen.error, Some(Error::RecordTooShort { len: 16 }));
}

#[test]
fn largest_message_fits_and_one_more_byte_does_not() {
    let mut pair = Pair::handshake(10);
    let max = pair.sender.max_message_len();
    let big = vec![7u8; max];
    pair.sender.send_message(&big).unwrap();
    pair.drive();
    assert_eq!(pair.receiver_seen.messages, vec![big]);
    assert_eq!(
        pair.sender.send_message(&vec![0; max + 1]),
        Err(SendError::TooLarge { len: max + 1, max })
    );
}

#[test]
fn a_full_send_buffer_is_backpressure_not_growth() {
    let mut pair = Pair::handshake(11);
    let message = vec![1u8; 60_000];
    let mut queued = 0;
    loop {
        match pair.sender.send_message(&message) {
            Ok(()) => queued += 1,
            Err(SendError::Backpressure { needed, free }) => {
                assert!(needed > free);
                break;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    // The refusal came exactly when the next record would no longer fit.
    let pending = pair.sender.poll_transmit().len();
    assert!(queued >= 1);
    assert!(pending + sealed_len(message.len()) > Config::default().send_buffer);
    assert!(pending + sealed_len(0) <= Config::default().send_buffer);
    pair.drive();
    assert_eq!(pair.receiver_seen.messages.len(), queued);
    assert!(pair.sender.send_message(&message).is_ok());
}

#[test]
fn silent_peer_times_out_in_handshake() {
    let config = Config::default();
    let mut entropy = SeededEntropy::new(12);
    let token = Token::generate(&mut entropy);
    let mut channel = Channel::new(
        Role::Receiver,
        token,
        config.clone(),
        &mut entropy,
        Timestamp::ZERO,
    )
    .unwrap();
    let deadline = channel.poll_timeout().unwrap();
    assert_eq!(
        deadline,
        Timestamp::ZERO.saturating_add(config.handshake_timeout)
    );
    // Early ticks do nothing.
    channel
        .handle_timeout(Timestamp::from_micros(deadline.as_micros() - 1))
        .unwrap();
    let error = channel.handle_timeout(deadline).unwrap_err();
    assert_eq!(
        error,
        Error::Timeout {
            phase: TimeoutPhase::Handshake,
            after: config.handshake_timeout
        }
    );
    assert!(
        error.to_string().starts_with("timed out after 10 s"),
        "{error}"
    );
    assert_eq!(channel.poll_timeout(), None);
}

/// Advances the pair's clock to the earliest timer and fires it on both sides.
fn step_to_next_timer(pair: &mut Pair) -> Timestamp {
    let next = [pair.sender.poll_timeout(), pair.receiver.poll_timeout()]
        .into_iter()
        .flatten()
        .min()
        .unwrap();
    assert!(next >= pair.now, "a timer in the past");
    pair.now = next;
    for (channel, seen) in [
        (&mut pair.sender, &mut pair.sender_seen),
        (&mut pair.receiver, &mut pair.receiver_seen),
    ] {
        if seen.error.is_none()
            && let Err(error) = channel.handle_timeout(next)
        {
            seen.error = Some(error);
        }
    }
    next
}

#[test]
fn keepalives_hold_an_idle_connection_open_for_hours() {
    let mut pair = Pair::handshake(13);
    let hours = Timestamp::ZERO.saturating_add(Duration::from_secs(3 * 3600));
    let mut wakeups = 0;
    while pair.now < hours {
        step_to_next_timer(&mut pair);
        pair.drive();
        wakeups += 1;
    }
    assert!(pair.sender_seen.error.is_none() && pair.receiver_seen.error.is_none());
    assert!(pair.sender.is_established() && pair.receiver.is_established());
    // One wake-up per keepalive interval per side, roughly: idle means idle.
    let interval = Config::default().keepalive_interval.as_secs();
    assert!(
        wakeups <= 2 * 3 * 3600 / interval as usize + 4,
        "{wakeups} wake-ups"
    );
}

#[test]
fn a_peer_that_goes_silent_times_out_idle() {
    let mut pair = Pair::handshake(14);
    let config = Config::default();
    // The sender's bytes never arrive any more; the receiver must give up, not hang.
    loop {
        step_to_next_timer(&mut pair);
        let bytes = pair.sender.poll_transmit().len();
        pair.sender.advance_transmit(bytes);
        pair.transfer(Side::Receiver, &mut |_, _, _| {});
        if pair.receiver_seen.error.is_some() {
            break;
        }
        assert!(pair.now.as_micros() < 10 * config.idle_timeout.as_micros() as u64);
    }
    assert_eq!(
        pair.receiver_seen.error,
        Some(Error::Timeout {
            phase: TimeoutPhase::Idle,
            after: config.idle_timeout
        })
    );
}

#[test]
fn poll_timeout_never_returns_the_past() {
    let mut entropy = SeededEntropy::new(15);
    let token = Token::generate(&mut entropy);
    let mut channel = Channel::new(
        Role::Sender,
        token,
        Config::default(),
        &mut entropy,
        Timestamp::ZERO,
    )
    .unwrap();
    // A driver that is late: the handshake deadline has passed but was not handled yet.
    let late = Timestamp::from_micros(Config::default().handshake_timeout.as_micros() as u64 + 5);
    channel.handle_input(late, &MAGIC[..2]).unwrap();
    assert_eq!(channel.poll_timeout(), Some(late));
}

#[test]
fn an_invalid_config_is_refused_up_front() {
    let base = Config::default();
    let cases = [
        (
            Config {
                max_record_payload: 10,
                ..base.clone()
            },
            ConfigError::RecordPayload(10),
        ),
        (
            Config {
                max_record_payload: 32 << 20,
                ..base.clone()
            },
            ConfigError::RecordPayload(32 << 20),
        ),
        (
            Config {
                send_buffer: 1000,
                ..base.clone()
            },
            ConfigError::SendBuffer {
                send_buffer: 1000,
                record: sealed_len(base.max_record_payload),
            },
        ),
        (
            Config {
                idle_timeout: Duration::ZERO,
                ..base.clone()
            },
            ConfigError::ZeroTimeout,
        ),
        (
            Config {
                keepalive_interval: base.idle_timeout,
                ..base.clone()
            },
            ConfigError::Keepalive,
        ),
    ];
    for (config, expected) in cases {
        let mut entropy = FixedEntropy(vec![0; 64]);
        let token = Token::from_bytes([0; 16]);
        let result = Channel::new(Role::Sender, token, config, &mut entropy, Timestamp::ZERO);
        assert_eq!(result.err(), Some(expected));
    }
}

fn le_hex(hex_be: &str) -> [u8; 32] {
    let mut bytes: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&hex_be[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    bytes.reverse();
    bytes
}

/// A receiver with fixed keys, plus the sender hello, sender-to-receiver key and transcript
/// it will accept, so a test can hand it records sealed any way it likes.
fn keyed_receiver() -> (Channel, Vec<u8>, [u8; 32], [u8; 32]) {
    let token = Token::from_bytes([3; 16]);
    let sender_secret = [0x51; 32];
    let receiver_secret = [0x52; 32];
    let new = |role, secret: [u8; 32]| {
        let mut entropy = FixedEntropy(secret.to_vec());
        Channel::new(
            role,
            token.clone(),
            Config::default(),
            &mut entropy,
            Timestamp::ZERO,
        )
        .unwrap()
    };
    let sender_hello = new(Role::Sender, sender_secret).poll_transmit().to_vec();
    let receiver = new(Role::Receiver, receiver_secret);
    let receiver_hello: [u8; HELLO_LEN] = receiver.poll_transmit()[..HELLO_LEN].try_into().unwrap();
    let sender_hello_array: [u8; HELLO_LEN] = sender_hello.as_slice().try_into().unwrap();
    let secrets = derive_secrets(
        sender_secret,
        Role::Sender,
        &sender_hello_array,
        &receiver_hello,
        &token,
    )
    .unwrap();
    (
        receiver,
        sender_hello,
        secrets.sender_to_receiver,
        secrets.transcript_hash,
    )
}

/// Feeds a hello and then `records` (content type, payload) sealed at sequences 0, 1, ...
fn receiver_given(records: &[(u8, &[u8])]) -> common::Seen {
    let (mut receiver, hello, key, _) = keyed_receiver();
    let mut stream = hello;
    for (sequence, (content, payload)) in records.iter().enumerate() {
        stream.extend(seal_record(&key, sequence as u64, *content, payload));
    }
    let mut seen = common::Seen::default();
    feed(
        &mut receiver,
        &mut seen,
        Timestamp::ZERO,
        &stream,
        usize::MAX,
    );
    common::drain_events(&mut receiver, &mut seen);
    seen
}

#[test]
fn s4_record_order_and_content_rules_hold_for_authentic_records() {
    let (_, _, _, transcript) = keyed_receiver();
    let confirm: (u8, &[u8]) = (0, &transcript);
    let unexpected = |record, why| Some(Error::UnexpectedRecord { record, why });

    // The independent sealer agrees with the core: a proper stream is accepted.
    let fine = receiver_given(&[confirm, (1, b"data"), (2, b""), (3, b"")]);
    assert_eq!(fine.error, None);
    assert_eq!(fine.messages, vec![b"data".to_vec()]);
    assert_eq!(
        fine.events,
        vec![Event::HandshakeComplete, Event::PeerClosed]
    );

    let early = receiver_given(&[(1, b"too early")]);
    assert_eq!(
        early.error,
        unexpected(0, "a record before the key confirmation")
    );
    assert!(early.messages.is_empty());
    assert_eq!(
        receiver_given(&[(2, b"")]).error,
        unexpected(0, "a record before the key confirmation")
    );
    assert_eq!(
        receiver_given(&[(0, &[0u8; 32])]).error,
        Some(Error::AuthenticationFailed)
    );
    assert_eq!(
        receiver_given(&[confirm, confirm]).error,
        unexpected(1, "a second key confirmation")
    );
    assert_eq!(
        receiver_given(&[confirm, (9, b"")]).error,
        unexpected(1, "unknown content type")
    );
    assert_eq!(
        receiver_given(&[confirm, (2, b"x")]).error,
        unexpected(1, "a keepalive with a payload")
    );
    assert_eq!(
        receiver_given(&[confirm, (3, b"x")]).error,
        unexpected(1, "a close with a payload")
    );
    let after_close = receiver_given(&[confirm, (3, b""), (1, b"late")]);
    assert_eq!(after_close.error, Some(Error::DataAfterClose));
    assert!(after_close.messages.is_empty());
}

#[test]
fn end_of_stream_is_named_by_where_it_falls() {
    // Inside the hello.
    let mut pair = Pair::new(16);
    let hello = pair.sender.poll_transmit()[..10].to_vec();
    pair.receiver.handle_input(Timestamp::ZERO, &hello).unwrap();
    assert_eq!(
        pair.receiver.handle_eof(Timestamp::ZERO),
        Err(Error::Truncated)
    );
    // Right after a record that was taken: a clean boundary, but no close.
    let mut pair = Pair::handshake(16);
    pair.sender.send_message(b"last").unwrap();
    pair.drive();
    assert_eq!(pair.receiver_seen.messages, vec![b"last".to_vec()]);
    assert_eq!(
        pair.receiver.handle_eof(Timestamp::ZERO),
        Err(Error::UnexpectedEof)
    );
}

#[test]
fn a_half_closed_connection_stays_open_while_the_other_side_works() {
    let mut pair = Pair::handshake(17);
    pair.sender.close().unwrap();
    pair.drive();
    assert_eq!(pair.receiver_seen.events.last(), Some(&Event::PeerClosed));
    // The receiver keeps sending for far longer than the idle timeout; neither side may
    // time out, since the closed direction is silent by design.
    for i in 0..200 {
        pair.now = pair.now.saturating_add(Duration::from_secs(10));
        pair.receiver.handle_timeout(pair.now).unwrap();
        pair.sender.handle_timeout(pair.now).unwrap();
        pair.receiver
            .send_message(format!("still working {i}").as_bytes())
            .unwrap();
        pair.drive();
    }
    assert_eq!(pair.sender_seen.messages.len(), 200);
    assert!(pair.sender_seen.error.is_none() && pair.receiver_seen.error.is_none());
    pair.receiver.close().unwrap();
    pair.drive();
    assert_eq!(pair.receiver.poll_timeout(), None);
    assert_eq!(pair.sender.poll_timeout(), None);
}

#[test]
fn both_sides_send_within_the_smaller_record_limit() {
    let small = Config {
        max_record_payload: 4096,
        ..Config::default()
    };
    let mut entropy = SeededEntropy::new(18);
    let mut pair = Pair::new(18);
    pair.receiver = Channel::new(
        Role::Receiver,
        pair.receiver_token(),
        small,
        &mut entropy,
        Timestamp::ZERO,
    )
    .unwrap();
    pair.drive();
    assert_eq!(pair.sender.max_message_len(), 4096);
    assert_eq!(pair.receiver.max_message_len(), 4096);
    assert_eq!(
        pair.sender.send_message(&[0; 4097]),
        Err(SendError::TooLarge {
            len: 4097,
            max: 4096
        })
    );
    pair.sender.send_message(&[1; 4096]).unwrap();
    pair.drive();
    assert_eq!(pair.receiver_seen.messages, vec![vec![1; 4096]]);
}

#[test]
fn s2_a_record_limit_below_2_kib_or_above_16_mib_is_refused() {
    let with_limit = |limit: u32| {
        let mut hello = hello_with(1, VERSION, [9; 32]);
        hello[8..12].copy_from_slice(&limit.to_be_bytes());
        receiver_fed(&hello)
    };
    let outside = Some(Error::MalformedHello("record limit outside 2 KiB..16 MiB"));
    assert_eq!(with_limit(2047), outside);
    assert_eq!(with_limit((16 << 20) + 1), outside);
    // At the bounds the hello is fine: what follows is the key exchange's business.
    assert_ne!(with_limit(2048), outside);
    assert_ne!(with_limit(16 << 20), outside);
}

/// A small deterministic generator for the script below (its seed is printed on failure).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Writes up to `n` of `channel`'s pending bytes to `wire`.
fn take(channel: &mut Channel, wire: &mut Vec<u8>, n: usize) {
    let pending = channel.poll_transmit();
    let n = n.min(pending.len());
    wire.extend_from_slice(&pending[..n]);
    channel.advance_transmit(n);
}

/// Gives every batch `channel` has out or waiting back, run, newest first.
fn seal_all(channel: &mut Channel, out: &mut Vec<ferry_core::sealing::SealWork>) {
    while let Some(work) = channel.poll_seal_work() {
        out.push(work);
    }
    for mut work in out.drain(..).rev() {
        work.run();
        channel.seal_done(work).unwrap();
    }
}

/// Sends the same parts (a head written in place, a tail from elsewhere) and small
/// control messages on two senders, one sealing inline and one on "threads": batches
/// are taken out as they come, run and given back in a shuffled order, and its bytes
/// are written in uneven pieces, while the inline one's are all written at once. A
/// message goes only when both have room. Returns every byte each put on the wire, and
/// the threaded one's pair.
fn parts_on_the_wire(seed: u64) -> (Vec<u8>, Vec<u8>, Pair, usize) {
    let mut inline = Pair::handshake(3);
    let mut threaded = Pair::handshake(3);
    threaded.sender.offload_sealing();
    let (sender, other) = (&mut threaded.sender, &mut inline.sender);
    let mut dice = Dice(seed | 1);
    let (mut inline_wire, mut wire, mut out) = (Vec::new(), Vec::new(), Vec::new());
    let mut messages = 0;
    for step in 0..1000u32 {
        match dice.below(6) {
            0..=2 => {
                let head = 1 + dice.below(40) as usize;
                let tail: Vec<u8> = (0..1 + dice.below(70_000))
                    .map(|i| (i ^ u64::from(step)) as u8)
                    .collect();
                let len = sealed_len(head + tail.len());
                if sender.send_room() >= len && other.send_room() >= len {
                    let fill = |buf: &mut [u8]| buf.fill(step as u8);
                    sender.send_with_tail(head, fill, &tail).unwrap();
                    other.send_with_tail(head, fill, &tail).unwrap();
                    // Composed for a thread, not sealed here.
                    assert!(sender.sealing_pending() && !other.sealing_pending());
                    messages += 1;
                }
            }
            3 => {
                let message = format!("control {step}");
                let len = sealed_len(message.len());
                if sender.send_room() >= len && other.send_room() >= len {
                    sender.send_message(message.as_bytes()).unwrap();
                    other.send_message(message.as_bytes()).unwrap();
                    messages += 1;
                }
            }
            4 => {
                while let Some(work) = sender.poll_seal_work() {
                    out.push(work);
                }
                if !out.is_empty() {
                    let mut work = out.swap_remove(dice.below(out.len() as u64) as usize);
                    work.run();
                    sender.seal_done(work).unwrap();
                }
            }
            _ => take(sender, &mut wire, dice.below(300_000) as usize),
        }
        take(other, &mut inline_wire, usize::MAX);
    }
    sender.close().unwrap();
    other.close().unwrap();
    take(other, &mut inline_wire, usize::MAX);
    while sender.sealing_pending() || !sender.poll_transmit().is_empty() {
        seal_all(sender, &mut out);
        take(sender, &mut wire, usize::MAX);
    }
    (inline_wire, wire, threaded, messages)
}

#[test]
fn records_sealed_on_threads_put_the_same_bytes_on_the_wire_as_sealed_inline() {
    for seed in [1, 2, 3, 0xfe44] {
        let (inline, threaded, mut pair, messages) = parts_on_the_wire(seed);
        assert!(
            inline.len() > 4 << 20,
            "seed {seed}: the script sent too little ({} bytes)",
            inline.len()
        );
        assert!(inline == threaded, "seed {seed}: the wire differs");
        // And the receiver reads every message, up to the close.
        feed(
            &mut pair.receiver,
            &mut pair.receiver_seen,
            Timestamp::ZERO,
            &threaded,
            70_001,
        );
        common::drain_events(&mut pair.receiver, &mut pair.receiver_seen);
        assert_eq!(pair.receiver_seen.messages.len(), messages, "seed {seed}");
        assert!(
            pair.receiver_seen.error.is_none(),
            "seed {seed}: {:?}",
            pair.receiver_seen.error
        );
        assert!(
            pair.receiver_seen.events.contains(&Event::PeerClosed),
            "seed {seed}"
        );
    }
}

/// A sender sealing on threads with one part composed and its batch taken out.
fn one_batch_out(seed: u64) -> (Pair, ferry_core::sealing::SealWork) {
    let mut pair = Pair::handshake(seed);
    pair.sender.offload_sealing();
    pair.sender
        .send_with_tail(3, |buf| buf.fill(7), &[1; 1000])
        .unwrap();
    let work = pair.sender.poll_seal_work().expect("a batch");
    assert!(pair.sender.poll_seal_work().is_none());
    assert!(pair.sender.sealing_pending());
    // Nothing of it goes out while it is away: no plaintext ever reaches the wire.
    assert!(pair.sender.poll_transmit().is_empty());
    (pair, work)
}

#[test]
fn a_batch_from_elsewhere_or_given_back_unsealed_is_refused() {
    let (mut pair, mut work) = one_batch_out(5);
    let (mut other, mut others) = one_batch_out(6);
    others.run();
    // Another connection's batch, with the same number and length: refused, and this
    // channel goes on.
    assert!(pair.sender.seal_done(others).is_err());
    assert!(pair.sender.error().is_none());
    work.run();
    pair.sender.seal_done(work).unwrap();
    assert!(!pair.sender.sealing_pending());
    assert_eq!(pair.sender.poll_transmit().len(), sealed_len(1003));
    pair.drive();
    assert_eq!(
        pair.receiver_seen.messages,
        vec![[vec![7; 3], vec![1; 1000]].concat()]
    );
    // Given back twice: refused the second time.
    let (mut again, mut twice) = one_batch_out(5);
    twice.run();
    let (_, mut copy) = one_batch_out(5);
    copy.run();
    again.sender.seal_done(twice).unwrap();
    assert!(again.sender.seal_done(copy).is_err());
    assert!(again.sender.error().is_none());
    // A batch given back without being run fails its channel: it would be plaintext.
    other.sender.send_message(b"behind it").unwrap();
    let (_, unsealed) = one_batch_out(6);
    let error = other.sender.seal_done(unsealed).unwrap_err();
    assert!(error.to_string().contains("unsealed"), "{error}");
    assert!(other.sender.poll_transmit().is_empty());
    assert!(!other.sender.sealing_pending());
    assert!(other.sender.send_message(b"more").is_err());
}

/// What a receiver made of a stream: its messages, events, and error.
#[derive(Debug, PartialEq)]
struct Received {
    messages: Vec<Vec<u8>>,
    events: Vec<Event>,
    error: Option<Error>,
}

/// Feeds `wire` to a fresh receiver (keys from seed 3, as the senders here), in chunks
/// the dice choose. With `threads`, it is shown each chunk first, and the records it
/// hands out are opened and given back in a shuffled order; some are still out when
/// the reader reaches them (it then takes nothing, and one is given back), unless
/// `wait` (then the driver waits for the next one before it gives input).
fn receive_chunked(wire: &[u8], seed: u64, threads: bool, wait: bool) -> (Received, usize) {
    let mut pair = Pair::new(3);
    if threads {
        pair.receiver.offload_opening();
    }
    // The receiver's hello and confirmation go to the sender as usual.
    let mut dice = Dice(seed | 1);
    let receiver = &mut pair.receiver;
    let mut received = Received {
        messages: Vec::new(),
        events: Vec::new(),
        error: None,
    };
    let (mut out, mut opened) = (Vec::new(), 0);
    let mut at = 0;
    'stream: while at < wire.len() {
        let chunk = &wire[at..(at + 1 + dice.below(200_000) as usize).min(wire.len())];
        at += chunk.len();
        receiver.pre_open(chunk);
        while let Some(work) = receiver.poll_open_work() {
            out.push(work);
        }
        let mut fed = 0;
        while fed < chunk.len() {
            // Some come back now, in any order.
            for _ in 0..dice.below(4) {
                if !out.is_empty() {
                    let mut work = out.swap_remove(dice.below(out.len() as u64) as usize);
                    work.run();
                    receiver.open_done(work).unwrap();
                    opened += 1;
                }
            }
            while wait && receiver.input_waits() {
                let mut work = out.swap_remove(dice.below(out.len() as u64) as usize);
                work.run();
                receiver.open_done(work).unwrap();
                opened += 1;
            }
            // Fed in pieces too, so that some whole records arrive split.
            let piece = (1 + dice.below(90_000) as usize).min(chunk.len() - fed);
            let mut took = 0;
            while took < piece {
                match receiver.handle_input(Timestamp::ZERO, &chunk[fed + took..fed + piece]) {
                    // The next record is out being opened: a driver waits for work.
                    Ok(0) if receiver.input_waits() => {
                        let mut work = out.swap_remove(dice.below(out.len() as u64) as usize);
                        work.run();
                        receiver.open_done(work).unwrap();
                        opened += 1;
                    }
                    Ok(n) => took += n,
                    Err(error) => {
                        received.error = Some(error);
                        break 'stream;
                    }
                }
                if let Some(message) = receiver.take_message() {
                    received.messages.push(message.to_vec());
                }
                while let Some(event) = receiver.poll_event() {
                    received.events.push(event);
                }
            }
            fed += piece;
        }
    }
    (received, opened)
}

#[test]
fn records_opened_on_threads_give_what_opening_inline_gives_even_tampered() {
    for seed in [1u64, 2, 0xbeef] {
        let (after_handshake, _, pair, messages) = parts_on_the_wire(seed);
        // The whole stream, from the sender's hello on.
        let wire = [pair.sender_seen.wire.clone(), after_handshake].concat();
        let (inline, _) = receive_chunked(&wire, seed, false, false);
        assert!(inline.error.is_none(), "seed {seed}: {:?}", inline.error);
        assert_eq!(inline.messages.len(), messages, "seed {seed}");
        for wait in [false, true] {
            let (threaded, opened) = receive_chunked(&wire, seed, true, wait);
            assert!(
                opened > 20,
                "seed {seed}: only {opened} records opened on threads"
            );
            assert!(
                threaded == inline,
                "seed {seed}, wait {wait}: received otherwise"
            );
        }
        // One bit flipped in a record's ciphertext, its tag, or its header: the same
        // error at the same record, nothing of it or after it delivered.
        let (_, records) = split_records(&wire);
        let mut dice = Dice(seed);
        for _ in 0..6 {
            let mut tampered = wire.clone();
            let record = 2 + dice.below(records.len() as u64 - 3) as usize;
            let start = HELLO_LEN + records[..record].iter().map(Vec::len).sum::<usize>();
            let flip = start + dice.below(records[record].len() as u64) as usize;
            tampered[flip] ^= 1 << dice.below(8);
            let (inline, _) = receive_chunked(&tampered, seed, false, false);
            assert!(
                inline.error.is_some(),
                "seed {seed}: a flipped bit went unnoticed"
            );
            for wait in [false, true] {
                let (threaded, _) = receive_chunked(&tampered, seed, true, wait);
                assert!(
                    threaded == inline,
                    "seed {seed}, record {record}, wait {wait}: {:?} against {:?}",
                    threaded.error,
                    inline.error
                );
            }
        }
    }
}
