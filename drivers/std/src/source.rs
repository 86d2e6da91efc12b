//! The sender's files: turning command-line paths into a manifest, and reading them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::transfer::manifest::check_path;
use ferry_core::transfer::{
    DiskError, Entry, EntryKind, FileMeta, Manifest, ManifestBuilder, ManifestLimits, Storage,
    Target,
};

use crate::error::{DriverError, disk_error};
use crate::os::dir::{Dir, Kind, LONG_PATH, open_long_file};
use crate::os::io::{read_full_at, wait_for_write_under_way};
use crate::os::meta::{mode_of, mtime_ns, ns_from_time};

/// What the sender serves: the manifest and where each entry lives on disk. Kept small
/// (a few bytes an entry besides the manifest): a batch may hold a million files.
#[derive(Clone, Debug)]
pub struct SourceTree {
    /// The batch as the receiver will see it (shared with the sessions that serve it).
    pub manifest: Arc<Manifest>,
    /// Each root as given on the command line, with the index of its first entry: an
    /// entry's local path is its root followed by the rest of its relative path.
    roots: Vec<(PathBuf, usize)>,
    /// Things that were left out, with why (symlinks, sockets, names the protocol cannot
    /// carry).
    pub skipped: Vec<String>,
    /// Things below the paths given that could not be looked at or listed (permission
    /// denied, say), with why: left out, and the send then ends as one with files that
    /// could not be read.
    pub unreadable: Vec<String>,
}

impl SourceTree {
    /// Walks `roots` like `scp -r`: each root is sent under its own name; directories
    /// are recursed in name order and sent as entries too, so empty ones arrive.
    pub fn scan(roots: &[PathBuf], limits: &ManifestLimits) -> Result<Self, DriverError> {
        let mut scan = Scan {
            builder: ManifestBuilder::new(*limits),
            limits: *limits,
            skipped: Vec::new(),
            unreadable: Vec::new(),
        };
        let mut scanned_roots = Vec::new();
        // Each root's name, and the path it came from: two that share one would arrive
        // as one.
        let mut names: std::collections::HashMap<String, &PathBuf> =
            std::collections::HashMap::new();
        for root in roots {
            let source_error = |e: std::io::Error| DriverError::Source {
                path: root.display().to_string(),
                why: e.to_string(),
            };
            let meta = fs::symlink_metadata(root).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DriverError::NoSuchPath(root.display().to_string()),
                _ => source_error(e),
            })?;
            let name = root
                .file_name()
                .map(ToOwned::to_owned)
                .or_else(|| {
                    root.canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(ToOwned::to_owned))
                })
                .ok_or_else(|| {
                    DriverError::Paths(format!(
                        "cannot send {}: it has no name to send it under; send what is in it instead",
                        root.display()
                    ))
                })?;
            let Some(name) = name.to_str().map(ToOwned::to_owned) else {
                scan.skipped
                    .push(refused_name(root, "its name is not valid UTF-8"));
                continue;
            };
            if let Err(rule) = check_path(&name, limits) {
                scan.skipped.push(refused_name(root, &rule.to_string()));
                continue;
            }
            if let Some(first) = names.insert(name.clone(), root) {
                return Err(DriverError::Paths(format!(
                    "{} and {} would both arrive as {name}; send one of them, or from a folder that holds both",
                    first.display(),
                    root.display()
                )));
            }
            // A root that is a link is the user's choice: it is followed.
            let meta = if meta.file_type().is_symlink() {
                fs::metadata(root).map_err(source_error)?
            } else {
                meta
            };
            scanned_roots.push((root.clone(), scan.builder.len()));
            scan.walk(root, &name, &meta, true)?;
        }
        Ok(SourceTree {
            manifest: Arc::new(scan.builder.finish()?),
            roots: scanned_roots,
            skipped: scan.skipped,
            unreadable: scan.unreadable,
        })
    }

    /// Where `entry` lives on this machine.
    pub fn local_path(&self, entry: usize) -> Option<PathBuf> {
        let (_, root, below) = self.place(entry)?;
        Some(if below.is_empty() {
            root.to_owned()
        } else {
            root.join(below)
        })
    }

    /// The path the user gave that holds `entry` (its place among them, and the path),
    /// and where below it `entry` lies (`""` for that path itself).
    fn place(&self, entry: usize) -> Option<(usize, &Path, &str)> {
        let relative = self.manifest.get(entry)?.path;
        let at = self
            .roots
            .partition_point(|(_, first)| *first <= entry)
            .checked_sub(1)?;
        let (root, _) = self.roots.get(at)?;
        // The relative path is the root's name, then the rest below it.
        Some((
            at,
            root,
            relative.split_once('/').map_or("", |(_, rest)| rest),
        ))
    }

    /// The size and mtime `entry` had when it was scanned: a read that finds another
    /// means the file changed under us.
    fn scanned(&self, entry: usize) -> Option<(u64, i64)> {
        let item = self.manifest.get(entry)?;
        Some((item.size, item.mtime_ns))
    }
}

/// The warning for a file whose name the protocol cannot carry (PROTOCOL.md §6.1): it is
/// left out, and the rest is sent. The path is shown escaped (a name may hold a newline).
fn refused_name(path: &Path, why: &str) -> String {
    format!(
        "{}: {why}; a name the protocol cannot carry",
        ferry_core::text::shown(&path.to_string_lossy())
    )
}

/// A name in a directory being scanned, as found without following it.
// Kept only while one directory is listed; boxing the metadata would cost an allocation
// per file of a million-file scan.
#[allow(clippy::large_enum_variant)]
enum Child {
    Link,
    /// A FIFO, a socket, a device: not sent.
    Other,
    Found(fs::Metadata),
    /// Removed between the listing of its folder and the look at it.
    Gone,
    /// It could not be looked at, for this reason.
    Unreadable(std::io::Error),
}

/// What a child of a folder being listed is, from the look at it.
fn child_of(looked: std::io::Result<fs::Metadata>) -> Child {
    match looked {
        Ok(meta) if meta.file_type().is_symlink() => Child::Link,
        Ok(meta) => Child::Found(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Child::Gone,
        Err(e) => Child::Unreadable(e),
    }
}

/// The names in the directory at `path` and what each is. A path too long for the
/// system to take whole is listed through directory handles (a relative path the
/// protocol allows may be 4,096 bytes long by itself).
fn list(path: &Path) -> std::io::Result<Vec<(OsString, Child)>> {
    if path.as_os_str().len() < LONG_PATH {
        return fs::read_dir(path)?
            .map(|child| {
                let child = child?;
                Ok((
                    child.file_name(),
                    child_of(fs::symlink_metadata(child.path())),
                ))
            })
            .collect();
    }
    let dir = Dir::open_long(path)?;
    let mut children = Vec::new();
    for name in dir.names()? {
        // Names that are not UTF-8 are refused by the caller, by name; none is opened.
        let found = match name.to_str() {
            None => Child::Other,
            Some(text) => match dir.stat(text).map(|found| found.map(|f| f.kind)) {
                Ok(None) => Child::Gone,
                Err(e) => child_of(Err(e)),
                Ok(Some(Kind::Link)) => Child::Link,
                Ok(Some(Kind::Other)) => Child::Other,
                Ok(Some(Kind::Dir)) => {
                    child_of(dir.open_dir(text).and_then(|d| d.as_file().metadata()))
                }
                Ok(Some(Kind::File { .. })) => {
                    child_of(dir.open_file(text, false).and_then(|f| f.metadata()))
                }
            },
        };
        children.push((name, found));
    }
    Ok(children)
}

/// True if the file at `path`, whose size reads as 0, has bytes to read all the same (a
/// file of /proc: its size is not known until it is read). Sent as its size says, it
/// would arrive empty, and both sides would call that a success.
fn has_content(path: &Path) -> bool {
    use std::io::Read;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    // A FIFO swapped in since the look at it must not hold the listing up.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options
        .open(path)
        .is_ok_and(|mut file| file.read(&mut [0u8; 1]).is_ok_and(|n| n > 0))
}

/// A scan in progress.
struct Scan {
    builder: ManifestBuilder,
    limits: ManifestLimits,
    skipped: Vec<String>,
    unreadable: Vec<String>,
}

impl Scan {
    /// Adds the file or folder at `path` (a `root` given by the user, or found below
    /// one) and, for a folder, everything in it. A folder below the roots that cannot be
    /// listed is left out whole, and said; a root that cannot be is an error.
    fn walk(
        &mut self,
        path: &Path,
        relative: &str,
        meta: &fs::Metadata,
        root: bool,
    ) -> Result<(), DriverError> {
        let source_error = |e: std::io::Error| DriverError::Source {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        let kind = if meta.is_dir() {
            EntryKind::Directory
        } else if meta.is_file() {
            EntryKind::File
        } else {
            self.skipped.push(format!(
                "{}: not a regular file or directory",
                path.display()
            ));
            return Ok(());
        };
        if kind == EntryKind::File && meta.len() == 0 && has_content(path) {
            self.unreadable.push(format!(
                "{}: its size reads as 0 but it has content (a /proc file?), so what to send cannot be known",
                path.display()
            ));
            return Ok(());
        }
        let children = match kind {
            EntryKind::Directory => match list(path) {
                Ok(children) => children,
                Err(e) if !root => {
                    self.unreadable
                        .push(format!("{}: cannot list it: {e}", path.display()));
                    return Ok(());
                }
                Err(e) => return Err(source_error(e)),
            },
            _ => Vec::new(),
        };
        self.builder.push(Entry {
            path: relative,
            kind,
            size: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            mode: mode_of(meta),
            mtime_ns: mtime_ns(meta),
            sha256: None,
        })?;
        if kind == EntryKind::Directory {
            let mut children = children;
            children.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, child) in children {
                let child_path = path.join(&name);
                let child_meta = match child {
                    Child::Link => {
                        self.skipped.push(format!(
                            "{}: a symbolic link (not followed)",
                            child_path.display()
                        ));
                        continue;
                    }
                    Child::Other => {
                        self.skipped.push(format!(
                            "{}: not a regular file or directory",
                            child_path.display()
                        ));
                        continue;
                    }
                    Child::Found(meta) => meta,
                    Child::Gone => {
                        self.skipped.push(format!(
                            "{}: removed while its folder was listed",
                            child_path.display()
                        ));
                        continue;
                    }
                    Child::Unreadable(e) => {
                        self.unreadable
                            .push(format!("{}: cannot look at it: {e}", child_path.display()));
                        continue;
                    }
                };
                let Some(name) = name.to_str().map(ToOwned::to_owned) else {
                    self.skipped
                        .push(refused_name(&child_path, "its name is not valid UTF-8"));
                    continue;
                };
                let child_relative = format!("{relative}/{name}");
                if let Err(rule) = check_path(&child_relative, &self.limits) {
                    self.skipped
                        .push(refused_name(&child_path, &rule.to_string()));
                    continue;
                }
                self.walk(&child_path, &child_relative, &child_meta, false)?;
            }
        }
        Ok(())
    }
}

/// Reads source files for the core, keeping the current file open, and reports a file
/// that changed since its attempt began as a short read, so the core ends that attempt
/// and the receiver asks for the file again.
#[derive(Debug)]
pub struct SourceReader {
    tree: SourceTree,
    open: Option<(usize, File)>,
    /// The folder of the last file opened below a path the user gave (which of those
    /// paths, and the folder below it), opened through handles: files are read in the
    /// manifest's order, so most share it.
    folder: Option<(usize, String, Dir)>,
    /// The size and mtime (ns) of the files reopened for a later attempt; the others are
    /// judged against their scan.
    reopened: HashMap<usize, (u64, i64)>,
}

impl SourceReader {
    /// A reader over `tree`.
    pub fn new(tree: SourceTree) -> Self {
        SourceReader {
            tree,
            open: None,
            folder: None,
            reopened: HashMap::new(),
        }
    }

    /// The tree being served.
    pub fn tree(&self) -> &SourceTree {
        &self.tree
    }

    /// Opens `entry` to read it. A path the user gave is opened as the system finds it (a
    /// link there is their choice, and the listing followed it); anything below it is
    /// reached folder by folder through handles that follow no link, so that a file or
    /// folder swapped for a link after the listing is refused, never read through (it
    /// could lead to any file the sender can read).
    fn open_entry(&mut self, entry: usize) -> Result<File, DiskError> {
        let (root_index, root, below) = self
            .tree
            .place(entry)
            .ok_or_else(|| disk_error(&std::io::Error::other("no such entry")))?;
        if below.is_empty() {
            return open_long_file(root).map_err(|e| disk_error(&e));
        }
        open_below(&mut self.folder, root_index, root, below)
    }
}

/// Opens the file at `below` under the path the user gave (`root`, the `root_index`th),
/// through `folder_cache`'s handle where it is the same folder.
fn open_below(
    folder_cache: &mut Option<(usize, String, Dir)>,
    root_index: usize,
    root: &Path,
    below: &str,
) -> Result<File, DiskError> {
    let (parent, name) = below.rsplit_once('/').unwrap_or(("", below));
    let cached =
        matches!(&*folder_cache, Some((at, folder, _)) if *at == root_index && folder == parent);
    if !cached {
        let top = Dir::open_long(root).map_err(|e| disk_error(&e))?;
        let folder = if parent.is_empty() {
            top
        } else {
            top.open_dir_path(parent).map_err(|e| disk_error(&e))?
        };
        *folder_cache = Some((root_index, parent.to_owned(), folder));
    }
    match folder_cache {
        Some((_, _, folder)) => folder.open_file(name, false).map_err(|e| disk_error(&e)),
        None => Err(disk_error(&std::io::Error::other("no folder"))),
    }
}

/// True if a file whose mtime is `mtime_ns` changed in the last minute (or is dated
/// ahead of the clock): a write that changed it could still be under way. An older file
/// is read without the wait, a system call per file saved.
fn changed_lately(mtime_ns: i64) -> bool {
    let now = ns_from_time(std::time::SystemTime::now());
    now.saturating_sub(mtime_ns) < 60_000_000_000
}

/// The sender's storage: the source files.
impl Storage for SourceReader {
    /// Looks at the file afresh for its next attempt: its size and mtime now, which that
    /// attempt's reads are judged against.
    fn reopen(&mut self, target: Target<'_>) -> Result<FileMeta, DiskError> {
        let entry = target.index;
        self.open = None;
        let file = self.open_entry(entry)?;
        // It changed a moment ago: the write that changed it may still be under way.
        wait_for_write_under_way(&file);
        let meta = file.metadata().map_err(|e| disk_error(&e))?;
        if !meta.is_file() {
            return Err(disk_error(&std::io::Error::other(
                "it is no longer a regular file",
            )));
        }
        self.reopened.insert(entry, (meta.len(), mtime_ns(&meta)));
        self.open = Some((entry, file));
        Ok(FileMeta {
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        })
    }

    /// Fills `buf` from the file at `offset`; returns the bytes read, fewer when the
    /// file is shorter or changed since its attempt began.
    fn read(
        &mut self,
        target: Target<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, DiskError> {
        let entry = target.index;
        let expected = match self.reopened.get(&entry) {
            Some(expected) => *expected,
            None => self
                .tree
                .scanned(entry)
                .ok_or_else(|| disk_error(&std::io::Error::other("no such entry")))?,
        };
        if self.open.as_ref().is_none_or(|(e, _)| *e != entry) {
            let file = self.open_entry(entry)?;
            if changed_lately(expected.1) {
                wait_for_write_under_way(&file);
            }
            self.open = Some((entry, file));
        }
        let Some((_, file)) = self.open.as_ref() else {
            return Ok(0);
        };
        // Looked at after the read only: a change before it shows then as well (its size
        // or mtime differ from the attempt's all the same), and a look before it was one
        // more system call for every read (a fifth of a small file's).
        let filled = read_full_at(file, buf, offset).map_err(|e| disk_error(&e))?;
        let meta = file.metadata().map_err(|e| disk_error(&e))?;
        if (meta.len(), mtime_ns(&meta)) != expected {
            return Ok(0);
        }
        Ok(filled)
    }
}
