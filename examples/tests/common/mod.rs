//! What the process tests share: running `ferry`, and comparing trees.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// A running `ferry send`, and the receive command it printed.
pub(crate) struct Sending {
    pub(crate) child: Child,
    pub(crate) command: Vec<String>,
}

pub(crate) fn send(args: &[&str], paths: &[&Path], path_env: Option<&Path>) -> Sending {
    let mut command = Command::new(FERRY);
    if let Some(dir) = path_env {
        command.env(
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    send_with(command, args, paths)
}

/// Starts `ferry send ARGS --port 0 PATHS` from `command` (set up as the caller needs:
/// another user, another PATH) and reads the receive command it prints.
pub(crate) fn send_with(mut command: Command, args: &[&str], paths: &[&Path]) -> Sending {
    // Verbose: the tests read the exact byte counts it adds.
    command
        .arg("send")
        .arg("-v")
        .args(args)
        .args(["--port", "0"])
        .args(paths);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let command: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(&command[..2], ["ferry", "receive"], "printed {line:?}");
    Sending { child, command }
}

impl Sending {
    /// The receive command's arguments, optionally with another token.
    pub(crate) fn receive_args(&self, token: Option<&str>) -> Vec<String> {
        let mut args = self.command[1..].to_vec();
        if let Some(token) = token {
            let (ip, _) = args[1].rsplit_once(':').unwrap();
            args[1] = format!("{ip}:{token}");
        }
        args
    }

    /// Stops a sender whose receiver was refused (it would wait for another).
    pub(crate) fn abandon(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn finish(mut self) -> (i32, String) {
        let limit = Duration::from_secs(120);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if start.elapsed() > limit {
                // Stopped, its log tells where it was.
                let _ = self.child.kill();
                let _ = self.child.wait();
                break -1;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            status != -1 || start.elapsed() <= limit,
            "the sender did not finish within {limit:?}; its log:\n{stderr}"
        );
        (status, stderr)
    }
}

pub(crate) fn wait(child: &mut Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn receive(args: &[String], out: &Path, path_env: Option<&Path>) -> Output {
    let mut command = Command::new(FERRY);
    command.args(args).arg("-v").arg("-o").arg(out);
    if let Some(dir) = path_env {
        command.env(
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    command.output().unwrap()
}

/// Bytes the sender wrote to the socket in its last session, from its log.
pub(crate) fn wire_bytes(sender_log: &str) -> u64 {
    sender_log
        .lines()
        .find_map(|l| l.strip_prefix("wire bytes: "))
        .unwrap_or_else(|| panic!("no wire bytes in {sender_log}"))
        .trim()
        .parse()
        .unwrap()
}

/// Bytes the receiver found already here and verified, from its (verbose) log.
pub(crate) fn bytes_already_here(receiver_log: &str) -> u64 {
    receiver_log
        .lines()
        .find_map(|l| l.strip_prefix("bytes already here: "))
        .unwrap_or_else(|| panic!("no count of bytes already here in {receiver_log}"))
        .trim()
        .parse()
        .unwrap()
}

/// Sends a signal to a child process (`kill -SIG`).
pub(crate) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub(crate) fn random_file(path: &Path, len: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    fs::write(path, data).unwrap();
}

/// Asserts two trees are equal: the same names, kinds, contents and permission bits.
pub(crate) fn assert_same_tree(a: &Path, b: &Path) {
    let mut names_a: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names_b: Vec<_> = fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "{} vs {}", a.display(), b.display());
    for name in names_a {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(
            ma.permissions().mode() & 0o7777,
            mb.permissions().mode() & 0o7777,
            "mode of {}",
            pb.display()
        );
        assert_eq!(ma.is_dir(), mb.is_dir());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else {
            assert!(
                fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
                "{} differs",
                pb.display()
            );
        }
    }
}

/// A sender that speaks the protocol by hand over a real socket on loopback: to try the
/// real receiver with what a real sender never sends.
pub(crate) struct Hostile {
    /// What to give `ferry receive`: `--pod --port N 127.0.0.1:TOKEN`.
    pub(crate) receive_args: Vec<String>,
    script: std::thread::JoinHandle<()>,
}

impl Hostile {
    /// Waits for the script to end.
    pub(crate) fn join(self) {
        self.script.join().unwrap();
    }

    /// `ferry receive` from this sender into `out`, run to its end; then the script's.
    pub(crate) fn received_into(self, out: &Path) -> Output {
        let output = Command::new(FERRY)
            .args(&self.receive_args)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        self.join();
        output
    }
}

/// Starts `script` against the first receiver that connects. `keepalive` is how often the
/// script's channel sends keepalives while it waits.
pub(crate) fn hostile_sender(
    keepalive: Duration,
    script: impl FnOnce(&mut Link) + Send + 'static,
) -> Hostile {
    use ferry_core::{Channel, Config, Role, SeededEntropy, Timestamp, Token};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut entropy = SeededEntropy::new(3);
    let token = Token::generate(&mut entropy);
    let receive_args = vec![
        "receive".to_owned(),
        "--pod".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        format!("127.0.0.1:{token}"),
    ];
    let script = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let config = Config {
            keepalive_interval: keepalive,
            ..Config::default()
        };
        let channel =
            Channel::new(Role::Sender, token, config, &mut entropy, Timestamp::ZERO).unwrap();
        let mut link = Link {
            stream,
            channel,
            started: Instant::now(),
        };
        link.handshake();
        script(&mut link);
    });
    Hostile {
        receive_args,
        script,
    }
}

/// The scripted sender's end of the connection.
pub(crate) struct Link {
    stream: std::net::TcpStream,
    channel: ferry_core::Channel,
    started: Instant,
}

/// One manifest entry as a hostile sender offers it.
pub(crate) struct Offered<'a> {
    pub(crate) path: &'a str,
    pub(crate) size: u64,
    pub(crate) mode: u32,
}

impl Link {
    fn now(&self) -> ferry_core::Timestamp {
        ferry_core::Timestamp::from_micros(self.started.elapsed().as_micros() as u64)
    }

    fn flush(&mut self) {
        use std::io::Write;
        let out = self.channel.poll_transmit().to_vec();
        self.channel.advance_transmit(out.len());
        let _ = self.stream.write_all(&out);
    }

    /// Reads for at most `wait` and feeds the channel; false once the receiver is gone.
    fn read_some(&mut self, wait: Duration) -> bool {
        let mut buf = vec![0u8; 65536];
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        match self.stream.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                let mut at = 0;
                while at < n {
                    match self.channel.handle_input(self.now(), &buf[at..n]) {
                        Ok(used) => at += used,
                        Err(_) => return false,
                    }
                    let _ = self.channel.take_message();
                }
                while self.channel.poll_event().is_some() {}
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                let _ = self.channel.handle_timeout(self.now());
                true
            }
            Err(_) => false,
        }
    }

    fn handshake(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.channel.is_established() && Instant::now() < deadline {
            self.flush();
            if !self.read_some(Duration::from_millis(100)) {
                return;
            }
        }
        self.flush();
    }

    /// Sends one transfer message (kind byte, body).
    pub(crate) fn send(&mut self, message: &[u8]) {
        let _ = self.channel.send_message(message);
        self.flush();
    }

    /// Offers a batch: MANIFEST_BEGIN and one MANIFEST_ENTRIES, as PROTOCOL.md §6 lays
    /// them out, files only and without hashes.
    pub(crate) fn offer(&mut self, entries: &[Offered<'_>]) {
        let path_bytes: usize = entries.iter().map(|e| e.path.len()).sum();
        let total = entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.size));
        let mut begin = vec![0x01];
        rmp::encode::write_array_len(&mut begin, 4).unwrap();
        for v in [entries.len() as u64, path_bytes as u64, total, 64 << 10] {
            rmp::encode::write_uint(&mut begin, v).unwrap();
        }
        self.send(&begin);
        let mut list = vec![0x02];
        rmp::encode::write_array_len(&mut list, entries.len() as u32).unwrap();
        for entry in entries {
            rmp::encode::write_array_len(&mut list, 6).unwrap();
            rmp::encode::write_str(&mut list, entry.path).unwrap();
            for v in [0u64, entry.size, u64::from(entry.mode)] {
                rmp::encode::write_uint(&mut list, v).unwrap();
            }
            rmp::encode::write_sint(&mut list, 0).unwrap();
            rmp::encode::write_nil(&mut list).unwrap();
        }
        self.send(&list);
    }

    /// Sends CANCEL with `reason` and closes.
    pub(crate) fn cancel(&mut self, reason: &[u8]) {
        let mut message = vec![0x22];
        message.extend_from_slice(reason);
        self.send(&message);
        let _ = self.channel.close();
        self.flush();
    }

    /// Keeps the connection alive (keepalives, nothing else) until the receiver leaves
    /// or `limit` passes; returns how long that took.
    pub(crate) fn idle_until_gone(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.flush();
            if !self.read_some(Duration::from_millis(100)) {
                break;
            }
        }
        start.elapsed()
    }
}

/// The user a `ferry` run as [`as_the_user`] is: nobody when the tests run as root (who
/// reads, lists and writes anything), else whoever runs them.
pub(crate) fn the_user() -> (u32, u32) {
    if nix::unistd::geteuid().is_root() {
        (65534, 65534)
    } else {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }
}

/// A `ferry` command that runs as an ordinary user would: as [`the_user`].
pub(crate) fn as_the_user() -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(FERRY);
    let (uid, gid) = the_user();
    command.uid(uid).gid(gid);
    command
}

/// Makes `path` the property of [`the_user`], and `dir` (the test's own folder)
/// open to them, so that a run as that user may write there.
pub(crate) fn give_to_the_user(dir: &Path, path: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = the_user();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// Starts `ferry receive ARGS -o OUT` with its stderr in `log`.
pub(crate) fn spawn_receive(args: &[String], out: &Path, log: &Path) -> Child {
    spawn_receive_with(Command::new(FERRY), args, out, log)
}

/// As [`spawn_receive`], from `command` (`ferry` with its environment set).
pub(crate) fn spawn_receive_with(
    mut command: Command,
    args: &[String],
    out: &Path,
    log: &Path,
) -> Child {
    command
        .args(args)
        .arg("-v")
        .arg("-o")
        .arg(out)
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until `ready()` holds, failing if `child` ends first.
pub(crate) fn wait_until(child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the receive ended ({status}) before it could be stopped:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never got going"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The length of the file at `path`, 0 if there is none.
pub(crate) fn part_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// A relay in front of the sender on `sender_port`, as a hostile or broken network path
/// would be; returns its port. Receivers' bytes pass as they are. Each chunk of the
/// sender's stream on connection `index` (counted from 0 as they arrive) is first shown
/// to `meddle(index, carried, chunk)`, with the bytes of that connection already carried:
/// it may change the chunk, and returning false cuts the connection there instead.
pub(crate) fn relay(
    sender_port: u16,
    meddle: impl Fn(usize, u64, &mut [u8]) -> bool + Send + Sync + 'static,
) -> u16 {
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let meddle = Arc::new(meddle);
    std::thread::spawn(move || {
        for (index, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(("127.0.0.1", sender_port)).unwrap();
            let (mut up_from, mut up_to) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_from, &mut up_to);
                let _ = up_to.shutdown(Shutdown::Write);
            });
            let (mut down_from, mut down_to) = (server, client);
            let meddle = Arc::clone(&meddle);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut carried = 0u64;
                loop {
                    let n = match down_from.read(&mut buf) {
                        // The sender's end of its stream is passed on as it is (a half
                        // close: the receiver's side still flows), as on a direct path.
                        Ok(0) => {
                            let _ = down_to.shutdown(Shutdown::Write);
                            return;
                        }
                        Err(_) => break,
                        Ok(n) => n,
                    };
                    if !meddle(index, carried, &mut buf[..n])
                        || down_to.write_all(&buf[..n]).is_err()
                    {
                        break;
                    }
                    carried += n as u64;
                }
                // Cut (or failed): both ends see the connection go.
                let _ = down_to.shutdown(Shutdown::Both);
                let _ = down_from.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// Points the receive `args` at a relay that carries the sender's stream at `rate` bytes a
/// second on each connection, so that how much arrives in a given time is known (give the
/// receive `--connections 1`, so that a path this slow gets no more).
pub(crate) fn at_a_rate(args: &mut [String], rate: u64) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let (at, sender_port) = port_arg(args);
    let started: Mutex<HashMap<usize, Instant>> = Mutex::new(HashMap::new());
    args[at] = relay(sender_port, move |index, carried, _| {
        let start = *started
            .lock()
            .unwrap()
            .entry(index)
            .or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(carried as f64 / rate as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        true
    })
    .to_string();
}

/// Where `receive_args` names the sender's port, and the port.
pub(crate) fn port_arg(args: &[String]) -> (usize, u16) {
    let at = args.iter().position(|a| a == "--port").unwrap() + 1;
    (at, args[at].parse().unwrap())
}

/// Points the receive `args` at a relay that holds the sender's stream once `bytes` have
/// passed, until the flag returned is set: so that a test's step comes before the end of
/// the transfer, however fast the machine.
pub(crate) fn held_relay(
    args: &mut [String],
    bytes: u64,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let release = std::sync::Arc::new(AtomicBool::new(false));
    let released = std::sync::Arc::clone(&release);
    let (at, sender_port) = port_arg(args);
    let port = relay(sender_port, move |_, carried, _| {
        while carried >= bytes && !released.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    });
    args[at] = port.to_string();
    release
}

/// A receive of `source` into `out` stopped with Ctrl-C once `part` holds `at` bytes, over
/// one connection whose stream is held at `hold` bytes until then (so that the stop comes
/// first however fast the machine); asserts that it ended as cancelled (exit 8).
pub(crate) fn stopped_midway(source: &Path, out: &Path, part: &Path, at: u64, hold: u64) {
    let sending = send(&["--pod"], &[source], None);
    let mut args = sending.receive_args(None);
    let release = held_relay(&mut args, hold);
    args.extend(["--connections".to_owned(), "1".to_owned()]);
    let log = out.with_extension("stopped.log");
    let mut child = spawn_receive(&args, out, &log);
    wait_until(&mut child, &log, || part_len(part) >= at);
    signal(&child, "INT");
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    let status = wait(&mut child, Duration::from_secs(60));
    assert_eq!(
        status,
        8,
        "{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    sending.abandon();
}

/// A large resume, cheaply: a sparse source of `total` bytes (no disk, read as fast as
/// memory; checking it still costs each side seconds of hashing), and an output folder
/// as a stopped receive leaves it, with all but the last MiB verified. Returns the
/// source, the output folder and the verified length.
pub(crate) fn large_resume(dir: &Path, total: u64) -> (PathBuf, PathBuf, u64) {
    use std::os::unix::fs::MetadataExt;
    let verified = total - (1 << 20);
    let source = dir.join("big.bin");
    fs::File::create(&source).unwrap().set_len(total).unwrap();
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::File::create(out.join("big.bin.part"))
        .unwrap()
        .set_len(verified)
        .unwrap();
    let meta = fs::metadata(&source).unwrap();
    let mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    let lock = serde_json::json!({
        "version": "1.0",
        "session_id": "0123456789abcdef",
        "timestamp": "2026-12-01T00:00:00Z",
        "sender_ip": "127.0.0.1",
        "total_files": 1,
        "total_size": total,
        "files": {"big.bin": {
            "status": "in_progress",
            "size": total,
            "mtime_ns": mtime_ns,
            "transferred_bytes": verified,
        }},
    });
    fs::write(out.join(".transfer_lock.json"), lock.to_string()).unwrap();
    (source, out, verified)
}

/// Bytes the process `pid` has read so far (from the page cache or not).
pub(crate) fn bytes_read(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("rchar: ").map(str::to_owned))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts `ferry send --pod --port 0 ARGS PATHS` as a bare child, its stderr to `stderr`
/// (for a test that signals it or reads what it does), and returns it with the receive
/// arguments it printed.
pub(crate) fn spawn_sender(args: &[&str], paths: &[&Path], stderr: Stdio) -> (Child, Vec<String>) {
    let mut sender = Command::new(FERRY)
        .args(["send", "--pod", "--port", "0"])
        .args(args)
        .args(paths)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sender.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let receive = line.split_whitespace().skip(1).map(str::to_owned).collect();
    (sender, receive)
}

/// A receiver's disk that takes every write and keeps nothing.
pub(crate) struct Discard;

impl ferry_core::transfer::Storage for Discard {
    fn read(
        &mut self,
        _: ferry_core::transfer::Target<'_>,
        _: u64,
        _: &mut [u8],
    ) -> Result<usize, ferry_core::transfer::DiskError> {
        Ok(0)
    }
    fn write(
        &mut self,
        _: ferry_core::transfer::Target<'_>,
        _: u64,
        _: &[u8],
    ) -> Result<(), ferry_core::transfer::DiskError> {
        Ok(())
    }
    fn commit(
        &mut self,
        _: ferry_core::transfer::Target<'_>,
    ) -> Result<(), ferry_core::transfer::DiskError> {
        Ok(())
    }
}

/// A receiver that asks for as much as it may (a 40 MiB window, as on a long fast path)
/// and stops reading once `stop_after` bytes have come: the connection stays open and the
/// sender's writes stop going anywhere. Returns once it has stopped, with the socket.
pub(crate) fn greedy_receiver_that_stops_reading(
    connection: &str,
    port: u16,
    stop_after: u64,
) -> std::net::TcpStream {
    use ferry_core::transfer::{Output, ReceiverSession, Session, TransferConfig, TransferEvent};
    use ferry_core::{ConnectionString, SeededEntropy, Timestamp};
    use std::io::{Read, Write};
    let connection: ConnectionString = connection.parse().unwrap();
    let config = TransferConfig {
        initial_window: 40 << 20,
        window_floor: 40 << 20,
        ..TransferConfig::default()
    };
    let started = Instant::now();
    let now = || Timestamp::from_micros(started.elapsed().as_micros() as u64);
    let mut session =
        ReceiverSession::new(config, connection.token, &mut SeededEntropy::new(7), now()).unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut received = 0u64;
    while received < stop_after {
        loop {
            match session.poll_output() {
                Output::Timeout(_) => break,
                Output::Disk(command) => session.carry_out(now(), command, &mut Discard).unwrap(),
                Output::Event(TransferEvent::BatchOffered { .. }) => {
                    session.accept(now(), &[]).unwrap()
                }
                Output::Event(_) => {}
            }
        }
        let pending = session.poll_transmit().to_vec();
        stream.write_all(&pending).unwrap();
        session.advance_transmit(pending.len());
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the sender closed before the receiver stopped reading"
        );
        received += n as u64;
        let mut at = 0;
        while at < n {
            at += session.handle_input(now(), &buf[at..n]).unwrap();
        }
    }
    stream
}
