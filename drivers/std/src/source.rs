//! The sender's files: turning command-line paths into a manifest, and reading them.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_core::transfer::{
    DiskError, EntryKind, FileMeta, Manifest, ManifestEntry, ManifestLimits, manifest::check_path,
};

use crate::error::{DriverError, disk_error};

/// What the sender serves: the manifest and where each entry lives on disk.
#[derive(Clone, Debug)]
pub struct SourceTree {
    /// The batch as the receiver will see it.
    pub manifest: Manifest,
    /// Local path of each entry, by manifest index.
    pub paths: Vec<PathBuf>,
    /// Modification time (ns) of each file when scanned: a read that finds another one
    /// means the file changed under us.
    pub scanned: Vec<i128>,
    /// Things that were left out, with why (symlinks, sockets, ...).
    pub skipped: Vec<String>,
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

impl SourceTree {
    /// Walks `roots` like `scp -r`: each root is sent under its own name; directories
    /// are recursed in name order and sent as entries too, so empty ones arrive.
    pub fn scan(roots: &[PathBuf], limits: &ManifestLimits) -> Result<Self, DriverError> {
        let mut entries = Vec::new();
        let mut paths = Vec::new();
        let mut scanned = Vec::new();
        let mut skipped = Vec::new();
        for root in roots {
            let meta = fs::symlink_metadata(root).map_err(|e| DriverError::Source {
                path: root.display().to_string(),
                why: e.to_string(),
            })?;
            let name = root
                .file_name()
                .map(ToOwned::to_owned)
                .or_else(|| {
                    root.canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(ToOwned::to_owned))
                })
                .ok_or_else(|| DriverError::Source {
                    path: root.display().to_string(),
                    why: "it has no file name to send it under".into(),
                })?;
            let Some(name) = name.to_str().map(ToOwned::to_owned) else {
                skipped.push(refused_name(root, "its name is not valid UTF-8"));
                continue;
            };
            if let Err(rule) = check_path(&name, limits) {
                skipped.push(refused_name(root, &rule.to_string()));
                continue;
            }
            let meta = if meta.file_type().is_symlink() {
                fs::metadata(root).map_err(|e| DriverError::Source {
                    path: root.display().to_string(),
                    why: e.to_string(),
                })?
            } else {
                meta
            };
            walk(
                root,
                &name,
                &meta,
                limits,
                &mut Found {
                    entries: &mut entries,
                    paths: &mut paths,
                    scanned: &mut scanned,
                    skipped: &mut skipped,
                },
            )?;
        }
        let manifest = Manifest::from_entries(&entries, limits)?;
        Ok(SourceTree {
            manifest,
            paths,
            scanned,
            skipped,
        })
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

/// What a scan has found so far.
struct Found<'a> {
    entries: &'a mut Vec<ManifestEntry>,
    paths: &'a mut Vec<PathBuf>,
    scanned: &'a mut Vec<i128>,
    skipped: &'a mut Vec<String>,
}

fn walk(
    path: &Path,
    relative: &str,
    meta: &fs::Metadata,
    limits: &ManifestLimits,
    found: &mut Found<'_>,
) -> Result<(), DriverError> {
    let Found {
        entries,
        paths,
        scanned,
        skipped,
    } = found;
    let source_error = |e: std::io::Error| DriverError::Source {
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let kind = if meta.is_dir() {
        EntryKind::Directory
    } else if meta.is_file() {
        EntryKind::File
    } else {
        skipped.push(format!(
            "{}: not a regular file or directory",
            path.display()
        ));
        return Ok(());
    };
    entries.push(ManifestEntry {
        path: relative.to_owned(),
        kind,
        size: if kind == EntryKind::File {
            meta.len()
        } else {
            0
        },
        mode: meta.permissions().mode() & 0o7777,
        mtime: meta.mtime(),
        sha256: None,
    });
    paths.push(path.to_owned());
    scanned.push(mtime_ns(meta));
    if kind == EntryKind::Directory {
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(source_error)?
            .collect::<Result<_, _>>()
            .map_err(source_error)?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let child_path = child.path();
            let child_meta = fs::symlink_metadata(&child_path).map_err(source_error)?;
            if child_meta.file_type().is_symlink() {
                skipped.push(format!(
                    "{}: a symbolic link (not followed)",
                    child_path.display()
                ));
                continue;
            }
            let Some(name) = child.file_name().to_str().map(ToOwned::to_owned) else {
                skipped.push(refused_name(&child_path, "its name is not valid UTF-8"));
                continue;
            };
            let child_relative = format!("{relative}/{name}");
            if let Err(rule) = check_path(&child_relative, limits) {
                skipped.push(refused_name(&child_path, &rule.to_string()));
                continue;
            }
            walk(
                &child_path,
                &child_relative,
                &child_meta,
                limits,
                &mut Found {
                    entries,
                    paths,
                    scanned,
                    skipped,
                },
            )?;
        }
    }
    Ok(())
}

/// Reads source files for the core, keeping the current file open, and reports a file
/// that changed since its attempt began as a short read, so the core ends that attempt
/// and the receiver asks for the file again.
#[derive(Debug)]
pub struct SourceReader {
    tree: SourceTree,
    open: Option<(usize, File)>,
    /// Per entry: the size and mtime (ns) its current attempt began with: the scan's for
    /// the first attempt, the reopen's for a later one.
    expected: Vec<(u64, i128)>,
}

impl SourceReader {
    /// A reader over `tree`.
    pub fn new(tree: SourceTree) -> Self {
        let expected = tree
            .manifest
            .iter()
            .zip(&tree.scanned)
            .map(|(entry, mtime)| (entry.size, *mtime))
            .collect();
        SourceReader {
            tree,
            open: None,
            expected,
        }
    }

    /// Looks at `entry`'s file afresh for its next attempt: its size and mtime now, which
    /// that attempt's reads are judged against.
    pub fn reopen(&mut self, entry: usize) -> Result<FileMeta, DiskError> {
        self.open = None;
        let path = self
            .tree
            .paths
            .get(entry)
            .ok_or_else(|| disk_error(&std::io::Error::other("no such entry")))?;
        let file = File::open(path).map_err(|e| disk_error(&e))?;
        let meta = file.metadata().map_err(|e| disk_error(&e))?;
        if !meta.is_file() {
            return Err(disk_error(&std::io::Error::other(
                "it is no longer a regular file",
            )));
        }
        self.expected[entry] = (meta.len(), mtime_ns(&meta));
        self.open = Some((entry, file));
        Ok(FileMeta {
            size: meta.len(),
            mtime: meta.mtime(),
        })
    }

    /// The tree being served.
    pub fn tree(&self) -> &SourceTree {
        &self.tree
    }

    /// Fills `buf` from `entry` at `offset`; returns the bytes read, fewer when the file
    /// is shorter or changed.
    pub fn read(&mut self, entry: usize, offset: u64, buf: &mut [u8]) -> Result<usize, DiskError> {
        let path = self
            .tree
            .paths
            .get(entry)
            .ok_or_else(|| disk_error(&std::io::Error::other("no such entry")))?;
        if self.open.as_ref().is_none_or(|(e, _)| *e != entry) {
            let file = File::open(path).map_err(|e| disk_error(&e))?;
            self.open = Some((entry, file));
        }
        let Some((_, file)) = self.open.as_ref() else {
            return Ok(0);
        };
        let expected = self.expected[entry];
        let unchanged = |meta: &fs::Metadata| (meta.len(), mtime_ns(meta)) == expected;
        if !unchanged(&file.metadata().map_err(|e| disk_error(&e))?) {
            return Ok(0);
        }
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(disk_error(&e)),
            }
        }
        if !unchanged(&file.metadata().map_err(|e| disk_error(&e))?) {
            return Ok(0);
        }
        Ok(filled)
    }
}
