//! Ctrl-C and `kill`: a transfer its user interrupts ends as a cancel, not as a crash. The
//! first SIGINT or SIGTERM asks every session to cancel (the peer is told why, and a
//! receiver writes a last checkpoint of what it verified, so a rerun resumes); a second
//! ends the process at once with status 130.

use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// How long a blocking wait may last while the handlers are installed, so that a loop
/// notices a stop request soon enough.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);

/// The reason a session interrupted by its user gives its peer.
pub const REASON: &str = "interrupted by the user (Ctrl-C); run the same command again to resume";

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() -> io::Result<()> {
    if REQUESTED.get().is_some() {
        return Ok(());
    }
    let flag = Arc::clone(REQUESTED.get_or_init(Default::default));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so that it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(())
}

/// True once the handlers are installed: loops then wake at least every [`CHECK_EVERY`].
pub fn installed() -> bool {
    REQUESTED.get().is_some()
}

/// True once the user asked to stop.
pub fn requested() -> bool {
    REQUESTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::SeqCst))
}
