//! How long a resumed session takes over a 1 Gbit/s × 100 ms link, against the same
//! transfer without a fault. It once showed a 15 s gap: the simulator let time pass while
//! the receiver still had a verification read queued (it now drains disk commands and
//! events until neither yields work). Prints each run's virtual time and trace; set
//! `SIM_DEBUG=1` for every step's session state.
//!
//!     cargo run --release -p ferry-sim --example resume_gap
use ferry_core::transfer::TransferConfig;
use ferry_core::{Entropy, SeededEntropy};
use ferry_sim::{Fault, World, run};

fn main() {
    let mut data = vec![0u8; 512 << 20];
    SeededEntropy::new(5).fill(&mut data);
    for faults in [vec![], vec![(300_000_000u64, Fault::Disconnect)]] {
        let world = World {
            seed: 1,
            latency: 50_000,
            bandwidth: 125_000_000,
            max_chunk: 64 << 10,
            faults,
            items: vec![("big.bin".into(), Some(data.clone()))],
            config: TransferConfig {
                segments_in_flight: 32,
                initial_window: 1 << 20,
                ..TransferConfig::default()
            },
            broken_verification: false,
        };
        let outcome = run(&world);
        println!("{} µs\n{}", outcome.virtual_micros, outcome.trace);
    }
}
