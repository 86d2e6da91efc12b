//! Ctrl-C and `kill`: a transfer its user interrupts ends as a cancel, not as a crash. The
//! first SIGINT or SIGTERM asks every session to cancel (the peer is told why, and a
//! receiver writes a last checkpoint of what it verified, so a rerun resumes); a second
//! ends the process at once with status 130, after saying so (see [`LastWords`]).

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

/// Why the process ended when a second signal ends it.
pub const ENDED_AT_ONCE: &str = "interrupted twice: ended at once, without a last checkpoint";

/// What the process writes as it ends on a second signal: a program reading its stdout
/// (`--json`) is owed a last line whatever happened, and a person a word on stderr. Both
/// are made before any signal comes, since the process may then be stuck anywhere (in a
/// write to stdout included: these go out through descriptors of their own, whole lines
/// each).
#[derive(Debug, Default, Clone)]
pub struct LastWords {
    /// A whole line for stdout, newline included.
    pub stdout: Option<String>,
    /// A whole line for stderr, newline included.
    pub stderr: Option<String>,
}

/// Installs the handlers (once per process; later calls do nothing).
pub fn install(last_words: LastWords) -> io::Result<()> {
    if REQUESTED.get().is_some() {
        return Ok(());
    }
    let flag = Arc::clone(REQUESTED.get_or_init(Default::default));
    end_on_the_second(last_words, &flag)?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(())
}

/// Every signal is one byte down a socket to a thread that counts them: at the second it
/// says the last words and ends the process. (A flag could not count: two signals before
/// anyone looks are one.)
#[cfg(unix)]
fn end_on_the_second(last_words: LastWords, _flag: &Arc<AtomicBool>) -> io::Result<()> {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    let (mut heard, tell) = UnixStream::pair()?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, tell.try_clone()?)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, tell)?;
    // Descriptors of our own: the standard handles' locks may be held by a thread that the
    // signal interrupted, and a closed stdout only costs its words.
    let own = |fd: std::os::fd::BorrowedFd<'_>, words: Option<String>| {
        words.and_then(|words| Some((File::from(fd.try_clone_to_owned().ok()?), words)))
    };
    let mut stdout = own(io::stdout().as_fd(), last_words.stdout);
    let mut stderr = own(io::stderr().as_fd(), last_words.stderr);
    std::thread::Builder::new()
        .name("ferry-signals".into())
        .spawn(move || {
            let mut signals = 0;
            let mut byte = [0u8; 1];
            while heard.read_exact(&mut byte).is_ok() {
                signals += 1;
                if signals < 2 {
                    continue;
                }
                for (file, words) in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
                    let _ = file.write_all(words.as_bytes());
                }
                signal_hook::low_level::exit(130);
            }
        })?;
    Ok(())
}

/// Where signals cannot be counted on a thread, the handler ends the process itself, with
/// no words.
#[cfg(not(unix))]
fn end_on_the_second(_last_words: LastWords, flag: &Arc<AtomicBool>) -> io::Result<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered before the flag, so that it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(flag))?;
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
