//! Runs the fuzz target bodies on inputs derived from real traffic and on random bytes, so
//! every `cargo test` is a small fuzz run and the targets cannot rot.

mod common;

use common::Pair;
use ferry_core::fuzz;
use ferry_core::{Entropy, SeededEntropy};

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
