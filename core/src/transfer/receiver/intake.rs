//! The manifest as it arrives: its header, then its entries, until it is whole.

use crate::transfer::manifest::Manifest;
use crate::transfer::violation::{manifest_rule, out_of_order};
use crate::transfer::wire::{Entries, ManifestBegin, PART_HEADER_LEN};
use crate::transfer::{MAX_PART_SIZE, MIN_PART_SIZE, TransferConfig, TransferError};

/// The manifest being received: what its header announced.
pub(super) struct Intake {
    /// The largest message either side may send on this connection (the smaller of
    /// the two record limits): a part must fit in one.
    message_limit: usize,
    expected: u64,
    path_bytes: u64,
    total_bytes: u64,
}

impl Intake {
    pub(super) fn new(message_limit: usize) -> Self {
        Intake {
            message_limit,
            expected: 0,
            path_bytes: 0,
            total_bytes: 0,
        }
    }

    /// The header: sizes the manifest (within this receiver's limits) and returns the
    /// sender's part size.
    pub(super) fn begin(
        &mut self,
        manifest: &mut Manifest,
        begin: ManifestBegin,
        config: &TransferConfig,
    ) -> Result<usize, TransferError> {
        if self.expected != 0 || !manifest.is_empty() {
            return Err(out_of_order("a second manifest header"));
        }
        let part_size = usize::try_from(begin.part_size).unwrap_or(usize::MAX);
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(manifest_rule(
                "the sender's part size is not within 1 KiB..64 KiB",
            ));
        }
        if part_size + PART_HEADER_LEN > self.message_limit {
            return Err(manifest_rule(
                "the sender's part size does not fit in one record of the smaller record limit",
            ));
        }
        *manifest = Manifest::with_capacity(begin.entries, begin.path_bytes, &config.manifest)?;
        self.expected = begin.entries;
        self.path_bytes = begin.path_bytes;
        self.total_bytes = begin.total_bytes;
        Ok(part_size)
    }

    /// More entries, each checked as it is added.
    pub(super) fn entries(
        &mut self,
        manifest: &mut Manifest,
        entries: &Entries<'_>,
        config: &TransferConfig,
    ) -> Result<(), TransferError> {
        if self.expected == 0 {
            return Err(out_of_order(
                "manifest entries before the manifest header or after the whole manifest",
            ));
        }
        entries.for_each(|entry| {
            if manifest.remaining_capacity() == 0 {
                return Err(manifest_rule(
                    "more manifest entries than the header announced",
                ));
            }
            manifest
                .push(entry, &config.manifest)
                .map_err(TransferError::from)
        })
    }

    /// True once every announced entry is in, and the tree they make is sound.
    pub(super) fn is_complete(&self, manifest: &Manifest) -> Result<bool, TransferError> {
        if (manifest.len() as u64) < self.expected {
            return Ok(false);
        }
        if manifest.path_bytes() as u64 != self.path_bytes {
            return Err(manifest_rule(
                "the paths' lengths do not add up to the header's path_bytes",
            ));
        }
        if manifest.total_bytes() != self.total_bytes {
            return Err(manifest_rule(
                "the files' sizes do not add up to the header's total_bytes",
            ));
        }
        manifest.check_tree()?;
        Ok(true)
    }
}
