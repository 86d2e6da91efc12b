//! Ctrl-C and `kill`: a transfer its user interrupts ends as a cancel, not as a crash. The
//! first SIGINT or SIGTERM asks every session to cancel (the peer is told why, and a
//! receiver writes a last checkpoint of what it verified, so a rerun resumes); a second
//! ends the process at once with status 130, after saying so (see [`LastWords`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Set by SIGTERM (`kill`, `docker stop`, systemd), which is no Ctrl-C of a user's.
static TERMINATED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// How long a blocking wait may last while the handlers are installed, so that a loop
/// notices a stop request soon enough.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);

/// The reason a session interrupted by its user gives its peer.
pub const REASON: &str = "interrupted by the user (Ctrl-C); run the same command again to resume";

/// The reason a session stopped by SIGTERM gives its peer.
pub const TERMINATED_REASON: &str = "stopped by SIGTERM; run the same command again to resume";

/// Why this side stopped, as its peer and its user are told: Ctrl-C or SIGTERM.
pub fn reason() -> &'static str {
    if TERMINATED
        .get()
        .is_some_and(|flag| flag.load(Ordering::SeqCst))
    {
        TERMINATED_REASON
    } else {
        REASON
    }
}

/// Why a sender stopped while it waited for a receiver: nothing was under way to resume.
pub fn reason_while_waiting() -> &'static str {
    if reason() == TERMINATED_REASON {
        "stopped by SIGTERM while waiting for a receiver"
    } else {
        "interrupted by the user (Ctrl-C) while waiting for a receiver"
    }
}

/// True if a peer's cancel gave `reason`: its user stopped it (Ctrl-C or SIGTERM), and
/// no rerun of that peer is coming by itself.
pub fn is_users_stop(reason: &str) -> bool {
    reason == REASON || reason == TERMINATED_REASON
}

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

/// Held while a whole line is written to stdout (`--json`'s events), so that the last
/// words of a second signal never land in the middle of one.
pub static STDOUT_LINE: Mutex<()> = Mutex::new(());

/// How long the last words may take: a stdout nobody reads (a full pipe, a terminal
/// paused with Ctrl-S) must not keep a second Ctrl-C from ending the process.
#[cfg(unix)]
const LAST_WORDS_WITHIN: Duration = Duration::from_millis(300);

/// The signals that stop a transfer.
const SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// Installs the handlers (once per process; later calls do nothing).
pub fn install(last_words: LastWords) -> io::Result<()> {
    if REQUESTED.get().is_some() {
        return Ok(());
    }
    let flag = Arc::clone(REQUESTED.get_or_init(Default::default));
    signal_hook::flag::register(
        signal_hook::consts::SIGTERM,
        Arc::clone(TERMINATED.get_or_init(Default::default)),
    )?;
    #[cfg(unix)]
    {
        // The flag first: every signal the thread counts has set it.
        let mut registered = Vec::new();
        for signal in SIGNALS {
            registered.push(signal_hook::flag::register(signal, Arc::clone(&flag))?);
        }
        if count_on_a_thread(last_words).is_ok() {
            return Ok(());
        }
        // Without the thread, as elsewhere.
        for id in registered {
            signal_hook::low_level::unregister(id);
        }
    }
    #[cfg(not(unix))]
    let _ = last_words;
    // The handler ends the process itself at the second signal, with no words.
    for signal in SIGNALS {
        // Registered before the flag, so that it sees the flag as the previous signal
        // left it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(())
}

/// Every signal is one byte down a socket to a thread that counts them: at the second it
/// says the last words and ends the process. (A flag could not count: two signals before
/// anyone looks are one.)
#[cfg(unix)]
fn count_on_a_thread(last_words: LastWords) -> io::Result<()> {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    let (mut heard, tell) = UnixStream::pair()?;
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
                // Ended on time even if the words cannot go out.
                let _ = std::thread::Builder::new().spawn(|| {
                    std::thread::sleep(LAST_WORDS_WITHIN);
                    signal_hook::low_level::exit(130);
                });
                if let Some((file, words)) = stdout.as_mut() {
                    // Between two lines, or, where one is stuck halfway, on a line of its
                    // own.
                    let deadline = std::time::Instant::now() + LAST_WORDS_WITHIN / 3;
                    let _between = loop {
                        match STDOUT_LINE.try_lock() {
                            Ok(between) => break Some(between),
                            Err(_) if std::time::Instant::now() >= deadline => {
                                let _ = file.write_all(b"\n");
                                break None;
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    };
                    let _ = file.write_all(words.as_bytes());
                }
                if let Some((file, words)) = stderr.as_mut() {
                    let _ = file.write_all(words.as_bytes());
                }
                signal_hook::low_level::exit(130);
            }
        })?;
    // Counted only once the thread is there to read them.
    for signal in SIGNALS {
        signal_hook::low_level::pipe::register(signal, tell.try_clone()?)?;
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
