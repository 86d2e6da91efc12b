//! Bodies of the fuzz targets in `fuzz/`, compiled with the crate so they cannot rot;
//! `core/tests/fuzz_bodies.rs` also runs them on every `cargo test`. Each must return
//! normally for every input: a panic here is a bug.

use crate::channel::Channel;
use crate::config::Config;
use crate::entropy::SeededEntropy;
use crate::handshake::Role;
use crate::time::Timestamp;
use crate::token::Token;

/// True in fuzz builds, whose AEAD is a stand-in that cannot see a changed byte: a harness
/// that flips bits on the wire must then do what the real AEAD would (end the session).
pub const STAND_IN_AEAD: bool = cfg!(feature = "insecure-null-crypto");

/// Splits `data` into a chunking pattern (its first byte) and the bytes to feed.
fn chunk_size(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (usize::from(first % 64) + 1, rest),
        None => (1, data),
    }
}

/// What a fuzz body saw, so tests can check their seeds reach deep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Application messages delivered.
    pub messages: usize,
    /// True if the channel failed (at input, end of stream, or a timer).
    pub failed: bool,
}

/// Feeds `input` to `channel` in chunks, taking messages and checking the invariants a
/// driver relies on; then ends the stream and lets every timer fire.
fn feed_checked(channel: &mut Channel, input: &[u8], chunk: usize, mut now: Timestamp) -> Outcome {
    let mut outcome = Outcome::default();
    'feed: for piece in input.chunks(chunk) {
        now = now.saturating_add(core::time::Duration::from_millis(1));
        let mut offset = 0;
        while offset < piece.len() {
            match channel.handle_input(now, &piece[offset..]) {
                Ok(n) => offset += n,
                Err(_) => break 'feed,
            }
            if channel.take_message().is_some() {
                assert!(
                    channel.is_established(),
                    "message released before confirmation"
                );
                outcome.messages += 1;
            }
            while channel.poll_event().is_some() {}
            if let Some(at) = channel.poll_timeout() {
                assert!(at >= now, "timeout in the past");
            }
        }
    }
    let ended = channel.handle_eof(now);
    let timers = channel.handle_timeout(now.saturating_add(Config::default().idle_timeout));
    outcome.failed = ended.is_err() || timers.is_err();
    outcome
}

/// A fresh endpoint fed arbitrary bytes from the first one on: hello parsing, the key
/// schedule and record framing, with the real AEAD unless the null suite is enabled.
pub fn channel_from_wire(data: &[u8]) -> Outcome {
    let (chunk, input) = chunk_size(data);
    let role = if chunk % 2 == 0 {
        Role::Sender
    } else {
        Role::Receiver
    };
    let mut entropy = SeededEntropy::new(1);
    let token = Token::generate(&mut entropy);
    match Channel::new(
        role,
        token,
        Config::default(),
        &mut entropy,
        Timestamp::ZERO,
    ) {
        Ok(mut channel) => feed_checked(&mut channel, input, chunk, Timestamp::ZERO),
        Err(_) => Outcome::default(),
    }
}

/// An honest sender and receiver of the `channel_after_handshake` target, handshake done.
fn established_pair() -> Option<(Channel, Channel)> {
    let mut entropy = SeededEntropy::new(2);
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    let mut sender = Channel::new(
        Role::Sender,
        token.clone(),
        Config::default(),
        &mut entropy,
        now,
    )
    .ok()?;
    let mut receiver =
        Channel::new(Role::Receiver, token, Config::default(), &mut entropy, now).ok()?;
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
    Some((sender, receiver))
}

/// A receiver that completed a real handshake with a real sender, then fed arbitrary
/// bytes as the sender's records. With `insecure-null-crypto` a record authenticates when
/// its tag is its sequence number, so the fuzzer reaches the content-type and ordering
/// rules behind the AEAD; with the real suite, start from [`after_handshake_sample`].
pub fn channel_after_handshake(data: &[u8]) -> Outcome {
    let (chunk, input) = chunk_size(data);
    match established_pair() {
        Some((_, mut receiver)) => feed_checked(&mut receiver, input, chunk, Timestamp::ZERO),
        None => Outcome::default(),
    }
}

/// Records this target's own sender really seals after the handshake (messages of several
/// sizes, a keepalive, a close), behind a chunking byte: a seed input that authenticates
/// even with the real AEAD, for mutation.
pub fn after_handshake_sample() -> Vec<u8> {
    let Some((mut sender, _)) = established_pair() else {
        return Vec::new();
    };
    for size in [0usize, 1, 100, 5000] {
        let _ = sender.send_message(&vec![0x5a; size]);
    }
    let later = Timestamp::ZERO.saturating_add(Config::default().keepalive_interval);
    let _ = sender.handle_timeout(later);
    let _ = sender.close();
    let mut sample = vec![63u8];
    sample.extend_from_slice(sender.poll_transmit());
    sample
}

/// Manifest decoding and every path rule: arbitrary MANIFEST_ENTRIES bodies into a
/// bounded manifest. Whatever is accepted must satisfy the rules.
pub fn manifest_entries(data: &[u8]) -> Outcome {
    use crate::transfer::manifest::{Manifest, ManifestLimits, check_path};
    let limits = ManifestLimits {
        max_entries: 64,
        max_path_bytes: 4096,
        ..ManifestLimits::default()
    };
    let Ok(mut manifest) = Manifest::with_capacity(64, 4096, &limits) else {
        return Outcome::default();
    };
    let decoded = crate::transfer::wire::Entries::received(data).for_each(|entry| {
        manifest
            .push(entry, &limits)
            .map_err(crate::transfer::TransferError::from)
    });
    let accepted = decoded.is_ok() && manifest.check_tree().is_ok();
    if accepted {
        for entry in manifest.iter() {
            assert_eq!(
                check_path(entry.path, &limits),
                Ok(()),
                "an accepted path breaks a rule"
            );
        }
    }
    Outcome {
        messages: manifest.len(),
        failed: !accepted,
    }
}

/// The Resource codecs: whatever decodes re-encodes to something that decodes to the same
/// fields (ADV, HMU: msgpack, where a peer may use longer encodings than ours, as RNS
/// accepts too), or to the very same bytes (REQ, PRF: fixed layouts).
pub fn resource_messages(data: &[u8]) -> Outcome {
    use crate::resource::{Advertisement, HashmapUpdate, Proof, Request};
    let Some((&which, body)) = data.split_first() else {
        return Outcome::default();
    };
    let max = 128;
    let roundtrip = |encoded: Result<usize, crate::msgpack::BufferTooSmall>, out: &[u8]| {
        assert!(
            matches!(encoded, Ok(n) if out[..n] == *body),
            "re-encoding differs"
        );
    };
    let mut out = vec![0u8; body.len() + 16];
    let ok = match which % 4 {
        0 => Advertisement::decode(body, max)
            .map(|adv| {
                assert!(adv.hashmap.len() / 4 <= max);
                // Keys may come in any order and unknown ones are skipped; only RNS order
                // re-encodes identically, so compare fields instead of bytes.
                let mut again = vec![0u8; adv.encoded_len()];
                let n = adv.encode(&mut again).unwrap_or(0);
                assert_eq!(Advertisement::decode(&again[..n], max).ok(), Some(adv));
            })
            .is_ok(),
        1 => Request::decode(body, max)
            .map(|r| roundtrip(r.encode(&mut out), &out))
            .is_ok(),
        2 => HashmapUpdate::decode(body, max)
            .map(|update| {
                let n = update.encode(&mut out).unwrap_or(0);
                assert_eq!(HashmapUpdate::decode(&out[..n], max).ok(), Some(update));
            })
            .is_ok(),
        _ => Proof::decode(body)
            .map(|p| assert_eq!(p.to_bytes()[..], *body))
            .is_ok(),
    };
    Outcome {
        messages: usize::from(ok),
        failed: !ok,
    }
}

/// A receiver session after a real handshake, fed arbitrary transfer messages sealed by a
/// real sender channel: reaches every message handler with the real crypto suite.
/// `data` is a sequence of `len (u16 BE) ‖ message` pieces.
pub fn receiver_messages(data: &[u8]) -> Outcome {
    use crate::testing::{MemoryDisk, drain};
    use crate::transfer::{ReceiverSession, Session, TransferConfig, TransferEvent};
    let mut entropy = SeededEntropy::new(3);
    let token = Token::generate(&mut entropy);
    let now = Timestamp::ZERO;
    // Small buffers: the same rules, far more executions per second.
    let config = TransferConfig {
        segment_size: 64 << 10,
        part_size: 16 << 10,
        max_extents_per_segment: 64,
        initial_window: 64 << 10,
        ..TransferConfig::default()
    };
    let Ok(mut sender) = Channel::new(
        Role::Sender,
        token.clone(),
        config.channel.clone(),
        &mut entropy,
        now,
    ) else {
        return Outcome::default();
    };
    let Ok(mut receiver) = ReceiverSession::new(config, token, &mut entropy, now) else {
        return Outcome::default();
    };
    let mut outcome = Outcome::default();
    let mut pieces = data;
    // A small disk: the fuzzer's manifest may name files of any size.
    let mut disk = MemoryDisk::default();
    disk.capacity = Some(4 << 20);
    let mut step = |sender: &mut Channel, receiver: &mut ReceiverSession| -> bool {
        let bytes = sender.poll_transmit().to_vec();
        sender.advance_transmit(bytes.len());
        let mut at = 0;
        while at < bytes.len() {
            match receiver.handle_input(now, &bytes[at..]) {
                Ok(n) => at += n,
                Err(_) => return false,
            }
            let drained = drain(receiver, now, &mut disk, |receiver, event| match event {
                TransferEvent::BatchOffered { .. } => receiver.accept(now, &[]),
                _ => Ok(()),
            });
            if drained.is_err() {
                return false;
            }
            if let Some(at_time) = receiver.poll_timeout() {
                assert!(at_time >= now, "timeout in the past");
            }
        }
        let back = receiver.poll_transmit().to_vec();
        receiver.advance_transmit(back.len());
        let mut at = 0;
        while at < back.len() {
            match sender.handle_input(now, &back[at..]) {
                Ok(n) => at += n,
                Err(_) => return false,
            }
            let _ = sender.take_message();
        }
        while sender.poll_event().is_some() {}
        true
    };
    for _ in 0..3 {
        step(&mut sender, &mut receiver);
    }
    while pieces.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([pieces[0], pieces[1]])).min(pieces.len() - 2);
        let (message, rest) = pieces[2..].split_at(len);
        pieces = rest;
        if message.is_empty() || sender.send_message(message).is_err() {
            continue;
        }
        outcome.messages += 1;
        if !step(&mut sender, &mut receiver) {
            outcome.failed = true;
            break;
        }
    }
    outcome
}

mod session;
pub use session::{Focus, ScriptOutcome, session_script};

/// The real bz2 decoder on a segment a peer could send (the sessions use a stand-in in
/// fuzz builds, see `transfer::bz2`): the first two bytes give the size the layout
/// promises (up to 64 KiB), the rest is the compressed data. A segment that decodes
/// exactly must come back the same through bz2 again. Returns whether it decoded.
pub fn bz2_segment(data: &[u8]) -> bool {
    use crate::transfer::bz2::{Decompressed, bz2_compress, bz2_decompress};
    let Some((&[high, low], compressed)) = data.split_first_chunk::<2>() else {
        return false;
    };
    let mut out = vec![0u8; usize::from(u16::from_be_bytes([high, low]))];
    if bz2_decompress(compressed, &mut out) != Decompressed::Exactly {
        return false;
    }
    let mut again = vec![0u8; out.len()];
    if let Some(len) = bz2_compress(&out, &mut again) {
        let mut back = vec![0u8; out.len()];
        assert_eq!(
            bz2_decompress(&again[..len], &mut back),
            Decompressed::Exactly
        );
        assert_eq!(back, out, "bz2 round trip differs");
    }
    true
}

/// The connection-string parser (`IP:TOKEN`): whatever parses prints as a string that
/// parses to the same thing.
pub fn connection_string(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = text.parse::<crate::token::ConnectionString>() {
        let printed = parsed.to_string();
        assert_eq!(
            printed.parse::<crate::token::ConnectionString>().ok(),
            Some(parsed)
        );
    }
}
