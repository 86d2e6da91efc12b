//! The manifest as it arrives: its header, then its entries, until it is whole.

use crate::transfer::manifest::Manifest;
use crate::transfer::violation::{manifest_rule, out_of_order};
use crate::transfer::wire::{Entries, ManifestBegin};
use crate::transfer::{TransferConfig, TransferError};

/// The manifest being received: how many entries its header announced.
#[derive(Default)]
pub(super) struct Intake {
    expected: u64,
}

impl Intake {
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
        if part_size < 1024 || part_size > config.part_size.max(1024) {
            return Err(manifest_rule(
                "the sender's part size is below 1 KiB or above this receiver's limit",
            ));
        }
        *manifest = Manifest::with_capacity(begin.entries, begin.path_bytes, &config.manifest)?;
        self.expected = begin.entries;
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
        manifest.check_tree()?;
        Ok(true)
    }
}
