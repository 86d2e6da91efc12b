//! Goodput of a transfer over simulated wide-area links, in virtual time (so the figures
//! are exact and repeatable), next to one connection and an RNS-like setting on the same
//! links.
//!
//!     cargo run --release -p ferry-sim --example wan [FILTER] [SIZE_MIB]
//!
//! (`SIM_TRACE=1` prints each run's trace; with `SIM_DEBUG=1` too, both ends' state at
//! every step.)
//!
//! SIZE_MIB defaults to 512, the size `examples/wan.sh` sends through the relay, so the
//! two tables can be set side by side. "Ferry" is the default configuration: its window
//! sizes itself for the path, and it opens lanes (extra connections over the same
//! bottleneck) while they raise the rate. "capped" links cap each connection at 4 MiB sent
//! and not yet acknowledged, as an untuned Linux host's `tcp_wmem` does and as the relay's
//! `--window 4MiB` emulates. "RNS-like" is RNS's default shape: small parts and one
//! segment in flight, waiting a round trip per segment.

use ferry_core::transfer::{Connections, TransferConfig};
use ferry_core::{Entropy, SeededEntropy};
use ferry_sim::{Fault, World, run};

/// One row: what it is called, the link, its per-connection cap, the setting, the faults.
struct Row {
    name: &'static str,
    bits_per_second: u64,
    rtt_ms: u64,
    window: Option<u64>,
    config: TransferConfig,
    faults: Vec<(u64, Fault)>,
}

fn world(row: &Row, data: &[u8]) -> World {
    World {
        seed: 1,
        latency: row.rtt_ms * 1000 / 2,
        jitter: 0,
        bandwidth: row.bits_per_second / 8,
        max_chunk: 64 << 10,
        // Bytes a socket holds not yet on the wire (Linux's default ceiling).
        send_buffer: 4 << 20,
        window: row.window,
        faults: row.faults.clone(),
        items: vec![("big.bin".into(), Some(data.to_vec()))],
        config: row.config.clone(),
        broken_verification: false,
        write_delay: 0,
        hash_delay: 0,
    }
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let mib: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let mut data = vec![0u8; mib << 20];
    SeededEntropy::new(5).fill(&mut data);
    let ferry = TransferConfig::default();
    let one_connection = TransferConfig {
        connections: Connections::Fixed(1),
        ..TransferConfig::default()
    };
    let rns_like = TransferConfig {
        part_size: 8 << 10,
        segment_size: 1 << 20,
        segments_in_flight: 1,
        initial_window: 32 << 10,
        connections: Connections::Fixed(1),
        ..TransferConfig::default()
    };
    const GBIT: u64 = 1_000_000_000;
    const MBIT100: u64 = 100_000_000;
    const CAP: Option<u64> = Some(4 << 20);
    let row = |name, bits_per_second, rtt_ms, window, config: &TransferConfig| Row {
        name,
        bits_per_second,
        rtt_ms,
        window,
        config: config.clone(),
        faults: Vec::new(),
    };
    let cut_at = (data.len() as u64) * 2 / 5;
    let rows = [
        row("1 Gbit/s x 100 ms, Ferry", GBIT, 100, None, &ferry),
        row(
            "1 Gbit/s x 100 ms, one connection",
            GBIT,
            100,
            None,
            &one_connection,
        ),
        row("1 Gbit/s x 200 ms, Ferry", GBIT, 200, None, &ferry),
        row(
            "1 Gbit/s x 200 ms, one connection",
            GBIT,
            200,
            None,
            &one_connection,
        ),
        row("1 Gbit/s x 100 ms capped, Ferry", GBIT, 100, CAP, &ferry),
        row(
            "1 Gbit/s x 100 ms capped, one connection",
            GBIT,
            100,
            CAP,
            &one_connection,
        ),
        row("1 Gbit/s x 200 ms capped, Ferry", GBIT, 200, CAP, &ferry),
        row(
            "1 Gbit/s x 200 ms capped, one connection",
            GBIT,
            200,
            CAP,
            &one_connection,
        ),
        row("100 Mbit/s x 100 ms, Ferry", MBIT100, 100, None, &ferry),
        row("100 Mbit/s x 20 ms, Ferry", MBIT100, 20, None, &ferry),
        row("1 Gbit/s x 100 ms, RNS-like", GBIT, 100, None, &rns_like),
        row("100 Mbit/s x 20 ms, RNS-like", MBIT100, 20, None, &rns_like),
        Row {
            faults: vec![(cut_at, Fault::PathCut)],
            ..row(
                "1 Gbit/s x 100 ms, Ferry, path cut at 40%",
                GBIT,
                100,
                None,
                &ferry,
            )
        },
    ];
    println!(
        "{:<48} {:>12} {:>12} {:>9} {:>6}",
        "link and setting", "virtual time", "goodput", "of link", "lanes"
    );
    for row in rows.iter().filter(|r| r.name.contains(filter.as_str())) {
        let outcome = run(&world(row, &data));
        // SIM_TRACE=1 prints each run's trace (with SIM_DEBUG=1, every step's state).
        if std::env::var_os("SIM_TRACE").is_some() {
            eprintln!("{}", outcome.trace);
        }
        if let Err(error) = &outcome.result {
            println!("{}: failed: {error}", row.name);
            continue;
        }
        let seconds = outcome.virtual_micros as f64 / 1e6;
        let goodput = data.len() as f64 * 8.0 / seconds;
        // Lanes that joined in the last session and did not close (the trace notes each).
        let last = outcome.trace.rsplit("session ").next().unwrap_or_default();
        let lanes = last
            .matches(" joins at ")
            .count()
            .saturating_sub(last.matches(" closes at ").count());
        println!(
            "{:<48} {seconds:>10.2} s {:>7.0} Mbit/s {:>7.1}% {lanes:>6}",
            row.name,
            goodput / 1e6,
            100.0 * goodput / row.bits_per_second as f64
        );
    }
}
