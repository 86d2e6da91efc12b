//! The conformance trace in `vectors/conformance.json`: one small batch moved between a
//! real sender and a real receiver, recorded as both byte streams and every plaintext
//! message in each direction, with the token, the ephemeral secrets and the keys, so that
//! an implementer can check their messages one by one. The batch has nested and empty
//! folders, an empty file, a file over two segments, a file resumed from a prefix the
//! receiver holds, a file that changes at the sender and is sent again, and text whose
//! segments are compressed; a map of 3 hashes per message brings hashmap updates.
//!
//! This test plays the batch again and checks that the trace has not drifted;
//! `vectors/verify_conformance.py` decodes it independently (PROTOCOL.md §2–7).
//! `FERRY_BLESS=1 cargo test -p ferry-core --test conformance` rewrites it after an
//! intended change to the wire format.

mod common;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use common::{assert_vectors_unchanged, split_records};
use ferry_core::handshake::{self, HELLO_LEN, Role};
use ferry_core::record::HEADER_LEN;
use ferry_core::testing::{Item, Pair, bytes, dir, file, manifest_of};
use ferry_core::transfer::{EntryKind, ReceiverSession, SenderSession, TransferConfig};
use ferry_core::{Entropy, SeededEntropy, Timestamp, Token};
use serde_json::{Value, json};

const SEED: u64 = 0xC0F0_2026;

fn config() -> TransferConfig {
    TransferConfig {
        part_size: 1024,
        segment_size: 8192,
        map_hashes_per_message: 3,
        segments_in_flight: 4,
        initial_window: 4096,
        window_floor: 8192,
        max_window: 64 << 10,
        compress: true,
        ..TransferConfig::default()
    }
}

/// Text that bz2 shrinks: numbered log lines.
fn log_text(len: usize) -> Vec<u8> {
    let mut text = Vec::new();
    let mut line = 0;
    while text.len() < len {
        text.extend_from_slice(format!("{line:06} GET /index.html 200 OK\n").as_bytes());
        line += 1;
    }
    text.truncate(len);
    text
}

fn batch() -> Vec<Item> {
    vec![
        dir("t"),
        dir("t/a"),
        dir("t/a/b"),
        dir("t/empty"),
        file("t/zero", Vec::new()),
        file("t/two", bytes(1, 12_000)),
        file("t/resumed", bytes(2, 6_000)),
        file("t/a/b/retried", bytes(3, 3_000)),
        file("t/log.txt", log_text(20_000)),
    ]
}

const RESUMED: usize = 6;
const HELD: usize = 2_500;
const RETRIED: usize = 7;

/// Entropy that remembers every draw, to find the ephemeral secrets the sessions drew.
struct Recording(SeededEntropy, Vec<Vec<u8>>);

impl Entropy for Recording {
    fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
        self.1.push(dest.to_vec());
    }
}

/// The token and the (sender, receiver) ephemeral secrets a pair built from `SEED` uses:
/// the sessions are built again, in the order `Pair::new` builds them, drawing from the
/// same seed.
fn secrets(items: &[Item]) -> (Token, [u8; 32], [u8; 32]) {
    let mut entropy = Recording(SeededEntropy::new(SEED), Vec::new());
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    let manifest = manifest_of(items, true);
    let skip = entropy.1.len();
    SenderSession::new(config(), token.clone(), manifest, &mut entropy, now).unwrap();
    let sender = entropy.1.len();
    ReceiverSession::new(config(), token.clone(), &mut entropy, now).unwrap();
    let secret = |draws: &[Vec<u8>]| -> [u8; 32] {
        let found: Vec<&Vec<u8>> = draws.iter().filter(|d| d.len() == 32).collect();
        assert_eq!(found.len(), 1, "one ephemeral secret per session");
        found[0].as_slice().try_into().unwrap()
    };
    (
        token,
        secret(&entropy.1[skip..sender]),
        secret(&entropy.1[sender..]),
    )
}

/// Opens the records of one direction: `(content type, payload)` of each.
fn open(records: &[Vec<u8>], key: &[u8; 32]) -> Vec<(u8, Vec<u8>)> {
    let aead = ChaCha20Poly1305::new(&Key::from(*key));
    records
        .iter()
        .enumerate()
        .map(|(sequence, record)| {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&(sequence as u64).to_be_bytes());
            let plain = aead
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &record[HEADER_LEN..],
                        aad: &record[..HEADER_LEN],
                    },
                )
                .expect("every record of the trace opens with its direction's key");
            (plain[0], plain[1..].to_vec())
        })
        .collect()
}

fn direction(stream: &[u8], key: &[u8; 32]) -> (Vec<u8>, Value) {
    let (hello, records) = split_records(stream);
    let opened = open(&records, key);
    let messages: Vec<Value> = opened
        .iter()
        .filter(|(content, _)| *content == 1)
        .map(|(_, payload)| Value::String(hex::encode(payload)))
        .collect();
    let contents: Vec<u8> = opened.iter().map(|(content, _)| *content).collect();
    (
        hello,
        json!({
            "stream": hex::encode(stream),
            "content_types": contents,
            "messages": messages,
        }),
    )
}

/// Moves the batch and records it.
fn generate() -> Value {
    let items = batch();
    let config = config();
    let mut pair = Pair::new(&items, config.clone(), config.clone(), SEED, true);
    pair.taps = Some([Vec::new(), Vec::new()]);
    pair.local = vec![(RESUMED, HELD as u64)];
    let resumed = items[RESUMED].data.clone().unwrap();
    pair.disk.partial.insert(RESUMED, resumed[..HELD].to_vec());
    // The file changes (visibly: its size stays, its mtime moves) before its first read:
    // attempt 1 is abandoned, and attempt 2 sends it as it is now.
    pair.source.on_read = Some(Box::new(|entry, _, _, count, data| {
        if entry == RETRIED && count == 1 {
            data[0] ^= 0xff;
        }
    }));
    pair.run();
    let mut delivered = items.clone();
    delivered[RETRIED].data.as_mut().unwrap()[0] ^= 0xff;
    pair.assert_delivered(&delivered);

    let [s2r, r2s] = pair.taps.take().unwrap();
    let (token, sender_secret, receiver_secret) = secrets(&items);
    let sender_hello: [u8; HELLO_LEN] = s2r[..HELLO_LEN].try_into().unwrap();
    let receiver_hello: [u8; HELLO_LEN] = r2s[..HELLO_LEN].try_into().unwrap();
    let keys = handshake::derive_secrets(
        sender_secret,
        Role::Sender,
        &sender_hello,
        &receiver_hello,
        &token,
    )
    .expect("the recorded secret is the sender's");
    let (_, sent) = direction(&s2r, &keys.sender_to_receiver);
    let (_, answered) = direction(&r2s, &keys.receiver_to_sender);
    let manifest = manifest_of(&items, true);
    let entries: Vec<Value> = (0..manifest.len())
        .map(|i| {
            let entry = manifest.get(i).unwrap();
            json!({
                "path": entry.path,
                "kind": if entry.kind == EntryKind::File { "file" } else { "dir" },
                "mode": entry.mode,
                "mtime_ns": entry.mtime_ns,
                "content": items[i].data.as_ref().map(hex::encode),
                "delivered": delivered[i].data.as_ref().map(hex::encode),
            })
        })
        .collect();
    json!({
        "about": "Ferry conformance trace: one batch, both byte streams and every plaintext message; see vectors/README.md",
        "protocol_version": handshake::VERSION,
        "seed": SEED,
        "token": token.to_string(),
        "token_bytes": hex::encode(token.as_bytes()),
        "sender_ephemeral_secret": hex::encode(sender_secret),
        "receiver_ephemeral_secret": hex::encode(receiver_secret),
        "transcript_hash": hex::encode(keys.transcript_hash),
        "key_sender_to_receiver": hex::encode(keys.sender_to_receiver),
        "key_receiver_to_sender": hex::encode(keys.receiver_to_sender),
        "config": {
            "part_size": config.part_size,
            "segment_size": config.segment_size,
            "max_extents_per_segment": config.max_extents_per_segment,
            "map_hashes_per_message": config.map_hashes_per_message,
            "segments_in_flight": config.segments_in_flight,
            "max_attempts": config.max_attempts,
            "compress": config.compress,
        },
        "batch": entries,
        "receiver_held": [{ "entry": RESUMED, "bytes": HELD }],
        "changed_at_sender": { "entry": RETRIED, "how": "first byte flipped before its first read; its mtime moves" },
        "sender_to_receiver": sent,
        "receiver_to_sender": answered,
    })
}

#[test]
fn the_conformance_trace_replays_unchanged() {
    let fresh = generate();
    assert_vectors_unchanged(
        "conformance.json",
        &fresh,
        "conformance",
        "vectors/verify_conformance.py",
    );
}

#[test]
fn the_trace_covers_what_it_says() {
    let trace = generate();
    let kinds = |side: &str| -> Vec<u8> {
        trace[side]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| hex::decode(m.as_str().unwrap()).unwrap()[0])
            .collect()
    };
    let sent = kinds("sender_to_receiver");
    let answered = kinds("receiver_to_sender");
    // MANIFEST, LAYOUT, ADV, PART, HMU, UPDATE, ABANDON from the sender.
    for kind in [0x01, 0x02, 0x04, 0x10, 0x11, 0x13, 0x14, 0x23, 0x24] {
        assert!(sent.contains(&kind), "the sender never sent {kind:#04x}");
    }
    // PLAN, REQ, PRF, GRANT, RETRY, DONE from the receiver.
    for kind in [0x03, 0x12, 0x15, 0x18, 0x20, 0x21] {
        assert!(
            answered.contains(&kind),
            "the receiver never sent {kind:#04x}"
        );
    }
    // A compressed segment: an ADV whose flags (`f`) have bit 1 set.
    let compressed = trace["sender_to_receiver"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| hex::decode(m.as_str().unwrap()).unwrap())
        .filter(|m| m[0] == 0x11)
        .any(|adv| {
            let at = adv.windows(2).position(|w| w == [0xa1, b'f']).unwrap();
            adv[at + 2] & 2 != 0
        });
    assert!(compressed, "no segment was compressed");
}
