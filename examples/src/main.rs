//! `ferry`: send files to another machine, encrypted end to end, resumable after any crash.
//!
//! Argument parsing and display only; the work is in `ferry_std`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode as ProcessExit;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ferry_core::ConnectionString;
use ferry_core::transfer::TransferConfig;
use ferry_std::receive::{ReceiveOptions, receive};
use ferry_std::send::Sender;
use ferry_std::source::SourceTree;
use ferry_std::{DEFAULT_PORT, DriverError, Reporter, human_size as size};
use indicatif::{ProgressBar, ProgressStyle};

/// Seconds without progress before a transfer gives up (`--timeout`).
const DEFAULT_TIMEOUT: u64 = 120;

const EXIT_CODES: &str = "Exit codes:
  0  success: every file delivered and verified
  2  usage error (bad arguments or connection string)
  3  authentication failed: wrong token or tampered connection
  4  network error or timeout
  5  integrity: a file could not be verified after 3 attempts
  6  local disk error (permissions, space, an existing file in the way)
  7  peer refused: not a Tailscale peer (or not loopback with --pod)
  8  cancelled or declined by the other side
  1  internal error";

#[derive(Parser)]
#[command(name = "ferry", version, about = "Move files between machines, encrypted end to end and resumable", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        /// The sender's TCP port.
        #[arg(long, default_value_t = DEFAULT_PORT)]
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
        /// The sender's IP:TOKEN, as `ferry send` printed it.
        connection: String,
    },
}

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise.
struct Display {
    bar: Option<ProgressBar>,
    /// The bar of the check of what is already here, before a resume.
    check: Option<ProgressBar>,
    /// When the last line of that check was printed (not on a terminal).
    check_line: Option<Instant>,
    files: usize,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Display {
    fn new() -> Self {
        Display {
            bar: None,
            check: None,
            check_line: None,
            files: 0,
            total: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }
}

fn mb(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-6)
}

impl Reporter for Display {
    fn info(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
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
        let due = self
            .check_line
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(2));
        if due {
            self.check_line = Some(Instant::now());
            eprintln!(
                "checking what is already here: {} of {}",
                size(checked),
                size(total)
            );
        }
    }

    fn start(&mut self, files: usize, bytes: u64) {
        if let Some(check) = self.check.take() {
            check.finish_and_clear();
        }
        self.files = files;
        self.total = bytes;
        self.started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(bytes);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style);
            }
            self.bar = Some(bar);
        }
    }

    fn progress(&mut self, bytes: u64, files: usize) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{files}/{} files", self.files));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                self.last_line = Instant::now();
                let elapsed = self.started.elapsed();
                let rate = mb(bytes, elapsed);
                let eta = if rate > 0.0 {
                    (self.total.saturating_sub(bytes)) as f64 / 1e6 / rate
                } else {
                    0.0
                };
                eprintln!(
                    "{} of {} ({files}/{} files), {rate:.0} MB/s, ETA {eta:.0} s",
                    size(bytes),
                    size(self.total),
                    self.files
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

fn fail(display: &mut Display, error: &DriverError) -> ProcessExit {
    display.done();
    eprintln!("ferry: {error}");
    ProcessExit::from(error.exit_code() as u8)
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

/// `ferry send --receivers N`: the mio driver serves N receivers, each on its own line.
fn serve_many(sender: &mut Sender, receivers: usize, display: &mut Display) -> ProcessExit {
    let stats = ferry_mio::LoopStats::default();
    match ferry_mio::serve(sender, receivers, display, &stats) {
        Ok(summary) if summary.delivered.iter().any(|(_, s)| s.failed > 0) => {
            eprintln!("Some receivers could not get every file (see above)");
            ProcessExit::from(ferry_std::ExitCode::Integrity as u8)
        }
        Ok(summary) => {
            let bytes: u64 = summary.delivered.iter().map(|(_, s)| s.bytes).sum();
            let wire: u64 = summary.delivered.iter().map(|(_, s)| s.wire_bytes).sum();
            eprintln!(
                "Sent to {} receivers: {} in all ({} on the wire); {} failed or refused",
                summary.delivered.len(),
                size(bytes),
                size(wire),
                summary.failed_sessions
            );
            eprintln!("wire bytes: {wire}");
            ProcessExit::SUCCESS
        }
        Err(error) => fail(display, &error),
    }
}

fn run() -> ProcessExit {
    let cli = Cli::parse();
    if let Err(error) = ferry_std::stop::install() {
        eprintln!(
            "ferry: cannot handle Ctrl-C ({error}); it will end the process without a cancel"
        );
    }
    let mut display = Display::new();
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
                Err(error) => return fail(&mut display, &error),
            };
            for skipped in &tree.skipped {
                eprintln!("skipping {skipped}");
            }
            let mut sender = match Sender::bind(tree, config, pod, port) {
                Ok(sender) => sender,
                Err(error) => return fail(&mut display, &error),
            };
            let mut command = format!("ferry receive {}", sender.connection_string());
            if pod {
                command.push_str(" --pod");
            }
            if sender.port() != DEFAULT_PORT {
                command.push_str(&format!(" --port {}", sender.port()));
            }
            println!("{command}");
            let _ = std::io::stdout().flush();
            eprintln!("Run the command above on the receiving machine. Waiting...");
            if let Some(receivers) = receivers {
                return serve_many(&mut sender, receivers as usize, &mut display);
            }
            match sender.serve(&mut display) {
                Ok(summary) if summary.failed > 0 => {
                    display.done();
                    eprintln!(
                        "Sent all but {} of the files; those could not be delivered (see above)",
                        summary.failed
                    );
                    ProcessExit::from(ferry_std::ExitCode::Integrity as u8)
                }
                Ok(summary) => {
                    display.done();
                    eprintln!(
                        "Sent: {} files, {} in {:.1} s, {:.0} MB/s ({} on the wire)",
                        summary.committed,
                        size(summary.bytes),
                        summary.elapsed.as_secs_f64(),
                        mb(summary.bytes, summary.elapsed),
                        size(summary.wire_bytes)
                    );
                    eprintln!("wire bytes: {}", summary.wire_bytes);
                    ProcessExit::SUCCESS
                }
                Err(error) => fail(&mut display, &error),
            }
        }
        Command::Receive {
            pod,
            port,
            output,
            overwrite,
            timeout,
            checkpoint,
            connection,
        } => {
            let target: ConnectionString = match connection.parse() {
                Ok(target) => target,
                Err(error) => return fail(&mut display, &DriverError::ConnectionString(error)),
            };
            let options = ReceiveOptions {
                pod,
                port,
                out_dir: output,
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
                    ..TransferConfig::default()
                },
            };
            match receive(&target, &options, &mut display) {
                Ok(summary) => {
                    display.done();
                    eprintln!(
                        "Transfer complete: {} files, {} in {:.1} s, {:.0} MB/s",
                        summary.committed,
                        size(summary.bytes),
                        summary.elapsed.as_secs_f64(),
                        mb(summary.bytes, summary.elapsed)
                    );
                    if std::env::var_os("FERRY_REPORT_RSS").is_some() {
                        let (made, spent) = summary.checkpoints;
                        eprintln!("checkpoints: {made} in {:.1} ms", spent.as_secs_f64() * 1e3);
                    }
                    if summary.skipped + summary.resumed > 0 {
                        eprintln!(
                            "resumed: {} files skipped, {} bytes already here",
                            summary.skipped, summary.bytes_present
                        );
                    }
                    ProcessExit::SUCCESS
                }
                Err(error) => fail(&mut display, &error),
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
