//! Test vectors in `vectors/handshake.json`: replayed against the core, and regenerated
//! to catch drift. `FERRY_BLESS=1 cargo test -p ferry-core --test vectors -- --test-threads=1`
//! rewrites them
//! after an intended change to the wire format (then re-run `vectors/verify_handshake.py`).

mod common;

use common::{
    FixedEntropy, Seen, assert_vectors_unchanged, feed, load_vectors, split_records as split,
};
use ferry_core::handshake::{self, HELLO_LEN, Role};
use ferry_core::record::HEADER_LEN;
use ferry_core::{Channel, Config, Entropy, Event, SeededEntropy, Timestamp, Token};
use serde_json::{Value, json};

const SENDER_MESSAGE: &[u8] = b"ferry test vector: sender to receiver";
const RECEIVER_MESSAGE: &[u8] = b"ferry test vector: receiver to sender";

fn channel(role: Role, secret: [u8; 32], token: &Token) -> Channel {
    let mut entropy = FixedEntropy(secret.to_vec());
    Channel::new(
        role,
        token.clone(),
        Config::default(),
        &mut entropy,
        Timestamp::ZERO,
    )
    .unwrap()
}

fn take_transmit(channel: &mut Channel) -> Vec<u8> {
    let bytes = channel.poll_transmit().to_vec();
    channel.advance_transmit(bytes.len());
    bytes
}

/// Plays one side of the vector conversation: answer the peer's whole stream, then send
/// this side's message and close. Returns what it transmitted and what it saw.
fn play(role: Role, secret: [u8; 32], token: &Token, peer_stream: &[u8]) -> (Vec<u8>, Seen) {
    let mut me = channel(role, secret, token);
    let mut seen = Seen::default();
    feed(&mut me, &mut seen, Timestamp::ZERO, peer_stream, usize::MAX);
    while let Some(event) = me.poll_event() {
        seen.events.push(event);
    }
    if seen.error.is_none() {
        let message = if role == Role::Sender {
            SENDER_MESSAGE
        } else {
            RECEIVER_MESSAGE
        };
        me.send_message(message).unwrap();
        me.close().unwrap();
    }
    (take_transmit(&mut me), seen)
}

fn record_list(records: &[Vec<u8>], transcript: &[u8; 32], message: &[u8]) -> Value {
    let plaintexts = [
        (0u8, transcript.to_vec()),
        (1, message.to_vec()),
        (3, Vec::new()),
    ];
    assert_eq!(records.len(), plaintexts.len());
    records
        .iter()
        .zip(plaintexts)
        .enumerate()
        .map(|(sequence, (record, (content_type, payload)))| {
            json!({
                "sequence": sequence,
                "content_type": content_type,
                "payload": hex::encode(payload),
                "record": hex::encode(record),
            })
        })
        .collect()
}

fn negative(name: &str, victim: Role, secret: [u8; 32], token: &Token, input: &[u8]) -> Value {
    let (_, seen) = play(victim, secret, token, input);
    assert!(seen.messages.is_empty(), "{name}: delivered data");
    let error = seen.error.unwrap_or_else(|| panic!("{name}: no error"));
    json!({
        "name": name,
        "victim": victim.to_string(),
        "victim_ephemeral_secret": hex::encode(secret),
        "victim_token": token.to_string(),
        "input": hex::encode(input),
        "expected_error": format!("{error:?}"),
        "expected_message": error.to_string(),
    })
}

/// Builds the whole vector file from fixed inputs.
fn generate() -> Value {
    let mut entropy = SeededEntropy::new(0xF022_7EC7);
    let token = Token::generate(&mut entropy);
    let mut sender_secret = [0u8; 32];
    let mut receiver_secret = [0u8; 32];
    entropy.fill(&mut sender_secret);
    entropy.fill(&mut receiver_secret);

    // Both sides see each other's hello first, then each other's records.
    let sender_hello = take_transmit(&mut channel(Role::Sender, sender_secret, &token));
    let receiver_hello = take_transmit(&mut channel(Role::Receiver, receiver_secret, &token));
    // The receiver needs the sender's confirmation, which needs the receiver's hello.
    let (sender_confirm_only, _) = {
        let mut sender = channel(Role::Sender, sender_secret, &token);
        let mut seen = Seen::default();
        feed(
            &mut sender,
            &mut seen,
            Timestamp::ZERO,
            &receiver_hello,
            usize::MAX,
        );
        (take_transmit(&mut sender), seen)
    };
    let (r2s, receiver_seen) = play(
        Role::Receiver,
        receiver_secret,
        &token,
        &sender_confirm_only,
    );
    let (s2r, sender_seen) = play(Role::Sender, sender_secret, &token, &r2s);
    assert_eq!(
        sender_seen.events,
        vec![Event::HandshakeComplete, Event::PeerClosed]
    );
    assert_eq!(receiver_seen.events, vec![Event::HandshakeComplete]);
    assert_eq!(sender_seen.messages, vec![RECEIVER_MESSAGE.to_vec()]);

    let peer_hello: [u8; HELLO_LEN] = receiver_hello.as_slice().try_into().unwrap();
    let own_hello: [u8; HELLO_LEN] = sender_hello.as_slice().try_into().unwrap();
    let secrets =
        handshake::derive_secrets(sender_secret, Role::Sender, &own_hello, &peer_hello, &token)
            .unwrap();
    let (_, s2r_records) = split(&s2r);
    let (_, r2s_records) = split(&r2s);

    let mut wrong_token_bytes = *token.as_bytes();
    wrong_token_bytes[0] ^= 1;
    let wrong_token = Token::from_bytes(wrong_token_bytes);
    let mut tampered = s2r.clone();
    let tamper_at = HELLO_LEN + s2r_records[0].len() + HEADER_LEN + 3;
    tampered[tamper_at] ^= 0x40;
    let mut zero_key_hello = sender_hello.clone();
    zero_key_hello[HELLO_LEN - 32..].fill(0);
    let mut other_version_hello = sender_hello.clone();
    other_version_hello[5..7].copy_from_slice(&(handshake::VERSION + 1).to_be_bytes());

    json!({
        "about": "Ferry handshake and record-layer vectors; see vectors/README.md",
        "protocol_version": handshake::VERSION,
        "record_limit": Config::default().max_record_payload,
        "token": token.to_string(),
        "token_bytes": hex::encode(token.as_bytes()),
        "sender_ephemeral_secret": hex::encode(sender_secret),
        "receiver_ephemeral_secret": hex::encode(receiver_secret),
        "sender_hello": hex::encode(&sender_hello),
        "receiver_hello": hex::encode(&receiver_hello),
        "shared_secret": hex::encode(secrets.shared_secret),
        "transcript_hash": hex::encode(secrets.transcript_hash),
        "key_sender_to_receiver": hex::encode(secrets.sender_to_receiver),
        "key_receiver_to_sender": hex::encode(secrets.receiver_to_sender),
        "sender_to_receiver": {
            "stream": hex::encode(&s2r),
            "records": record_list(&s2r_records, &secrets.transcript_hash, SENDER_MESSAGE),
        },
        "receiver_to_sender": {
            "stream": hex::encode(&r2s),
            "records": record_list(&r2s_records, &secrets.transcript_hash, RECEIVER_MESSAGE),
        },
        "negative": [
            negative("wrong token", Role::Receiver, receiver_secret, &wrong_token, &s2r),
            negative("tampered data record", Role::Receiver, receiver_secret, &token, &tampered),
            negative("all-zero public key", Role::Receiver, receiver_secret, &token, &zero_key_hello),
            negative("other protocol version", Role::Receiver, receiver_secret, &token, &other_version_hello),
            negative("not a Ferry peer", Role::Receiver, receiver_secret, &token, b"SSH-2.0-OpenSSH_9.2\r\n"),
        ],
    })
}

fn load() -> Value {
    load_vectors("handshake.json")
}

fn bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("hex string")).expect("valid hex")
}

fn array32(value: &Value) -> [u8; 32] {
    bytes(value).try_into().expect("32 bytes")
}

#[test]
fn vectors_have_not_drifted() {
    let fresh = generate();
    assert_vectors_unchanged(
        "handshake.json",
        &fresh,
        "vectors",
        "vectors/verify_handshake.py",
    );
}

#[test]
fn every_vector_replays() {
    let v = load();
    let token: Token = v["token"].as_str().unwrap().parse().unwrap();
    assert_eq!(token.as_bytes().to_vec(), bytes(&v["token_bytes"]));
    let sender_secret = array32(&v["sender_ephemeral_secret"]);
    let receiver_secret = array32(&v["receiver_ephemeral_secret"]);

    // Hellos from the fixed secrets.
    assert_eq!(
        take_transmit(&mut channel(Role::Sender, sender_secret, &token)),
        bytes(&v["sender_hello"])
    );
    assert_eq!(
        take_transmit(&mut channel(Role::Receiver, receiver_secret, &token)),
        bytes(&v["receiver_hello"])
    );

    // The key schedule, computed from either side.
    let receiver_hello: [u8; HELLO_LEN] = bytes(&v["receiver_hello"]).try_into().unwrap();
    let sender_hello: [u8; HELLO_LEN] = bytes(&v["sender_hello"]).try_into().unwrap();
    let from_sender = handshake::derive_secrets(
        sender_secret,
        Role::Sender,
        &sender_hello,
        &receiver_hello,
        &token,
    )
    .unwrap();
    let from_receiver = handshake::derive_secrets(
        receiver_secret,
        Role::Receiver,
        &receiver_hello,
        &sender_hello,
        &token,
    )
    .unwrap();
    assert!(from_sender == from_receiver);
    assert_eq!(from_sender.shared_secret, array32(&v["shared_secret"]));
    assert_eq!(from_sender.transcript_hash, array32(&v["transcript_hash"]));
    assert_eq!(
        from_sender.transcript_hash,
        handshake::transcript_hash(&sender_hello, &receiver_hello)
    );
    assert_eq!(
        from_sender.sender_to_receiver,
        array32(&v["key_sender_to_receiver"])
    );
    assert_eq!(
        from_sender.receiver_to_sender,
        array32(&v["key_receiver_to_sender"])
    );

    // Each side, fed the other's recorded stream, produces exactly its own recorded stream
    // and delivers exactly the recorded payloads.
    let s2r = bytes(&v["sender_to_receiver"]["stream"]);
    let r2s = bytes(&v["receiver_to_sender"]["stream"]);
    let (receiver_out, receiver_seen) = play(Role::Receiver, receiver_secret, &token, &s2r);
    assert_eq!(receiver_out, r2s);
    assert_eq!(receiver_seen.messages, vec![SENDER_MESSAGE.to_vec()]);
    assert_eq!(
        receiver_seen.events,
        vec![Event::HandshakeComplete, Event::PeerClosed]
    );
    let (sender_out, sender_seen) = play(Role::Sender, sender_secret, &token, &r2s);
    assert_eq!(sender_out, s2r);
    assert_eq!(sender_seen.messages, vec![RECEIVER_MESSAGE.to_vec()]);

    // The per-record listing agrees with the streams.
    for (direction, stream) in [("sender_to_receiver", &s2r), ("receiver_to_sender", &r2s)] {
        let (_, records) = split(stream);
        let listed: Vec<Vec<u8>> = v[direction]["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| bytes(&r["record"]))
            .collect();
        assert_eq!(records, listed, "{direction}");
    }

    // Every negative case fails with its recorded error and delivers nothing.
    let negatives = v["negative"].as_array().unwrap();
    assert!(negatives.len() >= 5);
    for case in negatives {
        let role = if case["victim"] == "sender" {
            Role::Sender
        } else {
            Role::Receiver
        };
        let victim_token: Token = case["victim_token"].as_str().unwrap().parse().unwrap();
        let (_, seen) = play(
            role,
            array32(&case["victim_ephemeral_secret"]),
            &victim_token,
            &bytes(&case["input"]),
        );
        let error = seen
            .error
            .unwrap_or_else(|| panic!("{}: no error", case["name"]));
        assert_eq!(
            format!("{error:?}"),
            case["expected_error"].as_str().unwrap(),
            "{}",
            case["name"]
        );
        assert_eq!(
            error.to_string(),
            case["expected_message"].as_str().unwrap()
        );
        assert!(seen.messages.is_empty(), "{}", case["name"]);
    }
}
