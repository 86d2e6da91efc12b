//! Randomness as an input: the core never asks the OS for entropy.

use sha2::{Digest, Sha256};

/// A source of random bytes supplied by the driver.
///
/// Real drivers pass OS randomness; tests and the simulator pass [`SeededEntropy`] so that
/// a run is reproducible from its seed.
pub trait Entropy {
    /// Fills `dest` entirely with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

impl<E: Entropy + ?Sized> Entropy for &mut E {
    fn fill(&mut self, dest: &mut [u8]) {
        (**self).fill(dest);
    }
}

/// A deterministic stream of bytes derived from a seed (SHA-256 in counter mode).
///
/// Reproducible, not secret: use it for tests and simulation only, never for real keys.
#[derive(Clone, Debug)]
pub struct SeededEntropy {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeededEntropy {
    /// A stream determined entirely by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut expanded = [0u8; 32];
        expanded.copy_from_slice(&Sha256::digest(seed.to_be_bytes()));
        SeededEntropy {
            seed: expanded,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn refill(&mut self) {
        let mut hasher = Sha256::new();
        hasher.update(self.seed);
        hasher.update(self.counter.to_be_bytes());
        self.block.copy_from_slice(&hasher.finalize());
        self.counter = self.counter.wrapping_add(1);
        self.used = 0;
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        let mut dest = dest;
        while !dest.is_empty() {
            if self.used == self.block.len() {
                self.refill();
            }
            let take = dest.len().min(self.block.len() - self.used);
            let (now, rest) = dest.split_at_mut(take);
            now.copy_from_slice(&self.block[self.used..self.used + take]);
            self.used += take;
            dest = rest;
        }
    }
}
