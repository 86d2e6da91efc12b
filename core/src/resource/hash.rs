//! The hashes that identify and check a Resource, as RNS defines them, and the name Ferry
//! gives a part (PROTOCOL.md §7).

use sha2::{Digest, Sha256};

use super::wire::{MAP_HASH_LEN, RANDOM_HASH_LEN, RESOURCE_HASH_LEN};

/// RNS's name for a part in the hashmap: the first 4 bytes of SHA-256(part ‖ random_hash).
pub fn map_hash(part: &[u8], random_hash: &[u8; RANDOM_HASH_LEN]) -> [u8; MAP_HASH_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(part);
    hasher.update(random_hash);
    let digest = hasher.finalize();
    let mut out = [0u8; MAP_HASH_LEN];
    out.copy_from_slice(&digest[..MAP_HASH_LEN]);
    out
}

/// Ferry's name for part `index` of a segment: [`map_hash`] over the index (big-endian
/// u32) rather than the part's bytes. Parts travel in authenticated records and the
/// segment hash binds their content, so a name needs no pass over the data.
pub fn part_map_hash(index: u32, random_hash: &[u8; RANDOM_HASH_LEN]) -> [u8; MAP_HASH_LEN] {
    map_hash(&index.to_be_bytes(), random_hash)
}

/// RNS's resource hash `h` = SHA-256(data ‖ random_hash), over the uncompressed data.
pub fn resource_hash(data: &[u8], random_hash: &[u8; RANDOM_HASH_LEN]) -> [u8; RESOURCE_HASH_LEN] {
    let mut hasher = SegmentHasher::new();
    hasher.update(data);
    hasher.finish(random_hash).0
}

/// The proof SHA-256(data ‖ resource_hash) a receiver returns for a whole segment.
pub fn resource_proof(data: &[u8], resource_hash: &[u8; RESOURCE_HASH_LEN]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.update(resource_hash);
    hasher.finalize().into()
}

/// Computes a segment's hash and its proof in one pass over what they cover: the SHA-256
/// state after it is cloned and finished twice, once with the random hash (giving `h`)
/// and once with `h` (giving the proof). RNS feeds it the segment's data; Ferry feeds it
/// the segment's pieces, each bound to its file's hash (PROTOCOL.md §6.3).
#[derive(Clone, Default)]
pub struct SegmentHasher(Sha256);

impl SegmentHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        SegmentHasher(Sha256::new())
    }

    /// Adds the next bytes of what the hash covers.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// `(h, proof)` for the data so far.
    pub fn finish(
        self,
        random_hash: &[u8; RANDOM_HASH_LEN],
    ) -> ([u8; RESOURCE_HASH_LEN], [u8; 32]) {
        let mut for_hash = self.0.clone();
        for_hash.update(random_hash);
        let hash: [u8; RESOURCE_HASH_LEN] = for_hash.finalize().into();
        let mut for_proof = self.0;
        for_proof.update(hash);
        (hash, for_proof.finalize().into())
    }
}
