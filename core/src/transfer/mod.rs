//! The transfer engine: moves a batch of files over a [`crate::Channel`].

pub mod manifest;

pub use manifest::{
    Entry, EntryKind, Manifest, ManifestEntry, ManifestError, ManifestLimits, PathRule,
};
