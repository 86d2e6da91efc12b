//! Blocking driver for Ferry. This issue provides the pieces every driver shares so far
//! (OS entropy); the socket, file and lock-file drivers arrive with the transfer engine.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use ferry_core::Entropy;

/// Entropy from the operating system, for real keys and tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        // Without OS randomness no secure key can be made; continuing would be worse than
        // stopping, and there is nothing a caller could do instead.
        if let Err(error) = getrandom::fill(dest) {
            panic!("the operating system's random number generator failed: {error}");
        }
    }
}
