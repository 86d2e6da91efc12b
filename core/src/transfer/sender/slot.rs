//! One segment being prepared and served as a Resource: read, hashed (and maybe
//! compressed), advertised with its layout, and its parts sent as they are requested.

use std::collections::VecDeque;

use crate::entropy::{Entropy, SeededEntropy};
use crate::resource::part_map_hash;
use crate::resource::wire::{Advertisement, MAP_HASH_LEN, Request, flags};
use crate::transfer::manifest::Manifest;
use crate::transfer::violation::segment_rule;
use crate::transfer::wire::{Extent, FileDigest, Layout, Message};
use crate::transfer::work::HashWork;
use crate::transfer::{TransferConfig, TransferError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    Free,
    Reading,
    /// Its SHA-256 pass is under way (its buffer lent to the pass).
    Hashing,
    /// Hashed, waiting to be advertised.
    Ready,
    Advertised,
    /// Given up (rejected) while a refill's reads were out: free once they are in.
    Discarding,
}

pub(super) struct SendSlot {
    pub(super) state: SlotState,
    /// Its place in the stream.
    pub(super) seq: u64,
    /// The segment's bytes: a buffer from the stream's pool, held from the moment the
    /// segment is read until its last part is sent (empty otherwise), and again while
    /// parts lost with a lane are read back and sent again.
    pub(super) buf: Vec<u8>,
    /// Parts lost with a lane wait for the segment to be read again (its buffer went
    /// when its last part was sent): a sender keeps no data for the parts on a lane.
    pub(super) refill: bool,
    /// Uncompressed bytes in the segment.
    pub(super) len: usize,
    /// Bytes sent (compressed or not).
    transfer_len: usize,
    compressed: bool,
    /// The file pieces it holds, each with its place in `buf`.
    pub(super) extents: Vec<(Extent, usize)>,
    pub(super) reads_outstanding: usize,
    digests: Vec<FileDigest>,
    pub(super) hash: [u8; 32],
    pub(super) proof: [u8; 32],
    random: [u8; 4],
    hashmap: Vec<[u8; MAP_HASH_LEN]>,
    /// Per part: queued for sending.
    queued: Vec<bool>,
    /// Parts sent: once all are, the buffer is no longer needed.
    pub(super) parts_sent: usize,
    pub(super) send_queue: VecDeque<u32>,
    /// The hashmap segment the receiver asked for next, if it ran out.
    pub(super) hmu_due: Option<u64>,
    /// Hashmap segments the receiver has (the advertisement's counts as the first).
    hashmap_segments_sent: u64,
    search_hint: usize,
}

impl SendSlot {
    pub(super) fn new(config: &TransferConfig) -> Self {
        let parts = config.parts_per_segment();
        SendSlot {
            state: SlotState::Free,
            seq: 0,
            buf: Vec::new(),
            refill: false,
            len: 0,
            transfer_len: 0,
            compressed: false,
            extents: Vec::with_capacity(config.max_extents_per_segment),
            reads_outstanding: 0,
            digests: Vec::with_capacity(config.max_extents_per_segment),
            hash: [0; 32],
            proof: [0; 32],
            random: [0; 4],
            hashmap: Vec::with_capacity(parts),
            queued: Vec::with_capacity(parts),
            parts_sent: 0,
            send_queue: VecDeque::with_capacity(parts),
            hmu_due: None,
            hashmap_segments_sent: 1,
            search_hint: 0,
        }
    }

    /// The bytes of part `index`.
    pub(super) fn part(&self, index: usize, part_size: usize) -> &[u8] {
        let start = index * part_size;
        &self.buf[start..(start + part_size).min(self.transfer_len)]
    }

    /// The segment's SHA-256 pass (`work`, over its pieces as finally laid out) is done:
    /// takes its bytes back and the file digests and segment hash from it, compresses it
    /// if asked and smaller, and draws the map hashes.
    pub(super) fn seal(
        &mut self,
        work: &mut HashWork,
        manifest: &Manifest,
        config: &TransferConfig,
        scratch: &mut [u8],
        rng: &mut SeededEntropy,
        guard: &mut Vec<[u8; MAP_HASH_LEN]>,
    ) -> Result<(), TransferError> {
        core::mem::swap(&mut self.buf, &mut work.data);
        self.digests.clear();
        for ((extent, _), piece) in self.extents.iter().zip(&work.digests) {
            if piece.ends_file {
                let digest = piece.prefix;
                // Reads that found the file changed dropped their attempt before this;
                // what is left to compare is the manifest's hash, where there is one (a
                // reopened file has none).
                let changed = manifest
                    .get(extent.entry as usize)
                    .and_then(|e| e.sha256)
                    .is_some_and(|promised| promised != digest);
                self.digests.push(FileDigest {
                    entry: extent.entry,
                    attempt: extent.attempt,
                    changed,
                    sha256: digest,
                });
            }
        }
        let segment = core::mem::take(&mut work.segment);
        self.transfer_len = self.len;
        self.compressed = false;
        if config.compress
            && let Some(len) = crate::transfer::bz2::compress(&self.buf[..self.len], scratch)
        {
            self.buf[..len].copy_from_slice(&scratch[..len]);
            self.transfer_len = len;
            self.compressed = true;
        }
        let parts = self.transfer_len.div_ceil(config.part_size);
        // The collision guard: two parts sharing a map hash would make a request
        // ambiguous, so draw a new random hash until they are all distinct.
        for _ in 0..16 {
            rng.fill(&mut self.random);
            self.hashmap.clear();
            self.hashmap
                .extend((0..parts as u32).map(|index| part_map_hash(index, &self.random)));
            guard.clear();
            guard.extend_from_slice(&self.hashmap);
            guard.sort_unstable();
            if !guard.windows(2).any(|pair| pair[0] == pair[1]) {
                break;
            }
        }
        let (hash, proof) = segment.finish(&self.random);
        self.hash = hash;
        self.proof = proof;
        self.queued.clear();
        self.queued.resize(parts, false);
        self.parts_sent = 0;
        self.send_queue.clear();
        self.hmu_due = None;
        self.hashmap_segments_sent = 1;
        self.search_hint = 0;
        self.state = SlotState::Ready;
        Ok(())
    }

    /// The LAYOUT that goes before the advertisement: the pieces and file digests.
    pub(super) fn layout(&self) -> Message<'_> {
        Message::Layout(Layout::sending(self.hash, &self.extents, &self.digests))
    }

    /// The ADV: the segment as a Resource of the batch stream, with its first map hashes.
    pub(super) fn advertisement(
        &self,
        per_message: usize,
        stream_total: u64,
        segment_size: usize,
        first_hash: [u8; 32],
        index: u64,
    ) -> Message<'_> {
        let per_message = per_message.min(self.hashmap.len());
        let estimated = stream_total.div_ceil(segment_size as u64).max(index);
        Message::Adv(Advertisement {
            transfer_size: self.transfer_len as u64,
            data_size: stream_total,
            parts: self.hashmap.len() as u64,
            hash: self.hash,
            random_hash: self.random,
            original_hash: first_hash,
            segment_index: index,
            total_segments: estimated,
            request_id: None,
            flags: (if self.compressed {
                flags::COMPRESSED
            } else {
                0
            }) | (if estimated > 1 { flags::SPLIT } else { 0 }),
            hashmap: self.hashmap[..per_message].as_flattened(),
        })
    }

    /// REQ: queues the parts asked for; a request that says the hashmap ran out asks for
    /// the next hashmap segment.
    pub(super) fn on_request(
        &mut self,
        request: &Request<'_>,
        per_message: usize,
    ) -> Result<(), TransferError> {
        for wanted in request.map_hashes.chunks_exact(MAP_HASH_LEN) {
            let parts = self.hashmap.len();
            let index = (0..parts)
                .map(|i| (self.search_hint + i) % parts)
                .find(|&i| self.hashmap[i] == wanted)
                .ok_or(segment_rule("a request for a part that does not exist"))?;
            self.search_hint = index + 1;
            if !self.queued[index] {
                self.queued[index] = true;
                self.send_queue.push_back(index as u32);
            }
        }
        if let Some(last) = request.exhausted {
            // The receiver holds the hashmap segments sent so far; its last map hash is
            // the last of those.
            let known = self.hashmap_segments_sent as usize * per_message;
            if known >= self.hashmap.len()
                || self.hashmap[known - 1] != last
                || self.hmu_due.is_some()
            {
                return Err(segment_rule(
                    "a hashmap request that does not follow the hashmap sent",
                ));
            }
            self.hmu_due = Some(self.hashmap_segments_sent);
        }
        Ok(())
    }

    /// A part sent on a lane that closed before it arrived: it goes out again, once the
    /// segment's data is back if it was let go.
    pub(super) fn send_again(&mut self, index: u32) -> Result<(), TransferError> {
        if (index as usize) >= self.parts() {
            return Err(segment_rule(
                "a lane loss of a part this segment does not hold",
            ));
        }
        self.send_queue.push_back(index);
        self.parts_sent = self.parts_sent.saturating_sub(1);
        self.refill |= self.buf.is_empty();
        Ok(())
    }

    /// A refill's reads are in: the segment is as it was sealed (compressed again, the
    /// same bytes, if it went compressed). A source that changed since gives other bytes,
    /// which the receiver's hash check rejects as it would any corruption.
    pub(super) fn refilled(&mut self, scratch: &mut [u8]) {
        if self.compressed {
            let len = crate::transfer::bz2::compress(&self.buf[..self.len], scratch)
                .filter(|&len| len == self.transfer_len);
            match len {
                Some(len) => self.buf[..len].copy_from_slice(&scratch[..len]),
                // Not the bytes it had: what goes out fails the receiver's check.
                None => self.buf[..self.transfer_len].fill(0),
            }
        }
        self.refill = false;
    }

    /// Parts the segment has.
    pub(super) fn parts(&self) -> usize {
        self.hashmap.len()
    }

    /// The hashmap segment asked for, as it goes on the wire.
    pub(super) fn hashmap_update(&self, segment: u64, per_message: usize) -> Message<'_> {
        let start = segment as usize * per_message;
        let end = (start + per_message).min(self.hashmap.len());
        Message::Hmu(crate::resource::wire::HashmapUpdate {
            resource_hash: self.hash,
            segment,
            hashmap: self.hashmap[start..end].as_flattened(),
        })
    }

    /// The hashmap update went out.
    pub(super) fn hashmap_update_sent(&mut self) {
        self.hmu_due = None;
        self.hashmap_segments_sent += 1;
    }

    /// One line for traces.
    pub(super) fn describe(&self) -> String {
        format!(
            "{:?}#{} q{} reads{}{}",
            self.state,
            self.seq,
            self.send_queue.len(),
            self.reads_outstanding,
            if self.refill { " refill" } else { "" }
        )
    }
}
