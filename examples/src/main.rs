//! `ferry`: send files to another machine, encrypted end to end, resumable after any crash.
//!
//! Argument parsing and display only; the work is in `ferry_std`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ferry_core::ConnectionString;
use ferry_core::transfer::{Connections, TransferConfig};
use ferry_std::receive::{ReceiveOptions, receive};
use ferry_std::send::Sender;
use ferry_std::source::SourceTree;
use ferry_std::{DEFAULT_PORT, DriverError, Report, Reporter, count, human_size as size};
use indicatif::{ProgressBar, ProgressStyle};

/// Seconds without progress before a transfer gives up (`--timeout`).
const DEFAULT_TIMEOUT: u64 = 120;

/// The same table as the README's (a test holds them together).
const EXIT_CODES: &str = "Exit codes:
  0  every file delivered and verified
  2  usage error (bad arguments or connection string)
  3  authentication failed: wrong token or tampered connection
  4  network error or timeout
  5  integrity: a file could not be verified after 3 attempts, or the peer sent invalid data
  6  local disk error (permissions, space, an existing file or symlink in the way)
  7  peer refused: not a Tailscale peer (or not loopback with --pod), or no tailscale
  8  cancelled or declined by the other side
  1  internal error
  130  a second Ctrl-C (or SIGTERM): ended at once, without a last checkpoint";

#[derive(Parser)]
#[command(name = "ferry", version, about = "Move files between machines, encrypted end to end and resumable", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print nothing but errors (the sender still prints the receive command).
    #[arg(short, long, global = true, conflicts_with = "json")]
    quiet: bool,
    /// Print one JSON object per event on stdout, for programs that drive ferry
    /// (listening, offered, plan, progress, file_done, file_retry, file_failed,
    /// receiver_lost, info, finished, failed).
    #[arg(long, global = true)]
    json: bool,
    /// Also print details for debugging (bytes on the wire).
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve files and directories until a receiver has them all.
    #[command(after_help = EXIT_CODES)]
    Send {
        /// Accept only connections from this machine (containers, pods); no Tailscale check.
        #[arg(long)]
        pod: bool,
        /// TCP port to listen on.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
        /// bz2-compress segments when that makes them smaller (slow; for text over slow links).
        #[arg(long)]
        compress: bool,
        /// Give up on a receiver that makes no progress for this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Serve N receivers, up to N at once, each with its own session, on one event
        /// loop; exit once N have the whole batch. Without it, one receiver is served.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
        receivers: Option<u32>,
        /// Files and directories to send (directories recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Fetch a batch from a sender.
    #[command(after_help = EXIT_CODES)]
    Receive {
        /// Connect only within this machine; no Tailscale check.
        #[arg(long)]
        pod: bool,
        /// The sender's TCP port (the command the sender prints carries it).
        #[arg(long, default_value_t = DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
        /// Directory to receive into.
        #[arg(short = 'o', long = "output", default_value = ".")]
        output: PathBuf,
        /// Replace existing files that differ from the sender's instead of refusing.
        #[arg(long)]
        overwrite: bool,
        /// Give up when the sender makes no progress for this many seconds (a resume
        /// allows more while the sender re-reads what is already here).
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Save the resume state at least this often while data flows (and every 64 MiB);
        /// 0 saves it only when the receive ends. A crash loses at most this much work.
        #[arg(long, value_name = "SECS", default_value_t = 2)]
        checkpoint: u64,
        /// Use exactly N connections to the sender (1 to 8). Without it, a path with a
        /// long round trip gets more connections while they raise the rate (one TCP
        /// connection carries at most its send buffer per round trip).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
        connections: Option<u8>,
        /// The sender's IP:TOKEN, as `ferry send` printed it.
        connection: String,
    },
}

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise. Sizes
/// and rates are in binary units throughout (KiB, MiB/s).
struct Display {
    bar: Option<ProgressBar>,
    /// The bar of the check of what is already here, before a resume.
    check: Option<ProgressBar>,
    /// When the last line of that check was printed (not on a terminal).
    check_line: ferry_std::CheckLine,
    /// Files in this session's plan; `None` on the sender, which learns of files only
    /// when the whole batch is confirmed.
    files: Option<usize>,
    /// Bytes this session moves: the plan's, and each file sent again.
    total: u64,
    /// Of those, bytes sent again.
    again: u64,
    /// When data began to move, and when it last did: the data rate is over that span.
    started: Instant,
    moved: Option<(Instant, u64)>,
    last_line: Instant,
}

impl Display {
    fn new(sender: bool) -> Self {
        Display {
            bar: None,
            check: None,
            check_line: ferry_std::CheckLine::default(),
            files: if sender { None } else { Some(0) },
            total: 0,
            again: 0,
            started: Instant::now(),
            moved: None,
            last_line: Instant::now(),
        }
    }

    /// "12/40 files" on the receiver, after `separator`; nothing on the sender.
    fn files_part(&self, separator: &str, done: usize) -> String {
        match self.files {
            Some(files) => format!("{separator}{done}/{}", count(files as u64, "file", "files")),
            None => String::new(),
        }
    }

    /// The rate data moved at, in MiB/s (not counting the time before the first byte
    /// and after the last: connecting, checking, verifying).
    fn data_rate(&self) -> f64 {
        match self.moved {
            Some((last, bytes)) => mib_per_s(bytes, last.duration_since(self.started)),
            None => 0.0,
        }
    }
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-6)
}

/// A rate in MiB/s as people read it: whole MiB/s, or KiB/s below one MiB/s (a slow path
/// is not "0 MiB/s").
fn rate_text(mib_per_s: f64) -> String {
    // Whichever unit, the number as printed: never "1024 KiB/s".
    if mib_per_s * 1024.0 >= 1023.5 {
        format!("{mib_per_s:.0} MiB/s")
    } else {
        format!("{:.0} KiB/s", mib_per_s * 1024.0)
    }
}

impl Reporter for Display {
    fn info(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn report(&mut self, report: &Report<'_>) {
        match *report {
            Report::FileRetry { bytes, .. } => {
                // The file comes again from its start: there is that much more to move,
                // so the count never passes the total.
                self.total += bytes;
                self.again += bytes;
                if let Some(bar) = &self.bar {
                    bar.set_length(self.total);
                }
            }
            Report::ReceiverLost { .. } => {
                // No stale bar while waiting for the next receiver.
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.moved = None;
            }
            _ => {}
        }
    }

    fn checking(&mut self, checked: u64, total: u64) {
        if std::io::stderr().is_terminal() {
            let bar = self.check.get_or_insert_with(|| {
                let bar = ProgressBar::new(total);
                if let Ok(style) = ProgressStyle::with_template(
                    "checking what is already here: {bytes}/{total_bytes} {bar:30} ETA {eta}",
                ) {
                    bar.set_style(style);
                }
                bar
            });
            bar.set_position(checked);
            return;
        }
        if let Some(line) = self.check_line.due(checked, total) {
            eprintln!("{line}");
        }
    }

    fn start(&mut self, files: usize, bytes: u64) {
        if let Some(check) = self.check.take() {
            check.finish_and_clear();
        }
        if self.files.is_some() {
            self.files = Some(files);
        }
        self.total = bytes;
        self.again = 0;
        self.started = Instant::now();
        self.moved = None;
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(bytes);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {binary_bytes}/{binary_total_bytes}{msg} {binary_bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style);
            }
            self.bar = Some(bar);
        }
    }

    fn progress(&mut self, bytes: u64, files: usize) {
        let bytes = bytes.min(self.total);
        self.moved = Some((Instant::now(), bytes));
        let again = match self.again {
            0 => String::new(),
            n => format!(" ({} sent again)", size(n)),
        };
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{}{again}", self.files_part(" ", files)));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                self.last_line = Instant::now();
                let rate = mib_per_s(bytes, self.started.elapsed());
                let eta = if rate > 0.0 {
                    (self.total - bytes) as f64 / (1024.0 * 1024.0) / rate
                } else {
                    0.0
                };
                let files = self.files_part(", ", files);
                eprintln!(
                    "{} of {}{files}{again}, {}, ETA {eta:.0} s",
                    size(bytes),
                    size(self.total),
                    rate_text(rate),
                );
            }
            None => {}
        }
    }
}

impl Display {
    fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `--json`: one object per event on stdout, a line each; progress at most 5 times a
/// second (and always the last).
#[derive(Default)]
struct Json {
    /// This side sends: it hears which files arrived only at the end, so its progress
    /// has no count of files done.
    sending: bool,
    files: u64,
    total: u64,
    last_progress: Option<Instant>,
    /// The newest progress (bytes, files done), and whether it was said.
    latest: (u64, usize),
    said: bool,
    /// The receiver whose session this reports on, named in each event, where one
    /// sender serves several (`--receivers`).
    receiver: Option<String>,
    /// Those sessions' own reporters, by receiver.
    receivers: std::collections::HashMap<String, Json>,
}

impl Json {
    fn new(sending: bool) -> Self {
        Json {
            sending,
            said: true,
            ..Json::default()
        }
    }

    fn emit(&mut self, mut value: serde_json::Value) {
        if let Some(receiver) = &self.receiver {
            value["receiver"] = receiver.as_str().into();
        }
        // A whole line in one write, never with a second Ctrl-C's last words inside it.
        let _line = ferry_std::stop::STDOUT_LINE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(format!("{value}\n").as_bytes());
        let _ = out.flush();
    }

    fn emit_progress(&mut self, bytes: u64, files: usize) {
        self.last_progress = Some(Instant::now());
        self.said = true;
        self.emit(serde_json::json!({
            "event": "progress",
            "bytes": bytes,
            "bytes_total": self.total,
            "files_done": if self.sending { None } else { Some(files) },
            "files_total": self.files,
        }));
    }
}

impl Reporter for Json {
    /// The batch arrived whole: the last progress says so. A file sent again made the
    /// total an estimate (its first attempt's bytes, moved or not, and all of the next);
    /// now what moved is known, and it is the total.
    fn arrived(&mut self) {
        let (bytes, files) = self.latest;
        if !self.said || self.total != bytes {
            self.total = bytes;
            self.emit_progress(bytes, files);
        }
    }

    fn for_peer(&mut self, peer: &str) -> Option<&mut dyn Reporter> {
        if !self.receivers.contains_key(peer) {
            let reporter = Json {
                receiver: Some(peer.to_owned()),
                ..Json::new(true)
            };
            self.receivers.insert(peer.to_owned(), reporter);
        }
        self.receivers
            .get_mut(peer)
            .map(|reporter| reporter as &mut dyn Reporter)
    }

    fn peer_gone(&mut self, peer: &str) {
        self.receivers.remove(peer);
    }

    fn info(&mut self, line: &str) {
        self.emit(serde_json::json!({ "event": "info", "message": line }));
    }

    fn report(&mut self, report: &Report<'_>) {
        use serde_json::json;
        let value = match *report {
            Report::Offered {
                files,
                folders,
                bytes,
            } => json!({ "event": "offered", "files": files, "folders": folders, "bytes": bytes }),
            Report::Plan {
                skipped,
                resumed,
                fresh,
                bytes_present,
                bytes_to_send,
            } => json!({
                "event": "plan",
                "files_complete": skipped,
                "files_partial": resumed,
                "files_fresh": fresh,
                "bytes_present": bytes_present,
                "bytes_to_send": bytes_to_send,
            }),
            Report::FileDone { path } => json!({ "event": "file_done", "path": path }),
            Report::FileRetry {
                path,
                attempt,
                bytes,
            } => {
                self.total += bytes;
                json!({ "event": "file_retry", "path": path, "attempt": attempt, "bytes": bytes })
            }
            Report::FileFailed { path, reason } => {
                json!({ "event": "file_failed", "path": path, "reason": reason })
            }
            Report::ReceiverLost { reason } => {
                json!({ "event": "receiver_lost", "reason": reason })
            }
            _ => return,
        };
        self.emit(value);
    }

    fn start(&mut self, files: usize, bytes: u64) {
        self.files = files as u64;
        self.total = bytes;
        self.last_progress = None;
        // A receiver lost before this one took its progress with it.
        self.latest = (0, 0);
        self.said = true;
    }

    fn progress(&mut self, bytes: u64, files: usize) {
        let due = self
            .last_progress
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(200));
        // The total reached is said at once, but not again for each file put in place
        // after it (the last of those comes with `arrived`).
        let reached = bytes >= self.total && bytes != self.latest.0;
        self.latest = (bytes, files);
        self.said = false;
        if due || reached {
            self.emit_progress(bytes, files);
        }
    }
}

/// Where the command's output goes: people (`Display`), nobody (`--quiet`), or a
/// program (`--json`).
enum Output {
    Human(Display),
    Quiet(ferry_std::Quiet),
    Json(Json),
}

impl Output {
    fn reporter(&mut self) -> &mut dyn Reporter {
        match self {
            Output::Human(display) => display,
            Output::Quiet(quiet) => quiet,
            Output::Json(json) => json,
        }
    }

    fn done(&mut self) {
        if let Output::Human(display) = self {
            display.done();
        }
    }

    /// The last word on a batch that arrived: a line for people, `finished` for programs.
    fn finished(&mut self, finish: Finished, verbose: bool) {
        self.done();
        let (rate, again) = match self {
            Output::Human(display) => (display.data_rate(), display.again),
            _ => (mib_per_s(finish.bytes, finish.elapsed), 0),
        };
        if let Output::Json(json) = self {
            json.arrived();
        }
        match self {
            Output::Quiet(_) => {}
            Output::Json(json) => json.emit(serde_json::json!({
                "event": "finished",
                "files": finish.files,
                "folders": finish.folders,
                "failed": finish.failed,
                "bytes": finish.bytes,
                "bytes_present": finish.bytes_present,
                "wire_bytes": finish.wire_bytes,
                "seconds": finish.elapsed.as_secs_f64(),
                "mib_per_s": rate,
            })),
            Output::Human(_) => {
                let mut what = count(finish.files, "file", "files");
                if finish.folders > 0 {
                    what.push_str(&format!(
                        " and {}",
                        count(finish.folders, "folder", "folders")
                    ));
                }
                let again = match again {
                    0 => String::new(),
                    n => format!("; {} of it sent again", size(n)),
                };
                eprintln!(
                    "{}: {what}, {} in {:.1} s ({} while data moved{again})",
                    finish.verb,
                    size(finish.bytes),
                    finish.elapsed.as_secs_f64(),
                    rate_text(rate),
                );
                if finish.bytes_present > 0 || finish.skipped > 0 {
                    eprintln!(
                        "Already here: {} ({}), not sent again",
                        size(finish.bytes_present),
                        count(finish.skipped as u64, "whole file", "whole files"),
                    );
                }
                if verbose {
                    eprintln!("bytes already here: {}", finish.bytes_present);
                    eprintln!("wire bytes: {}", finish.wire_bytes);
                    eprintln!("connections: {}", finish.connections);
                    eprintln!("hashing thread: {}", yes_no(finish.hash_thread));
                    eprintln!("AEAD threads: {}", finish.aead_threads);
                    eprintln!(
                        "AEAD off the main thread: {}",
                        yes_no(finish.records_shared)
                    );
                }
            }
        }
    }
}

/// How `-v` says whether something ran.
fn yes_no(ran: bool) -> &'static str {
    if ran { "yes" } else { "no" }
}

/// What a finished batch comes to, for [`Output::finished`].
struct Finished {
    verb: &'static str,
    files: u64,
    folders: u64,
    failed: u64,
    bytes: u64,
    bytes_present: u64,
    skipped: usize,
    wire_bytes: u64,
    elapsed: Duration,
    connections: usize,
    /// SHA-256 ran on a thread of its own.
    hash_thread: bool,
    /// Threads of their own that sealed the parts, or opened the records.
    aead_threads: usize,
    /// Parts sealed, or records opened, off the main thread (at least in part).
    records_shared: bool,
}

/// The other side, as the messages name it: "receiver" when sending, "sender" when
/// receiving.
static PEER: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// The error as a person reads it: a cancel names who cancelled.
fn describe(error: &DriverError) -> String {
    use ferry_core::transfer::TransferError;
    match error {
        DriverError::Transfer(TransferError::Cancelled { by_peer, reason }) => {
            let who = if *by_peer {
                format!("by the {}", PEER.get().copied().unwrap_or("peer"))
            } else {
                "here".to_owned()
            };
            format!("cancelled {who}: {reason}")
        }
        other => other.to_string(),
    }
}

fn fail(output: &mut Output, error: &DriverError) -> ProcessExit {
    end_with(output, error.exit_code(), &describe(error))
}

/// `--json`'s last line when the run fails.
fn failed_event(message: &str, code: u8) -> serde_json::Value {
    serde_json::json!({ "event": "failed", "error": message, "exit_code": code })
}

/// Ends the run with `code`: `message` on stderr and, for programs, the `failed` event
/// that is the last line `--json` prints.
fn end_with(output: &mut Output, code: ferry_std::ExitCode, message: &str) -> ProcessExit {
    output.done();
    let code = code as u8;
    if let Output::Json(json) = output {
        json.emit(failed_event(message, code));
    }
    eprintln!("ferry: {message}");
    ProcessExit::from(code)
}

/// With `FERRY_REPORT_RSS=1`, prints the process's peak resident set size and the CPU
/// time of all its threads at exit (for the benchmark).
fn report_rss() {
    if std::env::var_os("FERRY_REPORT_RSS").is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
        eprintln!("peak RSS: {}", line.trim_start_matches("VmHWM:").trim());
    }
    // utime and stime, in clock ticks of 1/100 s, follow the parenthesised command name.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
        eprintln!("cpu seconds: {:.2}", (user + system) as f64 / 100.0);
    }
}

fn main() -> ProcessExit {
    let code = run();
    report_rss();
    code
}

/// What a send that delivered all it could read says of the `unreadable` paths its
/// listing left out.
fn left_out(unreadable: usize) -> String {
    format!(
        "sent everything that could be read; {} left out (see above)",
        count(unreadable as u64, "path", "paths")
    )
}

/// `ferry send --receivers N`: the mio driver serves N receivers, each on its own line.
/// `unreadable`: paths the listing could not read (see [`left_out`]).
fn serve_many(
    sender: &mut Sender,
    receivers: usize,
    unreadable: usize,
    output: &mut Output,
    verbose: bool,
) -> ProcessExit {
    let stats = ferry_mio::LoopStats::default();
    let started = Instant::now();
    match ferry_mio::serve(sender, receivers, output.reporter(), &stats) {
        Ok(summary) if summary.delivered.iter().any(|(_, s)| s.failed > 0) => end_with(
            output,
            ferry_std::ExitCode::Integrity,
            "some receivers could not get every file (see above)",
        ),
        Ok(_) if unreadable > 0 => end_with(
            output,
            ferry_std::ExitCode::Integrity,
            &left_out(unreadable),
        ),
        Ok(summary) => {
            output.done();
            let bytes: u64 = summary.delivered.iter().map(|(_, s)| s.bytes).sum();
            let wire: u64 = summary.delivered.iter().map(|(_, s)| s.wire_bytes).sum();
            if let Output::Json(json) = output {
                // Each receiver got the whole batch: its counts are the batch's.
                let (files, folders) = summary.delivered.first().map_or((0, 0), |(_, s)| {
                    (s.committed.saturating_sub(s.folders), s.folders)
                });
                json.emit(serde_json::json!({
                    "event": "finished",
                    "receivers": summary.delivered.len(),
                    "files": files,
                    "folders": folders,
                    "failed": 0,
                    "failed_sessions": summary.failed_sessions,
                    "bytes": bytes,
                    "wire_bytes": wire,
                    "seconds": started.elapsed().as_secs_f64(),
                }));
            } else if !matches!(output, Output::Quiet(_)) {
                eprintln!(
                    "Sent to {}: {} in all ({} on the wire); {} failed or refused",
                    count(summary.delivered.len() as u64, "receiver", "receivers"),
                    size(bytes),
                    size(wire),
                    summary.failed_sessions
                );
            }
            if verbose && matches!(output, Output::Human(_)) {
                let threaded = summary.delivered.iter().any(|(_, s)| s.hash_thread);
                eprintln!("hashing thread: {}", yes_no(threaded));
                let sealers = summary.delivered.iter().map(|(_, s)| s.aead_threads).max();
                eprintln!("AEAD threads: {}", sealers.unwrap_or(0));
                let shared = summary.delivered.iter().any(|(_, s)| s.records_shared);
                eprintln!("AEAD off the main thread: {}", yes_no(shared));
            }
            ProcessExit::SUCCESS
        }
        Err(error) => fail(output, &error),
    }
}

/// A command line that does not parse: clap says why on stderr (help and version go to
/// stdout as usual); with `--json` among the arguments, the `failed` event that is always
/// `--json`'s last line says it too.
fn misused(error: clap::Error) -> ProcessExit {
    use clap::error::ErrorKind;
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational || !std::env::args_os().any(|arg| arg == "--json") {
        error.exit();
    }
    let rendered = error.render().to_string();
    let message = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let code = ferry_std::ExitCode::Usage as u8;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", failed_event(message, code));
    let _ = out.flush();
    let _ = error.print();
    ProcessExit::from(code)
}

/// What a second Ctrl-C leaves behind as it ends the process: `--json`'s last line is a
/// `failed` event, as after any other end; a person gets the reason on stderr (on a line of
/// its own, where a progress bar was being drawn).
fn last_words(json: bool) -> ferry_std::stop::LastWords {
    use std::io::IsTerminal;
    let reason = ferry_std::stop::ENDED_AT_ONCE;
    let stdout = json.then(|| format!("{}\n", failed_event(reason, 130)));
    let fresh_line = if !json && std::io::stderr().is_terminal() {
        "\n"
    } else {
        ""
    };
    ferry_std::stop::LastWords {
        stdout,
        stderr: Some(format!("{fresh_line}ferry: {reason}\n")),
    }
}

fn run() -> ProcessExit {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return misused(error),
    };
    if let Err(error) = ferry_std::stop::install(last_words(cli.json)) {
        eprintln!(
            "ferry: cannot handle Ctrl-C ({error}); it will end the process without a cancel"
        );
    }
    let sending = matches!(cli.command, Command::Send { .. });
    let _ = PEER.set(if sending { "receiver" } else { "sender" });
    let mut output = if cli.json {
        Output::Json(Json::new(sending))
    } else if cli.quiet {
        Output::Quiet(ferry_std::Quiet)
    } else {
        Output::Human(Display::new(sending))
    };
    let human = matches!(output, Output::Human(_));
    match cli.command {
        Command::Send {
            pod,
            port,
            compress,
            timeout,
            receivers,
            paths,
        } => {
            let config = TransferConfig {
                compress,
                stall_timeout: Duration::from_secs(timeout),
                ..TransferConfig::default()
            };
            let tree = match SourceTree::scan(&paths, &config.manifest) {
                Ok(tree) => tree,
                Err(error) => return fail(&mut output, &error),
            };
            for skipped in &tree.skipped {
                output.reporter().info(&format!("skipping {skipped}"));
            }
            for unreadable in &tree.unreadable {
                output
                    .reporter()
                    .info(&format!("cannot send {unreadable}; left out"));
            }
            // Paths the listing could not read end the send as files that could not be
            // read do (exit 5), once what could be read is delivered.
            let unreadable = tree.unreadable.len();
            if tree.manifest.is_empty() {
                let why = if tree.skipped.is_empty() {
                    ""
                } else {
                    " could be sent (see above)"
                };
                return end_with(
                    &mut output,
                    ferry_std::ExitCode::Usage,
                    &format!("nothing to send: no file or folder among the paths given{why}"),
                );
            }
            let mut sender = match Sender::bind(tree, config, pod, port) {
                Ok(sender) => sender,
                Err(error) => return fail(&mut output, &error),
            };
            let mut command = format!("ferry receive {}", sender.connection_string());
            if pod {
                command.push_str(" --pod");
            }
            if sender.port() != DEFAULT_PORT {
                command.push_str(&format!(" --port {}", sender.port()));
            }
            match &mut output {
                Output::Json(json) => json.emit(serde_json::json!({
                    "event": "listening",
                    "command": command,
                    "connection": sender.connection_string().to_string(),
                    "port": sender.port(),
                })),
                _ => {
                    println!("{command}");
                    let _ = std::io::stdout().flush();
                }
            }
            if human {
                eprintln!(
                    "Run the command above on the receiving machine. Waiting for a receiver..."
                );
            }
            if let Some(receivers) = receivers {
                return serve_many(
                    &mut sender,
                    receivers as usize,
                    unreadable,
                    &mut output,
                    cli.verbose,
                );
            }
            match sender.serve(output.reporter()) {
                Ok(summary) if summary.failed > 0 => end_with(
                    &mut output,
                    ferry_std::ExitCode::Integrity,
                    &format!(
                        "sent all but {} of the files: those did not arrive whole (each is named above, or by the receiver)",
                        summary.failed
                    ),
                ),
                Ok(_) if unreadable > 0 => end_with(
                    &mut output,
                    ferry_std::ExitCode::Integrity,
                    &left_out(unreadable),
                ),
                Ok(summary) => {
                    output.finished(
                        Finished {
                            verb: "Sent",
                            files: summary.committed - summary.folders,
                            folders: summary.folders,
                            failed: summary.failed,
                            bytes: summary.bytes,
                            bytes_present: summary.bytes_present,
                            skipped: summary.skipped,
                            wire_bytes: summary.wire_bytes,
                            connections: summary.connections,
                            hash_thread: summary.hash_thread,
                            aead_threads: summary.aead_threads,
                            records_shared: summary.records_shared,
                            elapsed: summary.elapsed,
                        },
                        cli.verbose,
                    );
                    ProcessExit::SUCCESS
                }
                Err(error) => fail(&mut output, &error),
            }
        }
        Command::Receive {
            pod,
            port,
            output: out_dir,
            overwrite,
            timeout,
            checkpoint,
            connections,
            connection,
        } => {
            let target: ConnectionString = match connection.parse() {
                Ok(target) => target,
                Err(error) => return fail(&mut output, &DriverError::ConnectionString(error)),
            };
            let options = ReceiveOptions {
                pod,
                port,
                out_dir,
                connect_timeout: Duration::from_secs(30),
                overwrite,
                config: TransferConfig {
                    stall_timeout: Duration::from_secs(timeout),
                    checkpoint_interval: match checkpoint {
                        0 => Duration::MAX,
                        secs => Duration::from_secs(secs),
                    },
                    checkpoint_bytes: match checkpoint {
                        0 => u64::MAX,
                        _ => TransferConfig::default().checkpoint_bytes,
                    },
                    connections: connections.map_or_else(Connections::default, Connections::Fixed),
                    ..TransferConfig::default()
                },
            };
            match receive(&target, &options, output.reporter()) {
                Ok(summary) => {
                    output.finished(
                        Finished {
                            verb: "Transfer complete",
                            files: summary.committed - summary.folders,
                            folders: summary.folders,
                            failed: 0,
                            bytes: summary.bytes,
                            bytes_present: summary.bytes_present,
                            skipped: summary.skipped,
                            wire_bytes: summary.wire_bytes,
                            connections: summary.connections,
                            hash_thread: summary.hash_thread,
                            aead_threads: summary.aead_threads,
                            records_shared: summary.records_shared,
                            elapsed: summary.elapsed,
                        },
                        cli.verbose,
                    );
                    if std::env::var_os("FERRY_REPORT_RSS").is_some() {
                        let (made, spent) = summary.checkpoints;
                        eprintln!("checkpoints: {made} in {:.1} ms", spent.as_secs_f64() * 1e3);
                    }
                    ProcessExit::SUCCESS
                }
                Err(error) => fail(&mut output, &error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_std::ExitCode;

    #[test]
    fn every_exit_code_is_documented() {
        use ExitCode::*;
        for code in [
            Success,
            Internal,
            Usage,
            Authentication,
            Network,
            Integrity,
            Disk,
            PeerRefused,
            Cancelled,
        ] {
            assert!(
                EXIT_CODES.contains(&format!("  {}  ", code as u8)),
                "{code:?}"
            );
        }
    }
}
