//! End-to-end benchmark of the `ferry` binary over loopback, next to its ceilings measured
//! in the same run: single-core SHA-256 and ChaCha20Poly1305, and a plain TCP copy of the
//! same bytes into a file that is synced at the end (what Ferry's durability costs too).
//!
//!     cargo build --release && cargo run --release -p ferry-examples --example bench [DIR]
//!
//!     ... --example bench DIR --against OTHER_FERRY
//!
//! compares this build with another `ferry` binary (an older commit's, say) on the same
//! payloads, their runs interleaved so that both see the same machine, and prints the
//! ratio of each payload's median time.
//!
//! Payloads: (a) a 1 GiB random file, (b) 10,000 files of 4 KiB, (c) 100 MiB of log text.
//! Every figure is the median of 3 runs, interleaved with its ceiling. Then memory and time
//! per entry: (d) 100,000 empty files, (e) a million entries with 130-byte paths (the trees
//! are made once in DIR and kept; the first run takes a few minutes to make them).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    data
}

struct Payload {
    name: &'static str,
    root: PathBuf,
    files: Vec<PathBuf>,
    bytes: u64,
}

impl Payload {
    /// Reads every file through once, so that a timed run finds its source in the page
    /// cache. This machine's page cache loses a file's pages slowly even with most of
    /// its memory free (about 1% of a 1 GiB file a minute, measured 2026-12-01), and it
    /// reads them back at about 110 MB/s: the sender of one run waited 0.1 s on the disk
    /// where the next waited none, which is the disk's speed, not the programs'.
    fn warm(&self) {
        if self.bytes > 0 {
            self.files.iter().for_each(|path| warm(path));
        }
    }

    /// A run's output, once timed: removed at once where the payload is a few large
    /// files, as scp's copies are below. Kept until the end, a benchmark's gigabytes of
    /// new files made every later write slower on this machine's disk (two benchmark
    /// runs on 2026-12-01: the plain copy of (a) at 105–120 MB/s and the receiver at
    /// 2.17–2.22 ns a byte of CPU; the next run, its outputs removed once timed: 195 MB/s
    /// and 1.82 ns), which measured the disk filling, not the programs. Many small files
    /// stay until the end: deleting thousands right before creating thousands more makes
    /// ext4 scan for inodes.
    fn done_with(&self, out: &Path) {
        // (d) and (e) list no files of their own: their outputs stay too.
        if (1..=FEW_FILES).contains(&self.files.len()) {
            let _ = fs::remove_dir_all(out);
        }
    }
}

/// At most this many files make a payload whose outputs are removed once timed.
const FEW_FILES: usize = 16;

/// Reads `path` through once, into the page cache (see [`Payload::warm`]).
fn warm(path: &Path) {
    let mut buf = vec![0u8; 1 << 20];
    let mut file = File::open(path).unwrap();
    while file.read(&mut buf).unwrap() != 0 {}
}

fn payloads(dir: &Path) -> Vec<Payload> {
    let mut out = Vec::new();
    let a = dir.join("a-random");
    fs::create_dir_all(&a).unwrap();
    let big = a.join("random-1g.bin");
    if fs::metadata(&big).map(|m| m.len()).unwrap_or(0) != 1 << 30 {
        let mut file = File::create(&big).unwrap();
        for i in 0..64 {
            file.write_all(&random_bytes(16 << 20, i)).unwrap();
        }
    }
    out.push(Payload {
        name: "(a) 1 GiB random file",
        root: a,
        files: vec![big],
        bytes: 1 << 30,
    });
    let b = dir.join("b-small");
    let mut small = Vec::new();
    for i in 0..10_000u64 {
        let sub = b.join(format!("d{:02}", i % 100));
        fs::create_dir_all(&sub).unwrap();
        let path = sub.join(format!("f{i:05}"));
        if !path.exists() {
            fs::write(&path, random_bytes(4096, i + 100)).unwrap();
        }
        small.push(path);
    }
    out.push(Payload {
        name: "(b) 10,000 files of 4 KiB",
        root: b,
        files: small,
        bytes: 10_000 * 4096,
    });
    let c = dir.join("c-logs");
    fs::create_dir_all(&c).unwrap();
    let log = c.join("server.log");
    if fs::metadata(&log).map(|m| m.len()).unwrap_or(0) < 100 << 20 {
        let mut file = std::io::BufWriter::new(File::create(&log).unwrap());
        let mut k = 0u64;
        let mut written = 0u64;
        while written < 100 << 20 {
            let line = format!(
                "2026-11-22T04:{:02}:{:02}Z INFO api: GET /v1/items/{} 200 {} ms user={}\n",
                k / 60 % 60,
                k % 60,
                k * 7 % 100_000,
                k % 97,
                k % 1000
            );
            written += line.len() as u64;
            file.write_all(line.as_bytes()).unwrap();
            k += 1;
        }
    }
    let size = fs::metadata(&log).unwrap().len();
    out.push(Payload {
        name: "(c) 100 MiB of log text",
        root: c,
        files: vec![log],
        bytes: size,
    });
    out
}

fn ferry_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let ferry = dir.join("ferry");
    assert!(
        ferry.exists(),
        "{} is missing: run `cargo build --release` first",
        ferry.display()
    );
    ferry
}

/// A figure the binary printed at exit with `FERRY_REPORT_RSS=1`.
fn reported(log: &str, prefix: &str) -> f64 {
    log.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// What one side of a transfer cost.
#[derive(Clone, Copy, Default)]
struct Side {
    rss_kib: f64,
    cpu_seconds: f64,
    /// Receiver: checkpoints made, and milliseconds its thread spent writing them.
    checkpoints: f64,
    checkpoint_ms: f64,
}

impl Side {
    fn from_log(log: &str) -> Side {
        let checkpoint_ms = log
            .lines()
            .find_map(|l| l.strip_prefix("checkpoints: "))
            .and_then(|l| l.split(" in ").nth(1))
            .and_then(|l| l.trim_end_matches(" ms").parse().ok())
            .unwrap_or(0.0);
        Side {
            rss_kib: reported(log, "peak RSS: "),
            cpu_seconds: reported(log, "cpu seconds: "),
            checkpoints: reported(log, "checkpoints: "),
            checkpoint_ms,
        }
    }
}

/// One Ferry transfer of `payload`, `extra` given to the sender: (seconds, sender,
/// receiver).
fn ferry_run(ferry: &Path, payload: &Payload, out: &Path, extra: &[&str]) -> (f64, Side, Side) {
    transfer(ferry, payload, out, extra, &[], &[], false)
}

/// As [`ferry_run`], both sides with the environment `env`.
fn ferry_run_with(
    ferry: &Path,
    payload: &Payload,
    out: &Path,
    env: &[(&str, &str)],
) -> (f64, Side, Side) {
    transfer(ferry, payload, out, &[], &[], env, false)
}

/// As [`ferry_run`], the sender kept on the first core and the receiver on the second
/// (`taskset`).
fn ferry_run_pinned(ferry: &Path, payload: &Payload, out: &Path) -> (f64, Side, Side) {
    transfer(ferry, payload, out, &[], &[], &[], true)
}

/// `ferry`, run on core `cpu` alone if one is given (through `taskset`).
fn ferry_command(ferry: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(ferry);
            command
        }
        None => Command::new(ferry),
    }
}

/// As [`ferry_run`], with `extra` given to the receiver.
fn ferry_run_receiving(
    ferry: &Path,
    payload: &Payload,
    out: &Path,
    extra: &[&str],
) -> (f64, Side, Side) {
    transfer(ferry, payload, out, &[], extra, &[], false)
}

fn transfer(
    ferry: &Path,
    payload: &Payload,
    out: &Path,
    extra: &[&str],
    receiver_extra: &[&str],
    env: &[(&str, &str)],
    pin: bool,
) -> (f64, Side, Side) {
    // The program too: a first run after a while paged it in from the disk (28 ms).
    warm(ferry);
    payload.warm();
    let mut sender = ferry_command(ferry, pin.then_some(0))
        .args(["send", "--pod", "--port", "0"])
        .args(extra)
        .arg(&payload.root)
        .envs(env.iter().copied())
        .env("FERRY_REPORT_RSS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sender.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let args: Vec<&str> = line.split_whitespace().skip(1).collect();
    let start = Instant::now();
    let receiver = ferry_command(ferry, pin.then_some(1))
        .args(&args)
        .args(receiver_extra)
        .arg("-o")
        .arg(out)
        .envs(env.iter().copied())
        .env("FERRY_REPORT_RSS", "1")
        .output()
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        receiver.status.success(),
        "{}",
        String::from_utf8_lossy(&receiver.stderr)
    );
    let mut sender_log = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut sender_log)
        .unwrap();
    sender.wait().unwrap();
    payload.done_with(out);
    (
        seconds,
        Side::from_log(&sender_log),
        Side::from_log(&String::from_utf8_lossy(&receiver.stderr)),
    )
}

/// The same bytes over one plain TCP connection into one file, synced at the end.
fn plain_copy(payload: &Payload, out: &Path) -> f64 {
    fs::create_dir_all(out).unwrap();
    payload.warm();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let files = payload.files.clone();
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(address).unwrap();
        let mut buf = vec![0u8; 256 << 10];
        for path in files {
            let mut file = File::open(path).unwrap();
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).unwrap();
            }
        }
    });
    let (mut stream, _) = listener.accept().unwrap();
    let mut file = File::create(out.join("copy")).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).unwrap();
    }
    file.sync_all().unwrap();
    sender.join().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    payload.done_with(out);
    seconds
}

fn sha256_mbs(data: &[u8]) -> f64 {
    let start = Instant::now();
    for chunk in data.chunks(1 << 20) {
        std::hint::black_box(Sha256::digest(chunk));
    }
    data.len() as f64 / 1e6 / start.elapsed().as_secs_f64()
}

fn aead_mbs(data: &mut [u8]) -> f64 {
    let aead = ChaCha20Poly1305::new(&Key::from([1u8; 32]));
    let start = Instant::now();
    for (i, chunk) in data.chunks_mut(64 << 10).enumerate() {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        std::hint::black_box(
            aead.encrypt_inout_detached(&Nonce::from(nonce), &[], chunk.into())
                .ok(),
        );
    }
    data.len() as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// How to run the benchmark, for a first argument it cannot take as its directory.
const USAGE: &str = "usage: bench [DIR] | bench DIR --against OTHER_FERRY | bench DIR --scp PORT KEY
  DIR: where the payloads are made and kept (default: a ferry-bench folder in the temporary directory)";

fn main() {
    let first = std::env::args().nth(1);
    // `--help` (or any option) given first is not a directory to fill with gigabytes.
    if first.as_deref().is_some_and(|arg| arg.starts_with('-')) {
        eprintln!("{USAGE}");
        std::process::exit(if first.as_deref() == Some("--help") {
            0
        } else {
            2
        });
    }
    let dir = first
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ferry-bench"));
    if let Some(mode) = std::env::args()
        .nth(2)
        .filter(|mode| !["--against", "--scp"].contains(&mode.as_str()))
    {
        eprintln!("bench: unknown argument {mode}\n{USAGE}");
        std::process::exit(2);
    }
    fs::create_dir_all(&dir).unwrap();
    let ferry = ferry_binary();
    eprintln!("preparing payloads in {} ...", dir.display());
    let payloads = payloads(&dir);
    if let Some(other) = std::env::args()
        .nth(3)
        .filter(|_| std::env::args().nth(2).as_deref() == Some("--against"))
    {
        return against(&ferry, Path::new(&other), &payloads, &dir);
    }
    if std::env::args().nth(2).as_deref() == Some("--scp") {
        let (port, key) = (std::env::args().nth(3), std::env::args().nth(4));
        let (Some(port), Some(key)) = (port, key) else {
            panic!("usage: bench DIR --scp PORT KEY (an sshd on 127.0.0.1:PORT taking KEY)");
        };
        return against_scp(&ferry, &payloads[0], &dir, &port, Path::new(&key));
    }
    let mut data = random_bytes(256 << 20, 9);
    let sha = median((0..3).map(|_| sha256_mbs(&data)).collect());
    let aead = median((0..3).map(|_| aead_mbs(&mut data)).collect());
    drop(data);
    println!(
        "ceilings: SHA-256 {sha:.0} MB/s, ChaCha20Poly1305 {aead:.0} MB/s (single core, this run)"
    );
    // The protocol's passes over every byte: each side hashes each file once with
    // SHA-256 (the segment hash is built from those file hashes, PROTOCOL.md §6.3) and
    // seals or opens it once. Before any copy or disk work, that alone bounds two shared
    // cores.
    let crypto_ns = 2.0 * 1e3 / sha + 2.0 * 1e3 / aead;
    println!(
        "crypto alone (2 SHA-256 + 2 AEAD passes per byte, both sides): {crypto_ns:.2} ns/B, \
         two-core ceiling {:.0} MB/s",
        2.0 * 1e3 / crypto_ns
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>7} {:>11} {:>13}",
        "payload", "ferry MB/s", "files/s", "plain MB/s", "ratio", "sender RSS", "receiver RSS"
    );
    // Every run writes a new directory and all are removed at the end: deleting thousands
    // of fresh files right before creating thousands more makes ext4 scan for inodes
    // (`recently_deleted`), which would measure the file system, not Ferry.
    let outputs = dir.join("outputs");
    let _ = fs::remove_dir_all(&outputs);
    wait_out_recent_deletions(&dir);
    for (p, payload) in payloads.iter().enumerate() {
        let (mut ferry_s, mut plain_s, mut sender, mut receiver) =
            (vec![], vec![], Side::default(), Side::default());
        // Each run's CPU per byte on each side, and the share of both cores it kept busy.
        let (mut per_byte, mut busy) = (vec![], vec![]);
        for run in 0..3 {
            let (seconds, s, r) = ferry_run(
                &ferry,
                payload,
                &outputs.join(format!("ferry-{p}-{run}")),
                &[],
            );
            ferry_s.push(seconds);
            let ns = |side: &Side| side.cpu_seconds * 1e9 / payload.bytes as f64;
            per_byte.push((ns(&s), ns(&r)));
            busy.push((s.cpu_seconds + r.cpu_seconds) / (2.0 * seconds));
            // Peak RSS is the worst run's.
            sender = Side {
                rss_kib: sender.rss_kib.max(s.rss_kib),
                ..s
            };
            receiver = Side {
                rss_kib: receiver.rss_kib.max(r.rss_kib),
                ..r
            };
            plain_s.push(plain_copy(
                payload,
                &outputs.join(format!("plain-{p}-{run}")),
            ));
        }
        let (f, p) = (median(ferry_s), median(plain_s));
        let mbs = payload.bytes as f64 / 1e6 / f;
        println!(
            "{:<28} {:>10.0} {:>10.0} {:>12.0} {:>6.0}% {:>7} KiB {:>9} KiB   ({:.2} s)",
            payload.name,
            mbs,
            payload.files.len() as f64 / f,
            payload.bytes as f64 / 1e6 / p,
            100.0 * p / f,
            sender.rss_kib,
            receiver.rss_kib,
            f
        );
        // Both processes share the machine's two cores, so their CPU time per byte
        // bounds the rate whatever the overlap: at best both cores busy all the time.
        // Each run's rate against its own ceiling is the share of both cores it kept
        // busy; the median of those, so that one run's CPU is never set against
        // another's time.
        let ns_s = median(per_byte.iter().map(|p| p.0).collect());
        let ns_r = median(per_byte.iter().map(|p| p.1).collect());
        let two_cores = 2.0 * 1e3 / (ns_s + ns_r);
        println!(
            "{:<28} CPU per byte: sender {ns_s:.2} ns, receiver {ns_r:.2} ns; \
             two-core ceiling {two_cores:.0} MB/s, reached {:.0}%",
            "",
            100.0 * median(busy)
        );
    }
    // One receiver through the mio driver (`--receivers 1`) against the blocking driver,
    // interleaved so that both see the same machine.
    let big = &payloads[0];
    let (mut blocking, mut event_loop) = (vec![], vec![]);
    for run in 0..3 {
        let out = |name: &str| outputs.join(format!("{name}-{run}"));
        blocking.push(ferry_run(&ferry, big, &out("std"), &[]).0);
        event_loop.push(ferry_run(&ferry, big, &out("mio"), &["--receivers", "1"]).0);
    }
    let (b, m) = (median(blocking), median(event_loop));
    println!(
        "{:<28} std driver {:.0} MB/s, mio driver {:.0} MB/s: mio at {:.0}% of std",
        big.name,
        big.bytes as f64 / 1e6 / b,
        big.bytes as f64 / 1e6 / m,
        100.0 * b / m
    );
    // A hashing thread on each side (FERRY_HASH_THREAD=1) against the default, which on
    // loopback uses one only with four cores or more: here both processes share the
    // machine's cores, so this shows what the threads cost or gain when they do.
    let (mut default, mut threaded, mut cpu) = (vec![], vec![], (0.0, 0.0));
    for run in 0..3 {
        let out = |name: &str| outputs.join(format!("{name}-{run}"));
        default.push(ferry_run(&ferry, big, &out("default"), &[]).0);
        let (seconds, s, r) =
            ferry_run_with(&ferry, big, &out("threads"), &[("FERRY_HASH_THREAD", "1")]);
        threaded.push(seconds);
        cpu = (s.cpu_seconds, r.cpu_seconds);
    }
    let (d, t) = (median(default), median(threaded));
    println!(
        "{:<28} hashing thread on each side: {:.0} MB/s against {:.0} MB/s by default ({:.0}%); CPU sender {:.2} s, receiver {:.2} s",
        big.name,
        big.bytes as f64 / 1e6 / t,
        big.bytes as f64 / 1e6 / d,
        100.0 * d / t,
        cpu.0,
        cpu.1
    );
    // The same payload with each process kept on a core of its own: how much of the
    // cores left idle above is the kernel placing two processes that wake each other on
    // one core at a time (the default leaves placement to the kernel).
    let (mut pinned, mut pinned_busy) = (vec![], vec![]);
    for run in 0..3 {
        let (seconds, s, r) = ferry_run_pinned(&ferry, big, &outputs.join(format!("pin-{run}")));
        pinned.push(seconds);
        pinned_busy.push((s.cpu_seconds + r.cpu_seconds) / (2.0 * seconds));
    }
    println!(
        "{:<28} each process on a core of its own (taskset): {:.0} MB/s, both cores {:.0}% busy",
        big.name,
        big.bytes as f64 / 1e6 / median(pinned),
        100.0 * median(pinned_busy)
    );
    // What saving the resume state costs: the time the receiver's thread spends writing
    // locks (exact), and the default (every 2 s and every 64 MiB) against saving only at
    // the end, interleaved (within this machine's noise).
    for payload in &payloads[..2] {
        let (mut with, mut without, mut cost) = (vec![], vec![], Side::default());
        for run in 0..3 {
            let out = |name: &str| outputs.join(format!("{name}-{run}"));
            let (seconds, _, receiver) = ferry_run(&ferry, payload, &out("ckpt"), &[]);
            with.push(seconds);
            cost = receiver;
            without.push(
                ferry_run_receiving(&ferry, payload, &out("nockpt"), &["--checkpoint", "0"]).0,
            );
        }
        let (w, n) = (median(with), median(without));
        println!(
            "{:<28} {} checkpoints, {:.1} ms of the receiver's thread ({:.2}% of {w:.2} s); against none: {n:.2} s ({:+.1}%)",
            payload.name,
            cost.checkpoints,
            cost.checkpoint_ms,
            cost.checkpoint_ms / 10.0 / w,
            100.0 * (w - n) / n
        );
    }
    entries(&ferry, &dir, &outputs);
    let _ = fs::remove_dir_all(&outputs);
    let _ = fs::write(dir.join(CLEANED_MARK), b"");
}

/// This build against `other` on each payload: 5 runs each, interleaved, and the ratio of
/// the medians (below 1: this build is faster).
fn against(ferry: &Path, other: &Path, payloads: &[Payload], dir: &Path) {
    let outputs = dir.join("outputs");
    let _ = fs::remove_dir_all(&outputs);
    wait_out_recent_deletions(dir);
    println!(
        "{:<28} {:>9} {:>9} {:>7}",
        "payload", "this s", "other s", "ratio"
    );
    for (p, payload) in payloads.iter().enumerate() {
        let (mut this, mut that) = (vec![], vec![]);
        for run in 0..5 {
            let out = |name: &str| outputs.join(format!("{name}-{p}-{run}"));
            this.push(ferry_run(ferry, payload, &out("this"), &[]).0);
            that.push(ferry_run(other, payload, &out("other"), &[]).0);
        }
        let (a, b) = (median(this), median(that));
        println!("{:<28} {a:>9.3} {b:>9.3} {:>7.3}", payload.name, a / b);
    }
    let _ = fs::remove_dir_all(&outputs);
    let _ = fs::write(dir.join(CLEANED_MARK), b"");
}

/// Ferry against scp on the same payload over loopback, interleaved, 3 runs each: scp
/// with AES-128-GCM (the fastest cipher OpenSSH offers where the CPU has AES
/// instructions) and with ChaCha20-Poly1305 (Ferry's own AEAD), each into a fresh folder
/// and synced at the end, as Ferry's receive is. Needs an sshd on 127.0.0.1:`port` that
/// takes `key` for the current user (README, "Benchmarks", says how to start one).
fn against_scp(ferry: &Path, payload: &Payload, dir: &Path, port: &str, key: &Path) {
    let outputs = dir.join("outputs");
    let _ = fs::remove_dir_all(&outputs);
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let scp = |cipher: &str, out: &Path| -> f64 {
        fs::create_dir_all(out).unwrap();
        payload.warm();
        let start = Instant::now();
        let status = Command::new("scp")
            .args(["-q", "-P", port, "-c", cipher, "-i"])
            .arg(key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(&payload.files)
            .arg(format!("{user}@127.0.0.1:{}/", out.display()))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "scp failed: is sshd on port {port} taking the key?"
        );
        let copied = start.elapsed().as_secs_f64();
        for file in fs::read_dir(out).unwrap() {
            File::open(file.unwrap().path())
                .unwrap()
                .sync_all()
                .unwrap();
        }
        let total = start.elapsed().as_secs_f64();
        eprintln!("scp -c {cipher}: copied in {copied:.2} s, synced at {total:.2} s");
        let _ = fs::remove_dir_all(out);
        total
    };
    let ciphers = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"];
    let (mut ferry_s, mut scp_s) = (vec![], vec![vec![]; ciphers.len()]);
    // Each copy is removed once timed, so that every run meets the same page cache.
    for run in 0..3 {
        let out = |name: &str| outputs.join(format!("{name}-{run}"));
        ferry_s.push(ferry_run(ferry, payload, &out("ferry"), &[]).0);
        let _ = fs::remove_dir_all(out("ferry"));
        for (times, cipher) in scp_s.iter_mut().zip(ciphers) {
            times.push(scp(cipher, &out(cipher)));
        }
    }
    let f = median(ferry_s);
    let mbs = |seconds: f64| payload.bytes as f64 / 1e6 / seconds;
    println!("{:<28} ferry {:.0} MB/s ({f:.2} s)", payload.name, mbs(f));
    for (times, cipher) in scp_s.into_iter().zip(ciphers) {
        let s = median(times);
        println!(
            "{:<28} scp -c {cipher}: {:.0} MB/s ({s:.2} s); ferry {:.2}x",
            "",
            mbs(s),
            s / f
        );
    }
    let _ = fs::remove_dir_all(&outputs);
}

/// A tree of `dirs` × `per_dir` empty files whose relative paths (as sent, from the root
/// `name`) are `path_len` bytes long; made once and kept. Returns its root and the bytes
/// of all its paths.
fn empty_tree(
    dir: &Path,
    name: &str,
    dirs: usize,
    per_dir: usize,
    path_len: usize,
) -> (PathBuf, u64) {
    let root = dir.join(name);
    // name/<dir>/<sub>/<file>: the three components share what is left of path_len.
    let left = path_len - name.len() - 3;
    let (d, sub) = (left / 3, left / 3);
    let file = left - d - sub;
    let mut path_bytes = name.len() as u64;
    let done = root.join(".complete");
    for i in 0..dirs {
        let a = format!("{:a>width$}{i:05}", "", width = d - 5);
        let b = format!("{:b>width$}", "", width = sub);
        let folder = root.join(&a).join(&b);
        path_bytes +=
            (name.len() + 1 + a.len()) as u64 + (name.len() + 2 + a.len() + b.len()) as u64;
        if !done.exists() {
            fs::create_dir_all(&folder).unwrap();
        }
        for j in 0..per_dir {
            let f = format!("{:f>width$}{j:05}", "", width = file - 5);
            path_bytes += (name.len() + 3 + a.len() + b.len() + f.len()) as u64;
            if !done.exists() {
                File::create(folder.join(&f)).unwrap();
            }
        }
    }
    let _ = File::create(&done);
    // The marker file is sent too.
    path_bytes += (name.len() + 1 + ".complete".len()) as u64;
    (root, path_bytes)
}

/// Memory and time per entry: (d) 100,000 empty files, against 24 MiB per side and 3 s;
/// (e) a million entries with 130-byte paths, the receiver against 16 MiB + the paths'
/// bytes + 64 bytes per entry.
fn entries(ferry: &Path, dir: &Path, outputs: &Path) {
    let mib = |kib: f64| kib / 1024.0;
    let (root, _) = empty_tree(dir, "d-empty", 100, 1000, 40);
    let payload = Payload {
        name: "(d) 100,000 empty files",
        root,
        files: Vec::new(),
        bytes: 0,
    };
    let (mut seconds, mut sender, mut receiver) = (vec![], 0f64, 0f64);
    for run in 0..3 {
        let (s, a, b) = ferry_run(ferry, &payload, &outputs.join(format!("d-{run}")), &[]);
        seconds.push(s);
        sender = sender.max(a.rss_kib);
        receiver = receiver.max(b.rss_kib);
    }
    println!(
        "{:<28} {:.2} s (target 3 s), peak RSS sender {:.1} MiB, receiver {:.1} MiB (target 24 MiB each)",
        payload.name,
        median(seconds),
        mib(sender),
        mib(receiver)
    );
    let entries = 998 * 1000 + 2 * 998 + 2;
    let (root, path_bytes) = empty_tree(dir, "e-million", 998, 1000, 130);
    let payload = Payload {
        name: "(e) 1,000,000 entries",
        root,
        files: Vec::new(),
        bytes: 0,
    };
    let (s, a, b) = ferry_run(ferry, &payload, &outputs.join("e"), &[]);
    let budget = 16.0 + (path_bytes as f64 + 64.0 * entries as f64) / (1 << 20) as f64;
    println!(
        "{:<28} {:.1} s, peak RSS sender {:.1} MiB, receiver {:.1} MiB against 16 MiB + {:.1} MiB of paths + 64 B × {entries} = {budget:.1} MiB ({:.0}%)",
        payload.name,
        s,
        mib(a.rss_kib),
        mib(b.rss_kib),
        path_bytes as f64 / (1 << 20) as f64,
        100.0 * mib(b.rss_kib) / budget
    );
}

/// Written when a run has removed its outputs.
const CLEANED_MARK: &str = "outputs-removed";

/// ext4 avoids reusing an inode for up to five minutes after it was deleted while its
/// inode table block is still dirty (`RECENTCY_DIRTY` in fs/ext4/ialloc.c), scanning past
/// each one: creating 10,000 files soon after a previous run removed 30,000 takes four
/// times as long. Waits until the last run's removal is that old.
fn wait_out_recent_deletions(dir: &Path) {
    let quiet = std::time::Duration::from_secs(300);
    let since = fs::metadata(dir.join(CLEANED_MARK))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if let Some(wait) = since.and_then(|s| quiet.checked_sub(s)) {
        eprintln!(
            "waiting {} s: a previous run removed its outputs less than 5 minutes ago, \
             and ext4 would slow down creating files until then",
            wait.as_secs()
        );
        std::thread::sleep(wait);
    }
}
