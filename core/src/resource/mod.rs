//! Reticulum-style Resources: how a segment of the batch stream is advertised, requested
//! by map hash, and proven.

pub mod hash;
pub mod wire;

pub use hash::{SegmentHasher, map_hash, part_map_hash, resource_hash, resource_proof};
pub use wire::{Advertisement, HashmapUpdate, Proof, Request, WireError};
