//! Goodput of a 1 GiB transfer over simulated wide-area links, in virtual time (so the
//! figures are exact and repeatable), next to an RNS-like setting on the same links.
//!
//!     cargo run --release -p ferry-sim --example wan [FILTER]
//!
//! "Ferry" is the default configuration: its window sizes itself for the path (measured
//! round trip × delivery rate), and the receiver grants the sender the segments that
//! window needs. "RNS-like" is RNS's default shape: small parts and one segment in flight,
//! waiting a round trip per segment.

use ferry_core::transfer::TransferConfig;
use ferry_core::{Entropy, SeededEntropy};
use ferry_sim::{Fault, World, run};

fn world(
    bits_per_second: u64,
    rtt_ms: u64,
    config: TransferConfig,
    faults: Vec<(u64, Fault)>,
    data: &[u8],
) -> World {
    World {
        seed: 1,
        latency: rtt_ms * 1000 / 2,
        jitter: 0,
        bandwidth: bits_per_second / 8,
        max_chunk: 64 << 10,
        // Linux's default ceiling for a socket's send buffer (tcp_wmem); here it counts
        // only bytes not yet on the wire.
        send_buffer: 4 << 20,
        faults,
        items: vec![("big.bin".into(), Some(data.to_vec()))],
        config,
        broken_verification: false,
    }
}

fn main() {
    let mut data = vec![0u8; 1 << 30];
    SeededEntropy::new(5).fill(&mut data);
    let ferry = TransferConfig::default();
    let rns_like = TransferConfig {
        part_size: 8 << 10,
        segment_size: 1 << 20,
        segments_in_flight: 1,
        initial_window: 32 << 10,
        ..TransferConfig::default()
    };
    let filter = std::env::args().nth(1).unwrap_or_default();
    println!(
        "{:<44} {:>14} {:>10} {:>9}",
        "link and setting", "virtual time", "goodput", "of link"
    );
    for (name, bits, rtt, config, faults) in [
        (
            "1 Gbit/s x 100 ms, Ferry",
            1_000_000_000u64,
            100u64,
            ferry.clone(),
            vec![],
        ),
        (
            "1 Gbit/s x 200 ms, Ferry",
            1_000_000_000,
            200,
            ferry.clone(),
            vec![],
        ),
        (
            "100 Mbit/s x 100 ms, Ferry",
            100_000_000,
            100,
            ferry.clone(),
            vec![],
        ),
        (
            "1 Gbit/s x 100 ms, RNS-like",
            1_000_000_000,
            100,
            rns_like.clone(),
            vec![],
        ),
        (
            "100 Mbit/s x 20 ms, Ferry",
            100_000_000,
            20,
            ferry.clone(),
            vec![],
        ),
        (
            "100 Mbit/s x 20 ms, RNS-like",
            100_000_000,
            20,
            rns_like.clone(),
            vec![],
        ),
        (
            "1 Gbit/s x 100 ms, Ferry, disconnect at 40%",
            1_000_000_000,
            100,
            ferry.clone(),
            vec![(430_000_000, Fault::Disconnect)],
        ),
    ] {
        if !name.contains(filter.as_str()) {
            continue;
        }
        let outcome = run(&world(bits, rtt, config, faults, &data));
        if let Err(error) = &outcome.result {
            println!("{name}: failed: {error}");
            continue;
        }
        let seconds = outcome.virtual_micros as f64 / 1e6;
        let goodput = data.len() as f64 * 8.0 / seconds;
        println!(
            "{name:<44} {seconds:>12.2} s {:>6.0} Mbit/s {:>7.1}%",
            goodput / 1e6,
            100.0 * goodput / bits as f64
        );
    }
}
