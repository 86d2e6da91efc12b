//! wanrelay: a user-space wide-area-link emulator for TCP, for machines without netem.
//!
//! This is `../shared/bench/wan/proxy/src/main.rs` with one change, for connections that
//! share a path (Ferry's lanes): the bottleneck is one per direction for all connections
//! (their chunks are serialised on one shared schedule, in the order they are read),
//! where the original gives each connection a link of its own. With one connection the
//! two are the same. `examples/wan.sh` runs the shared `run.sh` with this relay.
//!
//! It listens on one address and, for every connection accepted, connects to a target
//! address and forwards each direction through an emulated link:
//!
//! * every chunk read from a socket is timestamped on arrival;
//! * the link serialises it at `--rate` (bytes leave the bottleneck back to back, never
//!   faster than the rate: `tx_end = max(arrival, previous tx_end) + len / rate`);
//! * it is delivered no earlier than `tx_end + --delay` (one-way propagation delay);
//! * at most `--queue` bytes per direction are held (on the emulated wire plus waiting at
//!   the bottleneck); beyond that the relay stops reading that socket, so the sender
//!   sees ordinary TCP backpressure. Default: one bandwidth-delay product (rate x 2 x
//!   delay) + 1 MiB.
//! * optional `--window`: at most that many bytes per direction not yet "acknowledged",
//!   an acknowledgement coming back one `--delay` after delivery. This emulates a TCP
//!   sender whose window (cwnd / send buffer / peer's receive window) is capped, which
//!   the relay otherwise hides because it terminates TCP on each side.
//!
//! One reader thread and one writer thread per direction, joined by a byte-bounded FIFO of
//! timestamped chunks. Both relay sockets get large fixed buffers (SO_SNDBUF/SO_RCVBUF,
//! the FORCE variants when root) and TCP_NODELAY, so the relay adds no limit of its own.
//!
//! Usage:
//!   wanrelay --listen 127.0.0.1:9000 --connect 127.0.0.1:15820 --delay 50ms --rate 1gbit
//!            [--queue 14MiB] [--window 4MiB] [--sockbuf 4MiB] [--chunk 64KiB] [--quiet]
//!
//! On each closed connection it prints one line per direction (bytes, first to last byte,
//! rate) and the relay's total CPU time so far (user + system).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Link {
    /// One-way propagation delay.
    delay: Duration,
    /// Bytes per second; 0 = unlimited.
    rate: f64,
    /// Bytes held per direction (wire + bottleneck buffer) before reading stops.
    queue: usize,
    /// Bytes not yet acknowledged (delivered + one delay back); 0 = no such limit.
    window: usize,
    /// Largest read from a socket.
    chunk: usize,
}

struct Opts {
    listen: SocketAddr,
    connect: SocketAddr,
    link: Link,
    sockbuf: usize,
    quiet: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: wanrelay --listen ADDR:PORT --connect ADDR:PORT [--delay 50ms] [--rate 100mbit]\n\
         \x20                [--queue SIZE] [--window SIZE] [--sockbuf SIZE] [--chunk SIZE] [--quiet]\n\
         rates: 100mbit, 1gbit, 500kbit, 12.5MB (bytes/s), 0 = unlimited\n\
         sizes: 4MiB, 512KiB, 1MB, 65536; delays: 50ms, 0.05s, 250us"
    );
    std::process::exit(2)
}

fn parse_num_suffix(s: &str) -> Option<(f64, String)> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    Some((num.parse::<f64>().ok()?, suffix.to_ascii_lowercase()))
}

/// Rate in bytes per second.
fn parse_rate(s: &str) -> Option<f64> {
    let (n, suf) = parse_num_suffix(s)?;
    let bits = match suf.as_str() {
        "" | "bps" | "b" => return Some(n),
        "kb" => return Some(n * 1e3),
        "mb" => return Some(n * 1e6),
        "gb" => return Some(n * 1e9),
        "bit" => n,
        "kbit" => n * 1e3,
        "mbit" => n * 1e6,
        "gbit" => n * 1e9,
        _ => return None,
    };
    Some(bits / 8.0)
}

fn parse_size(s: &str) -> Option<usize> {
    let (n, suf) = parse_num_suffix(s)?;
    let mul = match suf.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1048576.0,
        "gib" => 1073741824.0,
        _ => return None,
    };
    Some((n * mul) as usize)
}

fn parse_delay(s: &str) -> Option<Duration> {
    let (n, suf) = parse_num_suffix(s)?;
    let secs = match suf.as_str() {
        "" | "ms" => n / 1e3,
        "s" => n,
        "us" => n / 1e6,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn parse_args() -> Opts {
    let mut listen = None;
    let mut connect = None;
    let mut delay = Duration::ZERO;
    let mut rate = 0.0;
    let mut queue = None;
    let mut window = 0;
    let mut sockbuf = 4 << 20;
    let mut chunk = 64 << 10;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => listen = Some(val().parse().unwrap_or_else(|_| usage())),
            "--connect" => connect = Some(val().parse().unwrap_or_else(|_| usage())),
            "--delay" => delay = parse_delay(&val()).unwrap_or_else(|| usage()),
            "--rate" => rate = parse_rate(&val()).unwrap_or_else(|| usage()),
            "--queue" => queue = Some(parse_size(&val()).unwrap_or_else(|| usage())),
            "--window" => window = parse_size(&val()).unwrap_or_else(|| usage()),
            "--sockbuf" => sockbuf = parse_size(&val()).unwrap_or_else(|| usage()),
            "--chunk" => chunk = parse_size(&val()).unwrap_or_else(|| usage()).max(1),
            "--quiet" => quiet = true,
            _ => usage(),
        }
    }
    let (Some(listen), Some(connect)) = (listen, connect) else {
        usage()
    };
    let queue = queue.unwrap_or_else(|| {
        if rate > 0.0 {
            (rate * 2.0 * delay.as_secs_f64()) as usize + (1 << 20)
        } else {
            64 << 20
        }
    });
    Opts {
        listen,
        connect,
        link: Link {
            delay,
            rate,
            queue: queue.max(chunk),
            window,
            chunk,
        },
        sockbuf,
        quiet,
    }
}

/// Large fixed socket buffers (FORCE lets root pass net.core.[rw]mem_max) and no Nagle.
fn tune(fd: i32, sockbuf: usize) {
    let val = sockbuf.min(i32::MAX as usize) as libc::c_int;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let p = &val as *const libc::c_int as *const libc::c_void;
    unsafe {
        for (force, plain) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            if libc::setsockopt(fd, libc::SOL_SOCKET, force, p, len) != 0 {
                libc::setsockopt(fd, libc::SOL_SOCKET, plain, p, len);
            }
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            len,
        );
    }
}

fn getsockbuf(fd: i32, opt: libc::c_int) -> i32 {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut val as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        );
    }
    val
}

/// This process's user + system CPU seconds.
fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Chunk {
    data: Vec<u8>, // empty = end of stream
    arrival: Instant,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Chunk>,
    /// Bytes read and not yet delivered (wire + bottleneck queue).
    held: usize,
    /// Delivered bytes whose emulated acknowledgement is still on its way back.
    acks: VecDeque<(Instant, usize)>,
    /// Bytes read and not yet acknowledged (only with --window).
    unacked: usize,
    /// The writer gave up (peer gone): the reader must stop.
    dead: bool,
}

struct Pipe {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct DirStats {
    bytes: AtomicU64,
    first_ns: AtomicU64, // ns since conn start of first delivered byte (+1; 0 = none)
    last_ns: AtomicU64,
}

/// One bottleneck per direction for every connection: the serialisation schedule (when
/// the link is free again) is shared, and each chunk takes its turn when it is read.
static SHARED_TX: [Mutex<Option<Instant>>; 2] = [Mutex::new(None), Mutex::new(None)];

fn reader(dir: usize, mut src: TcpStream, pipe: Arc<Pipe>, link: Link) {
    let mut buf = vec![0u8; link.chunk];
    loop {
        {
            let mut s = pipe.state.lock().unwrap();
            loop {
                if s.dead {
                    return;
                }
                let now = Instant::now();
                while let Some(&(due, n)) = s.acks.front() {
                    if due > now {
                        break;
                    }
                    s.acks.pop_front();
                    s.unacked -= n;
                }
                let window_ok = link.window == 0 || s.unacked < link.window;
                if s.held < link.queue && window_ok {
                    break;
                }
                s = match (window_ok, s.acks.front()) {
                    (false, Some(&(due, _))) => {
                        let wait = due.saturating_duration_since(now);
                        pipe.cv.wait_timeout(s, wait).unwrap().0
                    }
                    _ => pipe.cv.wait(s).unwrap(),
                };
            }
        }
        let n = src.read(&mut buf).unwrap_or(0);
        let arrival = {
            let now = Instant::now();
            let mut shared = SHARED_TX[dir].lock().unwrap();
            let start = now.max(shared.unwrap_or(now));
            let end = if link.rate > 0.0 {
                start + Duration::from_secs_f64(n as f64 / link.rate)
            } else {
                start
            };
            *shared = Some(end);
            // The writer serialises from `arrival`: give it the shared slot's start.
            start
        };
        let mut s = pipe.state.lock().unwrap();
        s.chunks.push_back(Chunk {
            data: buf[..n].to_vec(),
            arrival,
        });
        s.held += n;
        if link.window > 0 {
            s.unacked += n;
        }
        drop(s);
        pipe.cv.notify_all();
        if n == 0 {
            return;
        }
    }
}

fn writer(
    mut dst: TcpStream,
    src: TcpStream,
    pipe: Arc<Pipe>,
    link: Link,
    stats: Arc<DirStats>,
    t0: Instant,
) {
    let mut tx_free = Instant::now();
    loop {
        let chunk = {
            let mut s = pipe.state.lock().unwrap();
            loop {
                if let Some(c) = s.chunks.pop_front() {
                    break c;
                }
                s = pipe.cv.wait(s).unwrap();
            }
        };
        let len = chunk.data.len();
        let start = chunk.arrival.max(tx_free);
        tx_free = if link.rate > 0.0 {
            start + Duration::from_secs_f64(len as f64 / link.rate)
        } else {
            start
        };
        let release = tx_free + link.delay;
        let now = Instant::now();
        if release > now {
            thread::sleep(release - now);
        }
        if len == 0 {
            let _ = dst.shutdown(Shutdown::Write);
            return;
        }
        if dst.write_all(&chunk.data).is_err() {
            let mut s = pipe.state.lock().unwrap();
            s.dead = true;
            drop(s);
            pipe.cv.notify_all();
            let _ = src.shutdown(Shutdown::Read);
            let _ = dst.shutdown(Shutdown::Both);
            return;
        }
        let at = (Instant::now() - t0).as_nanos() as u64 + 1;
        let _ = stats
            .first_ns
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
        stats.last_ns.store(at, Ordering::Relaxed);
        stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let mut s = pipe.state.lock().unwrap();
        s.held -= len;
        if link.window > 0 {
            s.acks.push_back((release + link.delay, len));
        }
        drop(s);
        pipe.cv.notify_all();
    }
}

/// Starts one direction: src -> link -> dst. Returns the writer's join handle.
fn direction(
    dir: usize,
    src: &TcpStream,
    dst: &TcpStream,
    link: Link,
    stats: Arc<DirStats>,
    t0: Instant,
) -> std::io::Result<(thread::JoinHandle<()>, thread::JoinHandle<()>)> {
    let pipe = Arc::new(Pipe {
        state: Mutex::new(State::default()),
        cv: Condvar::new(),
    });
    let (r_src, w_src, w_dst) = (src.try_clone()?, src.try_clone()?, dst.try_clone()?);
    let p = pipe.clone();
    let r = thread::Builder::new()
        .name("rd".into())
        .spawn(move || reader(dir, r_src, p, link))?;
    let w = thread::Builder::new()
        .name("wr".into())
        .spawn(move || writer(w_dst, w_src, pipe, link, stats, t0))?;
    Ok((r, w))
}

fn fmt_dir(name: &str, s: &DirStats) -> String {
    let bytes = s.bytes.load(Ordering::Relaxed);
    let first = s.first_ns.load(Ordering::Relaxed);
    let last = s.last_ns.load(Ordering::Relaxed);
    let span = if first > 0 {
        (last - first) as f64 / 1e9
    } else {
        0.0
    };
    let mbps = if span > 0.0 {
        bytes as f64 / span / 1e6
    } else {
        0.0
    };
    format!("{name} {bytes} B in {span:.3} s ({mbps:.2} MB/s)")
}

fn serve(client: TcpStream, opts: &Opts, id: u64) {
    let t0 = Instant::now();
    tune(client.as_raw_fd(), opts.sockbuf);
    let server = match TcpStream::connect(opts.connect) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wanrelay: conn {id}: cannot connect to {}: {e}", opts.connect);
            return;
        }
    };
    tune(server.as_raw_fd(), opts.sockbuf);
    let up = Arc::new(DirStats::default());
    let down = Arc::new(DirStats::default());
    let a = direction(0, &client, &server, opts.link, up.clone(), t0);
    let b = direction(1, &server, &client, opts.link, down.clone(), t0);
    let (Ok(a), Ok(b)) = (a, b) else {
        eprintln!("wanrelay: conn {id}: cannot start threads");
        return;
    };
    for h in [a.0, a.1, b.0, b.1] {
        let _ = h.join();
    }
    if !opts.quiet {
        eprintln!(
            "wanrelay: conn {id} closed after {:.3} s: {}; {}; relay cpu {:.2} s",
            t0.elapsed().as_secs_f64(),
            fmt_dir("fwd", &up),
            fmt_dir("back", &down),
            cpu_seconds()
        );
    }
}

fn main() {
    let opts = Arc::new(parse_args());
    let listener = TcpListener::bind(opts.listen).unwrap_or_else(|e| {
        eprintln!("wanrelay: cannot listen on {}: {e}", opts.listen);
        std::process::exit(1)
    });
    // Accepted sockets inherit the listener's buffer sizes (and so its window scale).
    tune(listener.as_raw_fd(), opts.sockbuf);
    let l = opts.link;
    eprintln!(
        "wanrelay pid {}: {} -> {}, one-way delay {:.3} ms, rate {}, queue {} B/direction{}, sockbuf {}/{} B",
        std::process::id(),
        opts.listen,
        opts.connect,
        l.delay.as_secs_f64() * 1e3,
        if l.rate > 0.0 {
            format!("{:.1} Mbit/s", l.rate * 8.0 / 1e6)
        } else {
            "unlimited".into()
        },
        l.queue,
        if l.window > 0 {
            format!(", window {} B", l.window)
        } else {
            String::new()
        },
        getsockbuf(listener.as_raw_fd(), libc::SO_SNDBUF),
        getsockbuf(listener.as_raw_fd(), libc::SO_RCVBUF),
    );
    let mut id = 0u64;
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        id += 1;
        let opts = opts.clone();
        let this = id;
        thread::spawn(move || serve(client, &opts, this));
    }
}
