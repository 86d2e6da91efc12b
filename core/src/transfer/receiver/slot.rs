//! One segment being received as a Resource: its layout, advertisement, hashmap and
//! parts, up to the moment it is whole.

use crate::resource::wire::{Advertisement, HashmapUpdate, MAP_HASH_LEN, Request, flags};
use crate::transfer::bz2::{Decompressed, decompress};
use crate::transfer::manifest::Manifest;
use crate::transfer::violation::segment_rule;
use crate::transfer::wire::{Extent, FileDigest, Layout};
use crate::transfer::{TransferConfig, TransferError};

use super::ledger::{Ledger, Verdict};
use super::window::Window;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotState {
    Free,
    /// Layout received; waiting for the advertisement.
    Layout,
    Receiving,
    /// All parts in and decompressed; waiting for its turn to be hashed.
    Complete,
    /// Its SHA-256 pass is under way (its buffer lent to the pass).
    Hashing,
    /// Hashed; waiting for its turn to be checked and written.
    Hashed,
    /// Its writes are under way.
    Writing,
}

pub(super) struct RecvSlot {
    pub(super) state: SlotState,
    /// Its place in the stream.
    pub(super) seq: u64,
    /// The advertisement's segment index, for error messages.
    pub(super) segment_index: u64,
    /// The segment's bytes: a buffer from the stream's pool, held from the first request
    /// until the segment is written (empty otherwise).
    pub(super) buf: Vec<u8>,
    /// Bytes of the segment (after decompression).
    pub(super) len: usize,
    /// Bytes sent (compressed or not).
    transfer_len: usize,
    compressed: bool,
    /// The file pieces it holds, each with its place in `buf`.
    pub(super) extents: Vec<(Extent, usize)>,
    pub(super) hash: [u8; 32],
    pub(super) random: [u8; 4],
    pub(super) proof: [u8; 32],
    /// Its data did not match its hash: rejected rather than written.
    pub(super) corrupt: bool,
    pub(super) parts: usize,
    per_message: usize,
    hashmap: Vec<[u8; MAP_HASH_LEN]>,
    received: Vec<bool>,
    pub(super) received_count: usize,
    pub(super) next_request: usize,
    pub(super) waiting_hmu: bool,
    pub(super) writes_outstanding: usize,
    /// The verdicts on the files that end in it, carried out once it is written.
    pub(super) verdicts: Vec<(u32, Verdict)>,
    /// The sender's digests of the files that end in this segment (from its layout).
    pub(super) digests: Vec<FileDigest>,
    /// Per extent: the SHA-256 of its file up to the extent's end, which becomes the
    /// file's verified hash once the extent is written.
    pub(super) prefixes: Vec<[u8; 32]>,
}

impl RecvSlot {
    pub(super) fn new(config: &TransferConfig, part_size: usize) -> Self {
        let parts = config.segment_size.div_ceil(part_size);
        let extents = config.max_extents_per_segment;
        RecvSlot {
            state: SlotState::Free,
            seq: 0,
            segment_index: 0,
            buf: Vec::new(),
            len: 0,
            transfer_len: 0,
            compressed: false,
            extents: Vec::with_capacity(extents),
            hash: [0; 32],
            random: [0; 4],
            proof: [0; 32],
            corrupt: false,
            parts: 0,
            per_message: 0,
            hashmap: Vec::with_capacity(parts),
            received: Vec::with_capacity(parts),
            received_count: 0,
            next_request: 0,
            waiting_hmu: false,
            writes_outstanding: 0,
            verdicts: Vec::with_capacity(extents),
            digests: Vec::with_capacity(extents),
            prefixes: Vec::with_capacity(extents),
        }
    }

    fn part_len(&self, index: usize, part_size: usize) -> usize {
        (self.transfer_len - index * part_size).min(part_size)
    }

    /// LAYOUT: the file pieces the segment will hold, each continuing its file, and the
    /// digests of the files that end in it.
    pub(super) fn on_layout(
        &mut self,
        layout: &Layout<'_>,
        seq: u64,
        ledger: &mut Ledger,
        manifest: &Manifest,
        segment_size: usize,
    ) -> Result<(), TransferError> {
        self.extents.clear();
        self.digests.clear();
        self.corrupt = false;
        let mut fill = 0usize;
        for extent in layout.extents() {
            ledger.lay_out(manifest, &extent)?;
            if fill + extent.len as usize > segment_size {
                return Err(segment_rule("a layout larger than the segment size"));
            }
            self.extents.push((extent, fill));
            fill += extent.len as usize;
        }
        let size = |entry: u32| manifest.get(entry as usize).map_or(0, |e| e.size);
        for digest in layout.digests() {
            let ends_here = self.extents.iter().any(|(e, _)| {
                e.entry == digest.entry
                    && e.attempt == digest.attempt
                    && e.offset + u64::from(e.len) == size(e.entry)
            });
            if !ends_here {
                return Err(segment_rule(
                    "a file digest in a segment where that file does not end",
                ));
            }
            self.digests.push(digest);
        }
        self.len = fill;
        self.hash = layout.hash;
        self.seq = seq;
        self.state = SlotState::Layout;
        Ok(())
    }

    /// ADV: the Resource that carries the laid-out segment.
    /// ADV: checked against the layout and the stream (PROTOCOL.md §7). `first_hash` is
    /// the hash of the stream's first segment (this one's, if it is the first).
    pub(super) fn on_advertisement(
        &mut self,
        adv: &Advertisement<'_>,
        part_size: usize,
        max_parts: usize,
        first_hash: [u8; 32],
    ) -> Result<(), TransferError> {
        let transfer = usize::try_from(adv.transfer_size).unwrap_or(usize::MAX);
        if adv.hash != self.hash {
            return Err(segment_rule(
                "an advertisement for another resource than its layout",
            ));
        }
        if adv.flags & !(flags::COMPRESSED | flags::SPLIT) != 0 {
            return Err(segment_rule(
                "an advertisement with a flag Ferry does not use (encrypted, request, response or metadata)",
            ));
        }
        if adv.segment_index != self.seq + 1 || adv.total_segments < adv.segment_index {
            return Err(segment_rule(
                "an advertisement whose segment index is not its place in the stream, or above its total",
            ));
        }
        if (adv.flags & flags::SPLIT != 0) != (adv.total_segments > 1) {
            return Err(segment_rule(
                "an advertisement whose split flag disagrees with its total segments",
            ));
        }
        if adv.original_hash != first_hash || adv.request_id.is_some() {
            return Err(segment_rule(
                "an advertisement whose original hash is not the first segment's, or with a request id",
            ));
        }
        if (adv.is_compressed() && transfer >= self.len)
            || (!adv.is_compressed() && transfer != self.len)
        {
            return Err(segment_rule(
                "an advertised transfer size that does not match the layout",
            ));
        }
        let parts = transfer.div_ceil(part_size);
        if adv.parts != parts as u64
            || parts == 0
            || parts > max_parts
            || adv.hashmap.len() / MAP_HASH_LEN > parts
        {
            return Err(segment_rule(
                "an advertised part count that does not match the transfer size",
            ));
        }
        self.segment_index = adv.segment_index;
        self.transfer_len = transfer;
        self.compressed = adv.is_compressed();
        self.random = adv.random_hash;
        self.parts = parts;
        self.per_message = adv.hashmap.len() / MAP_HASH_LEN;
        if self.per_message == 0 {
            return Err(segment_rule("an advertisement without map hashes"));
        }
        self.hashmap.clear();
        self.hashmap.extend(
            adv.hashmap
                .chunks_exact(MAP_HASH_LEN)
                .map(|h| [h[0], h[1], h[2], h[3]]),
        );
        self.received.clear();
        self.received.resize(parts, false);
        self.received_count = 0;
        self.next_request = 0;
        self.waiting_hmu = false;
        self.state = SlotState::Receiving;
        Ok(())
    }

    /// HMU: the next map hashes, after the receiver said it ran out.
    pub(super) fn on_hashmap_update(
        &mut self,
        update: &HashmapUpdate<'_>,
    ) -> Result<(), TransferError> {
        let start = usize::try_from(update.segment)
            .ok()
            .and_then(|segment| segment.checked_mul(self.per_message))
            .ok_or(segment_rule("a hashmap update beyond the hashmap"))?;
        let count = update.hashmap.len() / MAP_HASH_LEN;
        if !self.waiting_hmu
            || start != self.hashmap.len()
            || count == 0
            || count > self.per_message
            || start + count > self.parts
        {
            return Err(segment_rule(
                "a hashmap update that does not continue the hashmap",
            ));
        }
        self.hashmap.extend(
            update
                .hashmap
                .chunks_exact(MAP_HASH_LEN)
                .map(|h| [h[0], h[1], h[2], h[3]]),
        );
        self.waiting_hmu = false;
        Ok(())
    }

    /// Where part `index`, `len` bytes long, goes in the segment: refused unless it was
    /// asked for, has not arrived yet, and has its length.
    pub(super) fn destination(
        &mut self,
        index: u32,
        len: usize,
        part_size: usize,
    ) -> Result<&mut [u8], TransferError> {
        let index = index as usize;
        if index >= self.next_request
            || self.received[index]
            || len != self.part_len(index, part_size)
        {
            return Err(segment_rule(
                "a part that was not requested, is repeated, or has the wrong length",
            ));
        }
        let at = index * part_size;
        Ok(&mut self.buf[at..at + len])
    }

    /// Part `index` is now in its [`Slot::destination`]; returns true once the segment
    /// is whole.
    pub(super) fn placed(
        &mut self,
        index: u32,
        len: usize,
        part_size: usize,
    ) -> Result<bool, TransferError> {
        self.destination(index, len, part_size)?;
        self.received[index as usize] = true;
        self.received_count += 1;
        Ok(self.received_count == self.parts)
    }

    /// True if there is something left to ask for now.
    pub(super) fn wants_parts(&self) -> bool {
        self.state == SlotState::Receiving && self.next_request < self.parts && !self.waiting_hmu
    }

    /// The next request, as far as the window and one message allow: the map hashes go
    /// into `hashes`; returns the request's bytes and whether it says the hashmap ran out
    /// (`None` if there is nothing to ask for now).
    pub(super) fn next_request(
        &self,
        window: &Window,
        hashes: &mut Vec<u8>,
        max_hashes: usize,
        part_size: usize,
    ) -> Option<NextRequest> {
        hashes.clear();
        let mut index = self.next_request;
        let mut bytes = 0;
        while index < self.parts
            && index < self.hashmap.len()
            && hashes.len() / MAP_HASH_LEN < max_hashes
        {
            let len = self.part_len(index, part_size);
            if !window.admits(bytes, len) {
                break;
            }
            hashes.extend_from_slice(&self.hashmap[index]);
            bytes += len;
            index += 1;
        }
        let exhausted = index < self.parts && index == self.hashmap.len();
        if hashes.is_empty() && !exhausted {
            return None;
        }
        Some(NextRequest {
            up_to: index,
            bytes,
            exhausted: exhausted.then(|| self.hashmap[self.hashmap.len() - 1]),
        })
    }

    /// The request as it goes on the wire.
    pub(super) fn request<'a>(&self, next: &NextRequest, hashes: &'a [u8]) -> Request<'a> {
        Request {
            exhausted: next.exhausted,
            resource_hash: self.hash,
            map_hashes: hashes,
        }
    }

    /// The request went out.
    pub(super) fn asked(&mut self, next: &NextRequest) {
        self.next_request = next.up_to;
        self.waiting_hmu = next.exhausted.is_some();
    }

    /// All parts are in: decompress (into `scratch`, capped at the layout's size). The
    /// hash is checked when the segment's turn comes in stream order, since it binds
    /// the file hashes.
    pub(super) fn complete(&mut self, scratch: &mut [u8]) -> Result<(), TransferError> {
        if self.compressed {
            match decompress(&self.buf[..self.transfer_len], &mut scratch[..self.len]) {
                Decompressed::Exactly => self.buf[..self.len].copy_from_slice(&scratch[..self.len]),
                Decompressed::TooMuch => {
                    return Err(TransferError::DecompressionBomb {
                        segment: self.segment_index,
                        limit: self.len as u64,
                    });
                }
                Decompressed::Invalid => {
                    return Err(TransferError::SegmentCorrupt(self.segment_index));
                }
            }
        }
        self.state = SlotState::Complete;
        Ok(())
    }

    /// One line for traces.
    pub(super) fn describe(&self) -> String {
        format!(
            "{:?}#{} got {}/{} asked {} hmu {} writes {}",
            self.state,
            self.seq,
            self.received_count,
            self.parts,
            self.next_request,
            self.waiting_hmu,
            self.writes_outstanding
        )
    }
}

/// A request a slot is ready to make.
pub(super) struct NextRequest {
    /// The parts asked for end before this index.
    up_to: usize,
    /// Their bytes.
    pub(super) bytes: usize,
    /// The hashmap ran out: the last map hash the receiver has.
    exhausted: Option<[u8; MAP_HASH_LEN]>,
}

impl NextRequest {
    /// True if the request stopped at the window, not at the hashmap or the segment's end.
    pub(super) fn window_full(&self, parts: usize) -> bool {
        self.exhausted.is_none() && self.up_to < parts
    }
}
