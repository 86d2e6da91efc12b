//! Runs the fuzz target bodies on inputs derived from real traffic and on random bytes, so
//! every `cargo test` is a small fuzz run and the targets cannot rot.

mod common;

use common::Pair;
use ferry_core::fuzz;
use ferry_core::{Entropy, SeededEntropy};
use std::io::Read;

fn real_stream() -> Vec<u8> {
    let mut pair = Pair::handshake(1);
    for i in 0..8 {
        pair.sender.send_message(&vec![i as u8; 100 * i]).unwrap();
    }
    pair.sender.close().unwrap();
    pair.drive();
    pair.sender_seen.wire
}

#[test]
fn the_after_handshake_sample_authenticates_with_the_real_suite() {
    // Sanity of the seed: unmutated, it is accepted whole (so mutations of it reach the
    // rules behind the AEAD rather than failing at the first tag).
    let sample = fuzz::after_handshake_sample();
    assert!(sample.len() > 5000);
    let outcome = fuzz::channel_after_handshake(&sample);
    assert_eq!(
        outcome,
        fuzz::Outcome {
            messages: 4,
            failed: false
        }
    );
    // And a flipped tag byte of the last record is caught.
    let mut tampered = sample.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(fuzz::channel_after_handshake(&tampered).failed);
}

#[test]
fn fuzz_bodies_survive_mutated_real_traffic_and_noise() {
    let stream = real_stream();
    let sample = fuzz::after_handshake_sample();
    let mut entropy = SeededEntropy::new(0xF022);
    for case in 0..3000u32 {
        let mut input = vec![0u8; 1];
        entropy.fill(&mut input);
        let mut byte = [0u8; 8];
        entropy.fill(&mut byte);
        let pick = u64::from_le_bytes(byte);
        if case % 3 == 0 {
            // Pure noise of random length.
            let mut noise = vec![0u8; (pick % 2048) as usize];
            entropy.fill(&mut noise);
            input.extend(noise);
        } else {
            // Real traffic with a few random bytes overwritten and a random cut.
            input.extend(&stream[..(pick as usize % stream.len()) + 1]);
            for _ in 0..(pick % 4) {
                let mut b = [0u8; 3];
                entropy.fill(&mut b);
                let at = usize::from(u16::from_le_bytes([b[0], b[1]])) % input.len();
                input[at] = b[2];
            }
        }
        fuzz::channel_from_wire(&input);
        fuzz::channel_after_handshake(&input);
        // The same mutation applied to traffic that authenticates for that target.
        let mut mutated = sample.clone();
        let at = (pick as usize / 7) % mutated.len();
        mutated[at] ^= (pick >> 8) as u8 | 1;
        mutated.truncate(1 + (pick as usize >> 16) % mutated.len());
        fuzz::channel_after_handshake(&mutated);
    }
}

/// Flips, overwrites and cuts `seed` with `entropy`: a cheap stand-in for a fuzzer's
/// mutations, so the bodies see mostly-valid inputs too.
fn mutate(seed: &[u8], entropy: &mut SeededEntropy) -> Vec<u8> {
    let mut pick = [0u8; 8];
    entropy.fill(&mut pick);
    let pick = u64::from_le_bytes(pick);
    let mut input = seed.to_vec();
    if input.is_empty() {
        return input;
    }
    for k in 0..(pick % 4) {
        let at = ((pick >> (8 + 8 * k)) as usize) % input.len();
        input[at] ^= (pick >> (4 * k)) as u8 | 1;
    }
    if pick % 5 == 0 {
        input.truncate(((pick >> 40) as usize) % input.len() + 1);
    }
    input
}

fn manifest_seed() -> Vec<u8> {
    let mut body = Vec::new();
    rmp::encode::write_array_len(&mut body, 3).unwrap();
    for (path, kind, size) in [("dir", 1u64, 0u64), ("dir/a.txt", 0, 10), ("b", 0, 0)] {
        rmp::encode::write_array_len(&mut body, 6).unwrap();
        rmp::encode::write_str(&mut body, path).unwrap();
        rmp::encode::write_uint(&mut body, kind).unwrap();
        rmp::encode::write_uint(&mut body, size).unwrap();
        rmp::encode::write_uint(&mut body, 0o644).unwrap();
        rmp::encode::write_sint(&mut body, 0).unwrap();
        rmp::encode::write_nil(&mut body).unwrap();
    }
    body
}

/// A receiver-session input: a manifest of one small file and a settled plan.
fn session_seed() -> Vec<u8> {
    let mut begin = vec![0x01];
    rmp::encode::write_array_len(&mut begin, 4).unwrap();
    for v in [1u64, 5, 10, 16384] {
        rmp::encode::write_uint(&mut begin, v).unwrap();
    }
    let mut entries = vec![0x02];
    rmp::encode::write_array_len(&mut entries, 1).unwrap();
    rmp::encode::write_array_len(&mut entries, 6).unwrap();
    rmp::encode::write_str(&mut entries, "a.txt").unwrap();
    for v in [0u64, 10, 0o644] {
        rmp::encode::write_uint(&mut entries, v).unwrap();
    }
    rmp::encode::write_sint(&mut entries, 0).unwrap();
    rmp::encode::write_nil(&mut entries).unwrap();
    let result = vec![0x04, 0x92, 0xc3, 0x90];
    let mut out = Vec::new();
    for message in [begin, entries, result] {
        out.extend((message.len() as u16).to_be_bytes());
        out.extend(message);
    }
    out
}

#[test]
fn the_seeds_reach_deep_and_mutations_never_panic() {
    assert_eq!(
        fuzz::manifest_entries(&manifest_seed()),
        fuzz::Outcome {
            messages: 3,
            failed: false
        }
    );
    let session = fuzz::receiver_messages(&session_seed());
    assert_eq!(
        session,
        fuzz::Outcome {
            messages: 3,
            failed: false
        }
    );
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../vectors/rns/resources.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let segment = &vectors["resources"][1]["segments"][0];
    let mut resource_seeds = Vec::new();
    for (kind, field) in [(0u8, "advertisement"), (3, "proof")] {
        let mut seed = vec![kind];
        seed.extend(hex::decode(segment[field].as_str().unwrap()).unwrap());
        assert!(!fuzz::resource_messages(&seed).failed, "{field}");
        resource_seeds.push(seed);
    }
    for (kind, field) in [(1u8, "requests"), (2, "hashmap_updates")] {
        let mut seed = vec![kind];
        seed.extend(hex::decode(segment[field][0].as_str().unwrap()).unwrap());
        assert!(!fuzz::resource_messages(&seed).failed, "{field}");
        resource_seeds.push(seed);
    }
    let mut entropy = SeededEntropy::new(0xF0);
    for case in 0..2000usize {
        fuzz::manifest_entries(&mutate(&manifest_seed(), &mut entropy));
        fuzz::resource_messages(&mutate(
            &resource_seeds[case % resource_seeds.len()],
            &mut entropy,
        ));
        if case % 4 == 0 {
            fuzz::receiver_messages(&mutate(&session_seed(), &mut entropy));
        }
    }
}

/// Writes the seed corpus for `fuzz/` when `FERRY_WRITE_SEEDS` names a directory.
#[test]
fn write_seed_corpus_when_asked() {
    let Some(dir) = std::env::var_os("FERRY_WRITE_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(dir.join(target)).unwrap();
        std::fs::write(dir.join(target).join(name), bytes).unwrap();
    };
    write(
        "channel_from_wire",
        "sender-stream",
        &[&[0u8][..], &real_stream()].concat(),
    );
    write(
        "channel_after_handshake",
        "sealed-records",
        &fuzz::after_handshake_sample(),
    );
    write("manifest_entries", "three-entries", &manifest_seed());
    write("receiver_messages", "manifest-and-plan", &session_seed());
    // Scripts that reach streaming, some finishing, some not.
    for (target, focus) in [
        ("receiver_session", fuzz::Focus::Receiver),
        ("sender_script", fuzz::Focus::Sender),
    ] {
        for (n, script) in random_scripts(focus)
            .into_iter()
            .filter(|(_, outcome)| outcome.streamed)
            .take(8)
            .enumerate()
        {
            write(target, &format!("streaming-{n}"), &script.0);
        }
    }
    write("bz2_segment", "text", &bz2_seed());
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../vectors/rns/resources.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let segment = &vectors["resources"][1]["segments"][0];
    let mut adv = vec![0u8];
    adv.extend(hex::decode(segment["advertisement"].as_str().unwrap()).unwrap());
    write("resource_messages", "advertisement", &adv);
    let mut req = vec![1u8];
    req.extend(hex::decode(segment["requests"][0].as_str().unwrap()).unwrap());
    write("resource_messages", "request", &req);
}

/// A segment of text as a sender compresses it, with its size in front.
fn bz2_seed() -> Vec<u8> {
    let text: Vec<u8> = b"ferry bz2 seed line\n"
        .iter()
        .copied()
        .cycle()
        .take(3000)
        .collect();
    let mut compressed = Vec::new();
    bzip2::read::BzEncoder::new(&text[..], bzip2::Compression::new(1))
        .read_to_end(&mut compressed)
        .unwrap();
    [&(text.len() as u16).to_be_bytes()[..], &compressed].concat()
}

/// The real bz2 decoder takes its seed, and mutations of it neither panic nor decode to
/// anything that does not survive a round trip.
#[test]
fn the_bz2_body_decodes_its_seed_and_survives_mutations() {
    let seed = bz2_seed();
    assert!(fuzz::bz2_segment(&seed));
    let mut wrong_size = seed.clone();
    wrong_size[1] ^= 1;
    assert!(!fuzz::bz2_segment(&wrong_size));
    let mut entropy = SeededEntropy::new(0xB2);
    for _ in 0..300 {
        fuzz::bz2_segment(&mutate(&seed, &mut entropy));
    }
}

/// Inputs the fuzzers found; each must keep passing.
#[test]
fn regressions_found_by_fuzzing() {
    // A hashmap update whose segment number uses a longer msgpack encoding than needed:
    // accepted (as RNS accepts it) and re-encoded minimally.
    let long_encoding = hex::decode(
        "c6a1c686ffff0426949254c50000a1010da154c500fa050000000001ffff0426949254c5000426949254",
    )
    .unwrap();
    assert!(!fuzz::resource_messages(&long_encoding).failed);
}

/// 400 random inputs to the scripted-session body, with what each came to.
fn random_scripts(focus: fuzz::Focus) -> Vec<(Vec<u8>, fuzz::ScriptOutcome)> {
    let mut entropy = SeededEntropy::new(0x5C21);
    (0..400)
        .map(|_| {
            let mut len = [0u8; 2];
            entropy.fill(&mut len);
            let mut input = vec![0u8; 16 + usize::from(u16::from_le_bytes(len)) % 512];
            entropy.fill(&mut input);
            let outcome = fuzz::session_script(&input, focus);
            (input, outcome)
        })
        .collect()
}

/// The scripted-session bodies on random scripts: none panics, and most runs reach the
/// streaming phase (the point of a structured input); prints how many, for the README.
#[test]
fn scripted_sessions_reach_streaming_in_most_runs() {
    for focus in [fuzz::Focus::Receiver, fuzz::Focus::Sender] {
        let (mut scripts, mut streamed, mut finished) = (0, 0, 0);
        for (_, outcome) in random_scripts(focus) {
            if outcome.unused {
                continue;
            }
            scripts += 1;
            streamed += usize::from(outcome.streamed);
            finished += usize::from(outcome.finished);
        }
        eprintln!(
            "{focus:?}: {scripts} scripts, {streamed} reached streaming, {finished} finished"
        );
        assert!(
            scripts >= 300,
            "{focus:?}: only {scripts} inputs made a script"
        );
        assert!(
            streamed * 2 > scripts,
            "{focus:?}: only {streamed} of {scripts} reached streaming"
        );
    }
}

#[test]
fn the_connection_string_body_takes_mutations_of_real_strings() {
    let mut entropy = SeededEntropy::new(0xC5);
    let token = ferry_core::Token::generate(&mut entropy);
    let real = format!("100.101.29.44:{token}");
    fuzz::connection_string(real.as_bytes());
    for case in 0..3000u32 {
        let mut input = real.clone().into_bytes();
        let mut b = [0u8; 4];
        entropy.fill(&mut b);
        let at = usize::from(b[0]) % input.len();
        input[at] = b[1];
        if case % 2 == 0 {
            input.truncate(1 + usize::from(b[2]) % input.len());
        }
        fuzz::connection_string(&input);
    }
}
