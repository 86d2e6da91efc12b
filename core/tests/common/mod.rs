//! An in-process pair of channels joined by byte pipes, with hooks to split and tamper.

#![allow(dead_code, unreachable_pub)]

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ferry_core::handshake::HELLO_LEN;
use ferry_core::record::HEADER_LEN;
use ferry_core::{Channel, Config, Entropy, Error, Event, Role, SeededEntropy, Timestamp, Token};

/// Entropy that hands out exactly the bytes it was given (fixed ephemeral keys).
pub struct FixedEntropy(pub Vec<u8>);

impl Entropy for FixedEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        assert!(self.0.len() >= dest.len(), "FixedEntropy ran dry");
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Sender,
    Receiver,
}

/// Everything one side saw.
#[derive(Default)]
pub struct Seen {
    pub events: Vec<Event>,
    pub messages: Vec<Vec<u8>>,
    /// Bytes this side put on the wire, before any tampering.
    pub wire: Vec<u8>,
    pub error: Option<Error>,
}

pub struct Pair {
    token: Token,
    pub sender: Channel,
    pub receiver: Channel,
    pub now: Timestamp,
    /// Bytes handed to `handle_input` per call.
    pub chunk: usize,
    pub sender_seen: Seen,
    pub receiver_seen: Seen,
}

/// Alters the byte stream in flight: called with the stream offset and the bytes leaving
/// `from`, in the order they leave.
pub type Tamper<'a> = &'a mut dyn FnMut(Side, usize, &mut Vec<u8>);

impl Pair {
    pub fn new(seed: u64) -> Self {
        let mut entropy = SeededEntropy::new(seed);
        let token = Token::generate(&mut entropy);
        Self::with_tokens(seed, token.clone(), token, Config::default())
    }

    pub fn with_tokens(
        seed: u64,
        sender_token: Token,
        receiver_token: Token,
        config: Config,
    ) -> Self {
        let mut entropy = SeededEntropy::new(seed ^ 0x5eed);
        let now = Timestamp::ZERO;
        Pair {
            token: receiver_token.clone(),
            sender: Channel::new(
                Role::Sender,
                sender_token,
                config.clone(),
                &mut entropy,
                now,
            )
            .unwrap(),
            receiver: Channel::new(Role::Receiver, receiver_token, config, &mut entropy, now)
                .unwrap(),
            now,
            chunk: usize::MAX,
            sender_seen: Seen::default(),
            receiver_seen: Seen::default(),
        }
    }

    /// Moves pending bytes one way; true if any moved. Stops at the first error.
    pub fn transfer(&mut self, from: Side, tamper: Tamper<'_>) -> bool {
        let (src, dst, src_seen, dst_seen) = match from {
            Side::Sender => (
                &mut self.sender,
                &mut self.receiver,
                &mut self.sender_seen,
                &mut self.receiver_seen,
            ),
            Side::Receiver => (
                &mut self.receiver,
                &mut self.sender,
                &mut self.receiver_seen,
                &mut self.sender_seen,
            ),
        };
        let mut bytes = src.poll_transmit().to_vec();
        src.advance_transmit(bytes.len());
        if bytes.is_empty() || dst_seen.error.is_some() {
            return false;
        }
        let offset = src_seen.wire.len();
        src_seen.wire.extend_from_slice(&bytes);
        tamper(from, offset, &mut bytes);
        feed(dst, dst_seen, self.now, &bytes, self.chunk);
        true
    }

    /// Runs both directions until nothing moves.
    pub fn drive_with(&mut self, tamper: Tamper<'_>) {
        loop {
            let a = self.transfer(Side::Sender, tamper);
            let b = self.transfer(Side::Receiver, tamper);
            drain_events(&mut self.sender, &mut self.sender_seen);
            drain_events(&mut self.receiver, &mut self.receiver_seen);
            if !(a || b) {
                break;
            }
        }
    }

    pub fn drive(&mut self) {
        self.drive_with(&mut |_, _, _| {});
    }

    /// The token the receiver was built with.
    pub fn receiver_token(&self) -> Token {
        self.token.clone()
    }

    pub fn handshake(seed: u64) -> Self {
        let mut pair = Pair::new(seed);
        pair.drive();
        assert!(
            pair.sender.is_established() && pair.receiver.is_established(),
            "seed {seed}"
        );
        pair
    }
}

pub fn drain_events(channel: &mut Channel, seen: &mut Seen) {
    while let Some(event) = channel.poll_event() {
        seen.events.push(event);
    }
}

/// Feeds `bytes` to `dst` in chunks, collecting messages and the first error.
pub fn feed(dst: &mut Channel, seen: &mut Seen, now: Timestamp, bytes: &[u8], chunk: usize) {
    for piece in bytes.chunks(chunk.max(1)) {
        let mut offset = 0;
        while offset < piece.len() {
            match dst.handle_input(now, &piece[offset..]) {
                Ok(n) => offset += n,
                Err(error) => {
                    seen.error = Some(error);
                    return;
                }
            }
            if let Some(message) = dst.take_message() {
                seen.messages.push(message.to_vec());
            }
        }
    }
}

/// Splits a direction's wire bytes into the hello and whole records.
pub fn split_records(wire: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (hello, mut rest) = wire.split_at(HELLO_LEN);
    let mut records = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..HEADER_LEN].try_into().unwrap()) as usize;
        let (record, tail) = rest.split_at(HEADER_LEN + len);
        records.push(record.to_vec());
        rest = tail;
    }
    (hello.to_vec(), records)
}

/// Seals a record the way PROTOCOL.md §4 says, with the `chacha20poly1305` crate directly
/// rather than the core's code: any content type, any payload, any sequence number.
pub fn seal_record(key: &[u8; 32], sequence: u64, content_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut plaintext = vec![content_type];
    plaintext.extend_from_slice(payload);
    let length = (plaintext.len() + 16) as u32;
    let header = length.to_be_bytes();
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&sequence.to_be_bytes());
    let aead = ChaCha20Poly1305::new(&Key::from(*key));
    let sealed = aead
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: &header,
            },
        )
        .unwrap();
    let mut record = header.to_vec();
    record.extend(sealed);
    record
}

/// The vector file `name` in `vectors/`, as JSON.
pub fn load_vectors(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vectors")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// Fails if `vectors/NAME` differs from `fresh`, what the core produces now; with
/// `FERRY_BLESS` set, rewrites it first (after an intended change to the wire format:
/// then bump the protocol version and re-run the file's Python check, `check`).
pub fn assert_vectors_unchanged(name: &str, fresh: &serde_json::Value, test: &str, check: &str) {
    if std::env::var_os("FERRY_BLESS").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../vectors")
            .join(name);
        std::fs::write(path, serde_json::to_string_pretty(fresh).unwrap() + "\n").unwrap();
    }
    assert!(
        load_vectors(name) == *fresh,
        "vectors/{name} no longer matches what the core produces. If the wire format changed \
         on purpose, run FERRY_BLESS=1 cargo test -p ferry-core --test {test}, bump the \
         protocol version in PROTOCOL.md, and re-run {check}"
    );
}
