//! Making written data durable, and streaming large files to the disk as they are written.
//!
//! Linux makes a whole file system durable with one `syncfs`. Elsewhere each file written
//! since the last sync is synced on its own (`fsync`; on macOS the standard library's
//! `sync_all` is `F_FULLFSYNC`, which also flushes the drive's cache), and then each
//! directory whose entries changed: the sink keeps that list only where it is needed
//! ([`PER_FILE`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use super::dir::Dir;

/// True where durability means syncing each written file and directory on its own.
pub const PER_FILE: bool = !cfg!(any(target_os = "linux", target_os = "android"));

/// What was written since the last sync, where [`PER_FILE`] holds: `/`-separated paths
/// inside the output directory ("" for the directory itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Files whose data or size changed.
    pub files: BTreeSet<String>,
    /// Directories whose entries changed.
    pub dirs: BTreeSet<String>,
}

impl Written {
    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Adds what `other` wrote: both are to be made durable together.
    pub fn absorb(&mut self, other: Written) {
        self.files.extend(other.files);
        self.dirs.extend(other.dirs);
    }
}

/// Makes everything written under `dir` durable: `written` lists it where the system
/// needs that (elsewhere it is empty and ignored).
pub fn sync_filesystem(dir: &Dir, written: &Written) -> io::Result<()> {
    if PER_FILE {
        sync_each(dir, written)
    } else {
        syncfs(dir)
    }
}

/// Syncs each file and directory `written` lists, reached from `dir` without following a
/// link; one renamed or removed since is skipped (its new name is listed, or nothing is
/// left to sync).
pub fn sync_each(dir: &Dir, written: &Written) -> io::Result<()> {
    for path in &written.files {
        match dir.open_file_path(path, true) {
            Ok(file) => file.sync_all()?,
            // Renamed or removed since: its new name is in the list, or nothing is left.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for path in &written.dirs {
        let opened = if path.is_empty() {
            dir.try_clone()
        } else {
            dir.open_dir_path(path)
        };
        match opened {
            Ok(opened) => opened.sync()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn syncfs(dir: &Dir) -> io::Result<()> {
    nix::unistd::syncfs(dir.as_file()).map_err(|errno| io::Error::from_raw_os_error(errno as i32))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn syncfs(_dir: &Dir) -> io::Result<()> {
    Ok(())
}

/// Reserves `len` bytes of disk for `file` without writing them, where the system can: a
/// later write into them cannot fail for want of space. Elsewhere this does nothing.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    match nix::fcntl::posix_fallocate(file, 0, len) {
        Ok(()) => Ok(()),
        // A file system that cannot preallocate just gets no reserve.
        Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL) => Ok(()),
        Err(errno) => Err(io::Error::from_raw_os_error(errno as i32)),
    }
}

/// Reserves `len` bytes of disk for `file` where the system can; not here.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn preallocate(_file: &File, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Sets aside the disk blocks of a file about to be written up to `len` bytes, leaving
/// its size as it is (Linux's `FALLOC_FL_KEEP_SIZE`); true if it did (a refusal may
/// still have set part of it aside). Without it, ext4
/// allocates a large file's blocks as its pages are written back, holding the file's
/// block map while it reads block bitmaps from the disk, and the receiver's next write
/// waits on that lock: 0.85 s of a 2.9 s transfer of 1 GiB here, both processes idle
/// meanwhile. Set aside at once, a GiB's blocks take a few milliseconds and no write
/// waits for an allocation. Blocks past the end the file does not fill stay set aside
/// until it is cut to its length ([`std::fs::File::set_len`]). Elsewhere this does
/// nothing.
#[cfg(target_os = "linux")]
pub fn reserve_blocks(file: &File, len: u64) -> bool {
    use nix::fcntl::{FallocateFlags, fallocate};
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    // Advice only: a file system that cannot, or a disk without the room (the write
    // that needs it says so), gets no reserve.
    fallocate(file, FallocateFlags::FALLOC_FL_KEEP_SIZE, 0, len).is_ok()
}

/// Sets aside a file's disk blocks where the system can; not here.
#[cfg(not(target_os = "linux"))]
pub fn reserve_blocks(_file: &File, _len: u64) -> bool {
    false
}

/// How far behind the newest write a large file's pages are handed to the disk.
pub const WRITE_BEHIND: u64 = 4 << 20;

/// Streams a large file to the disk as it is written instead of leaving it all to the
/// next checkpoint's sync, and keeps the page cache from filling with a transfer's worth
/// of pages: `POSIX_FADV_DONTNEED` starts writeback of the dirty pages it is given and
/// drops the clean ones. As the file passes each mark (a multiple of [`WRITE_BEHIND`]),
/// the window that ends there is started and the one two windows back, written out by
/// then, is dropped. Durability is still claimed only after a sync (the lock file); this
/// only spreads the disk's work out.
///
/// The advice runs on a thread of its own: starting a window's writeback and dropping
/// pages is kernel work (about 0.1 s a GiB here) that the receiving thread, the slower
/// side of a transfer on a machine's cores, would otherwise wait through (on a loopback
/// of two cores, 1.55 s a GiB with it inline, 1.42 s with it here, eight runs each; on
/// a later, slower hour 1.586 against 1.564 s). The thread gets a handle of its own on
/// the file, so the file may be closed or renamed meanwhile. The writer never waits for
/// it: while [`QUEUED`] pieces of advice wait (the thread held by the disk: Linux
/// throttles a slow disk's writeback, and that thread, or a writer giving the advice
/// itself, then sleeps tens of milliseconds), the marks passed meanwhile go with the next
/// piece that fits, which covers every window since the last one handed over. The
/// checkpoints' syncs bound what is left dirty meanwhile. Where the system has no such
/// advice, this does nothing and starts no thread.
///
/// The thread keeps the default priority. At Linux's `SCHED_IDLE` (tried 2026-12-01) it
/// no longer drew the woken receiver onto the sender's core on a loopback of two cores,
/// and two idle cores were kept busier (92–94.5% against 87–92.6%); but beside two busy
/// loops it was starved while it held the file's pages in the middle of its advice, and
/// the receiver's last sync waited for it: 1.5–14.6 s after the sender had finished,
/// against at most 9 ms.
#[derive(Debug, Default)]
pub struct WriteBehind {
    /// The thread's queue, and the flag that tells it to leave what waits there.
    worker: Option<(SyncSender<Advice>, Arc<AtomicBool>)>,
    /// No thread could be started: the advice is given on the caller's thread.
    inline: bool,
    /// The newest mark of the file being written whose advice was handed over (or given).
    handed: u64,
}

/// The write-behind thread's name, as tools that list threads show it.
const THREAD_NAME: &str = "ferry-write-behind";

/// A file, and the marks its writes passed since the last advice: `(from, to]`.
type Advice = (File, u64, u64);

/// Pieces of advice that may wait for the write-behind thread.
const QUEUED: usize = 4;

impl WriteBehind {
    /// The newest write to `file` passed `mark`, a multiple of [`WRITE_BEHIND`]: every
    /// window up to it is advised (see above). A file's marks rise; a mark not above the
    /// last one handed over starts another file.
    pub fn passed(&mut self, file: &File, mark: u64) {
        if !ADVISED {
            return;
        }
        if mark <= self.handed {
            self.handed = 0;
        }
        let from = self.handed;
        if self.worker.is_none() && !self.inline {
            let (jobs, queue) = sync_channel::<Advice>(QUEUED);
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            let spawned = std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    for (file, from, to) in queue {
                        if stopped.load(Ordering::Relaxed) {
                            break;
                        }
                        advise(&file, from, to);
                    }
                });
            match spawned {
                Ok(_) => self.worker = Some((jobs, stop)),
                Err(_) => self.inline = true,
            }
        }
        if let Some((jobs, _)) = &self.worker
            && let Ok(own) = file.try_clone()
        {
            match jobs.try_send((own, from, mark)) {
                Ok(()) => self.handed = mark,
                // Given with the next mark that finds room.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    self.worker = None;
                    self.inline = true;
                    self.give(file, from, mark);
                }
            }
            return;
        }
        self.give(file, from, mark);
    }

    /// Advises on the caller's thread.
    fn give(&mut self, file: &File, from: u64, to: u64) {
        advise(file, from, to);
        self.handed = to;
    }
}

/// What the marks `(from, to]` advise: the windows that end at them are written out,
/// `[from, to)`, and the windows two before each, `[from - 2W, to - 2W)` (clipped at the
/// file's start), are dropped.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn advice(from: u64, to: u64) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
    let back = 2 * WRITE_BEHIND;
    (from..to, from.saturating_sub(back)..to.saturating_sub(back))
}

/// Advice still waiting is left, and nobody waits for the thread: it ends after the
/// advice it is giving, which is optional (held by a slow disk, each piece may take tens
/// of milliseconds, and the receiver's end would wait for them all).
impl Drop for WriteBehind {
    fn drop(&mut self) {
        if let Some((_, stop)) = self.worker.take() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// True where the system takes write-behind advice.
const ADVISED: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd"
));

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn advise(file: &File, from: u64, to: u64) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let (write_out, drop) = advice(from, to);
    for range in [write_out, drop] {
        let (Ok(start), Ok(len)) = (
            i64::try_from(range.start),
            i64::try_from(range.end - range.start),
        ) else {
            continue;
        };
        if len > 0 {
            // Advice only: a refusal costs speed, never data.
            let _ = posix_fadvise(file, start, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn advise(_file: &File, _from: u64, _to: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_and_folder_written_is_synced_and_a_link_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/data"), b"bytes").unwrap();
        let dir = Dir::open_path(root.path()).unwrap();
        let mut written = Written::default();
        written.files.insert("sub/data".into());
        written.files.insert("sub/renamed-since".into());
        written.dirs.insert("sub".into());
        written.dirs.insert(String::new());
        sync_each(&dir, &written).unwrap();

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", root.path().join("sub/link")).unwrap();
            let mut linked = Written::default();
            linked.files.insert("sub/link".into());
            let refused = sync_each(&dir, &linked).unwrap_err();
            assert!(refused.to_string().contains("symbolic link"), "{refused}");
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    #[test]
    fn advice_after_a_gap_covers_every_window_its_marks_would_have() {
        let w = WRITE_BEHIND;
        // One mark: the window ending there is written out, the one two back dropped.
        assert_eq!(advice(0, w), (0..w, 0..0));
        assert_eq!(advice(2 * w, 3 * w), (2 * w..3 * w, 0..w));
        assert_eq!(advice(9 * w, 10 * w), (9 * w..10 * w, 7 * w..8 * w));
        // Marks that waited for room go together: the union of what each would advise.
        for (from, to) in [(0, 5 * w), (3 * w, 9 * w), (w, 2 * w)] {
            let (write_out, dropped) = advice(from, to);
            let mut written = vec![];
            let mut each_dropped = vec![];
            for mark in (from / w + 1..=to / w).map(|n| n * w) {
                let (one_out, one_dropped) = advice(mark - w, mark);
                written.extend(one_out.step_by(w as usize));
                each_dropped.extend(one_dropped.step_by(w as usize));
            }
            assert_eq!(write_out.step_by(w as usize).collect::<Vec<_>>(), written);
            assert_eq!(
                dropped.step_by(w as usize).collect::<Vec<_>>(),
                each_dropped
            );
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    #[test]
    fn a_writer_never_waits_for_a_held_write_behind_thread_and_no_mark_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        let file = File::create(root.path().join("big.part")).unwrap();
        // A write-behind thread held (as by a throttled disk) until told to go on.
        let (jobs, queue) = sync_channel::<Advice>(QUEUED);
        let (go_on, held) = std::sync::mpsc::channel::<()>();
        let (seen, advised) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            held.recv().unwrap();
            for (_, from, to) in queue {
                seen.send((from, to)).unwrap();
            }
        });
        let mut write_behind = WriteBehind {
            worker: Some((jobs, Arc::new(AtomicBool::new(false)))),
            ..WriteBehind::default()
        };
        let marks = 3 * QUEUED as u64;
        for n in 1..=marks {
            // Returns at once although nobody takes the advice.
            write_behind.passed(&file, n * WRITE_BEHIND);
        }
        go_on.send(()).unwrap();
        let mut ranges: Vec<(u64, u64)> = advised.iter().take(QUEUED).collect();
        // Room again: the marks that found none go with the next one.
        write_behind.passed(&file, (marks + 1) * WRITE_BEHIND);
        drop(write_behind);
        ranges.extend(advised.iter());
        assert_eq!(ranges.len(), QUEUED + 1, "{ranges:?}");
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges.last().unwrap().1, (marks + 1) * WRITE_BEHIND);
        assert!(
            ranges.windows(2).all(|pair| pair[0].1 == pair[1].0),
            "every mark advised once, in order: {ranges:?}"
        );
    }

    /// Names of this process's threads, where the system lists them.
    #[cfg(target_os = "linux")]
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// Waits until `done` holds, for at most 10 s (the caller's assertion then fails).
    #[cfg(target_os = "linux")]
    fn eventually(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn write_behind_runs_beside_the_writer_on_its_own_handle_and_ends_after_it() {
        // What the system keeps of the name: 15 bytes.
        let thread = &THREAD_NAME[..15];
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("big.part");
        let data: Vec<u8> = (0..(6 * WRITE_BEHIND) as usize).map(|i| i as u8).collect();
        let mut write_behind = WriteBehind::default();
        assert!(!thread_names().iter().any(|name| name == thread));
        for (window, chunk) in data.chunks(WRITE_BEHIND as usize).enumerate() {
            // A handle of the writer's own each time, closed at once: the advice holds
            // its own.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut &file, chunk).unwrap();
            write_behind.passed(&file, (window as u64 + 1) * WRITE_BEHIND);
        }
        // The writer does not wait for the thread to start.
        eventually(|| thread_names().iter().any(|name| name == thread));
        assert!(thread_names().iter().any(|name| name == thread));
        // Renamed while advice may still be waiting: the bytes are what was written.
        let done = root.path().join("big");
        std::fs::rename(&path, &done).unwrap();
        drop(write_behind);
        // Nobody waits for the thread; it ends of itself.
        eventually(|| !thread_names().iter().any(|name| name == thread));
        assert!(!thread_names().iter().any(|name| name == thread));
        assert!(std::fs::read(&done).unwrap() == data);
    }
}
