//! The streaming phase: segments laid out, advertised and requested within the window,
//! then proven; and the end of the batch.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};

use crate::channel::Channel;
use crate::record::sealed_len;
use crate::resource::wire::{Advertisement, HashmapUpdate, MAP_HASH_LEN, Proof};
use crate::time::Timestamp;
use crate::transfer::hashes::FileHashes;
use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::outputs::Outputs;
use crate::transfer::violation::{out_of_order, segment_rule};
use crate::transfer::wire::{self, Layout, Message};
use crate::transfer::work::Hashing;
use crate::transfer::{DiskCommand, FileFailure, TransferConfig, TransferError, TransferEvent};

use super::ledger::Ledger;
use super::slot::{RecvSlot, SlotState};
use super::window::Window;

/// The segments to grant the sender for a window of `window` bytes on a path whose
/// bandwidth-delay product is `bdp`: a segment is held from its advertisement until its
/// proof, so beyond the window's own segments (asked for, not yet arrived) come those
/// advertised and not yet asked for and those written and not yet proven, about one
/// bandwidth-delay product; and two for the ones being read and written.
pub(super) fn grant_for(window: usize, bdp: usize, config: &TransferConfig) -> usize {
    let segment = config.segment_size.max(1);
    (window.div_ceil(segment) + bdp.div_ceil(segment) + 2).min(config.segments_in_flight)
}

/// What the receiver owes the sender for a segment it processed.
#[derive(Clone, Copy, Debug)]
pub(super) enum Answer {
    /// Written: its proof (PRF).
    Proof(Proof),
    /// Its data did not match its hash: rejected (RCL), its files to be sent again.
    Reject([u8; 32]),
}

/// The streaming phase's data: the segments in flight and what is owed to the sender.
pub(super) struct Stream {
    /// The sender's part size.
    pub(super) part_size: usize,
    pub(super) slots: Vec<RecvSlot>,
    /// The slot whose layout came and whose advertisement is next.
    awaiting_adv: Option<usize>,
    next_seq: u64,
    /// The next segment to hash, and the next to check and write, in stream order.
    pub(super) next_hash: u64,
    pub(super) next_process: u64,
    pub(super) window: Window,
    /// What each segment processed is owed, in order: its proof, or its rejection.
    pub(super) answers_due: VecDeque<Answer>,
    /// The hash of the stream's first segment: every ADV names it (`o`).
    first_hash: Option<[u8; 32]>,
    /// Segment buffers not in use, and how many there are in all (at most
    /// `TransferConfig::segment_buffers`).
    spare: Vec<Vec<u8>>,
    buffers: usize,
    /// Segments granted to the sender: the most it may have advertised and not yet
    /// proven (PROTOCOL.md §6.3), and whether a new grant is to be sent.
    granted: usize,
    /// Decompression space, one segment.
    scratch: Vec<u8>,
    request_buf: Vec<u8>,
    /// The one SHA-256 pass over each segment, in stream order, carrying the per-file
    /// hashes (and resumed prefixes waiting); run here or by the driver.
    pub(super) hashing: Hashing,
    /// The next entry to settle before data flows (folders, files already complete).
    settle_next: usize,
    pub(super) bytes_done: u64,
}

impl Stream {
    /// The stream of a session whose handshake took `handshake_rtt_micros` (see
    /// [`Window::new`]).
    pub(super) fn new(
        config: &TransferConfig,
        part_size: usize,
        hashes: FileHashes,
        handshake_rtt_micros: u64,
    ) -> Self {
        Stream {
            part_size,
            slots: Vec::new(),
            awaiting_adv: None,
            next_seq: 0,
            next_hash: 0,
            next_process: 0,
            window: Window::new(
                config.initial_window,
                config.window_floor,
                config.max_window,
                handshake_rtt_micros,
            ),
            answers_due: VecDeque::new(),
            first_hash: None,
            spare: Vec::new(),
            buffers: 0,
            granted: grant_for(config.window_floor, 0, config),
            scratch: vec![0; config.segment_size],
            request_buf: Vec::with_capacity(config.channel.max_record_payload),
            hashing: Hashing::new(hashes, config.max_extents_per_segment),
            settle_next: 0,
            bytes_done: 0,
        }
    }

    /// True once every entry that needs no data is settled: segments may then be
    /// written.
    pub(super) fn is_settled(&self, manifest: &Manifest) -> bool {
        self.settle_next >= manifest.len()
    }

    /// Creates the folders and commits the files that need no data (complete here
    /// already, or empty), as the output queues have room.
    pub(super) fn settle(&mut self, manifest: &Manifest, ledger: &mut Ledger, out: &mut Outputs) {
        while self.settle_next < manifest.len() {
            if !out.has_room(2, 2) {
                return;
            }
            let index = self.settle_next;
            self.settle_next += 1;
            let Some(entry) = manifest.get(index) else {
                return;
            };
            match entry.kind {
                EntryKind::Directory => {
                    out.disk(DiskCommand::CreateDir { entry: index });
                    ledger.complete_at_once(index);
                }
                EntryKind::File if ledger.verified(index) == entry.size => {
                    // Complete here and accepted by the sender (an empty file is trivially
                    // complete, unless the manifest promises other content).
                    let empty: [u8; 32] = Sha256::digest([]).into();
                    if entry.size == 0 && entry.sha256.is_some_and(|h| h != empty) {
                        ledger.fail_at_once(index);
                        out.event(TransferEvent::FileFailed {
                            entry: index,
                            reason: FileFailure::HashMismatch { attempts: 1 },
                        });
                        continue;
                    }
                    ledger.complete_at_once(index);
                    // FileDone once the driver has put it in place.
                    out.disk(DiskCommand::Commit { entry: index });
                }
                EntryKind::File => {}
            }
        }
    }

    pub(super) fn on_layout(
        &mut self,
        layout: &Layout<'_>,
        ledger: &mut Ledger,
        manifest: &Manifest,
        config: &TransferConfig,
    ) -> Result<(), TransferError> {
        let segment_size = config.segment_size;
        if self.awaiting_adv.is_some() {
            return Err(out_of_order("a segment layout out of order"));
        }
        let free = self.slots.iter().position(|s| s.state == SlotState::Free);
        let index = match free {
            Some(index) => index,
            None if self.slots.len() < config.segments_in_flight => {
                self.slots.push(RecvSlot::new(config, self.part_size));
                self.slots.len() - 1
            }
            None => return Err(segment_rule("more segments in flight than agreed")),
        };
        self.slots[index].on_layout(layout, self.next_seq, ledger, manifest, segment_size)?;
        self.next_seq += 1;
        self.awaiting_adv = Some(index);
        Ok(())
    }

    pub(super) fn on_advertisement(
        &mut self,
        adv: &Advertisement<'_>,
        segment_size: usize,
    ) -> Result<(), TransferError> {
        let index = self
            .awaiting_adv
            .take()
            .ok_or(out_of_order("an advertisement without a layout"))?;
        let max_parts = segment_size.div_ceil(self.part_size);
        if self.slots[index].seq == 0 {
            self.first_hash = Some(adv.hash);
        }
        let first = self.first_hash.unwrap_or(adv.hash);
        self.slots[index].on_advertisement(adv, self.part_size, max_parts, first)
    }

    /// The slot receiving the Resource `hash`.
    fn receiving(&mut self, hash: &[u8; 32]) -> Option<&mut RecvSlot> {
        self.slots
            .iter_mut()
            .find(|s| s.state == SlotState::Receiving && s.hash == *hash)
    }

    pub(super) fn on_hashmap_update(
        &mut self,
        update: &HashmapUpdate<'_>,
    ) -> Result<(), TransferError> {
        self.receiving(&update.resource_hash)
            .ok_or(out_of_order("a hashmap update for an unknown resource"))?
            .on_hashmap_update(update)
    }

    pub(super) fn on_part(
        &mut self,
        hash: [u8; 32],
        index: u32,
        data: &[u8],
        now: Timestamp,
    ) -> Result<(), TransferError> {
        self.part_destination(hash, index, data.len())?
            .copy_from_slice(data);
        self.on_part_placed(hash, index, data.len(), now)
    }

    /// Where a part of `len` bytes goes, if it is one this side asked for and has not had.
    pub(super) fn part_destination(
        &mut self,
        hash: [u8; 32],
        index: u32,
        len: usize,
    ) -> Result<&mut [u8], TransferError> {
        let part_size = self.part_size;
        receiving(&mut self.slots, hash)?.destination(index, len, part_size)
    }

    /// The part is in its [`Stream::part_destination`].
    pub(super) fn on_part_placed(
        &mut self,
        hash: [u8; 32],
        index: u32,
        len: usize,
        now: Timestamp,
    ) -> Result<(), TransferError> {
        let part_size = self.part_size;
        let slot = receiving(&mut self.slots, hash)?;
        let whole = slot.placed(index, len, part_size)?;
        self.window.arrived(len, now);
        if whole {
            slot.complete(&mut self.scratch)?;
        }
        Ok(())
    }

    /// Asks for parts, oldest segment first, as far as the window, the segment buffers
    /// and the channel allow. A segment takes a buffer with its first request.
    pub(super) fn send_requests(
        &mut self,
        channel: &mut Channel,
        config: &TransferConfig,
        now: Timestamp,
    ) {
        let part_size = self.part_size;
        let max_hashes = (channel.max_message_len().saturating_sub(64) / MAP_HASH_LEN).max(1);
        loop {
            let Some(slot) = self
                .slots
                .iter_mut()
                .filter(|s| s.wants_parts())
                .min_by_key(|s| s.seq)
            else {
                return;
            };
            let Some(next) =
                slot.next_request(&self.window, &mut self.request_buf, max_hashes, part_size)
            else {
                return;
            };
            if slot.buf.is_empty() {
                slot.buf = match self.spare.pop() {
                    Some(buf) => buf,
                    None if self.buffers < config.segment_buffers() => {
                        self.buffers += 1;
                        vec![0; config.segment_size]
                    }
                    // Every buffer holds a segment on its way: the next waits for one.
                    None => return,
                };
            }
            let request = Message::Req(slot.request(&next, &self.request_buf));
            if channel.send_capacity() < sealed_len(request.encoded_len())
                || wire::send(channel, &request).is_err()
            {
                return;
            }
            slot.asked(&next);
            self.window.asked(next.bytes, now);
            if next.window_full(slot.parts) {
                return;
            }
        }
    }

    /// A segment is written: its buffer goes back to the pool.
    pub(super) fn release(&mut self, index: usize) {
        let buf = core::mem::take(&mut self.slots[index].buf);
        if !buf.is_empty() {
            self.spare.push(buf);
        }
    }

    /// Tells the sender how many segments it may have in flight, once the window has
    /// moved enough to change that (by an eighth, or by two segments when it is small).
    pub(super) fn send_grant(&mut self, channel: &mut Channel, config: &TransferConfig) {
        let wanted = grant_for(self.window.reach(), self.window.bdp(), config);
        if wanted.abs_diff(self.granted) < (self.granted / 8).max(2) {
            return;
        }
        let grant = Message::Grant {
            segments: wanted as u32,
        };
        if wire::send(channel, &grant).is_ok() {
            self.granted = wanted;
        }
    }

    /// Sends the proofs of the segments written, then the retries asked for.
    pub(super) fn send_control(&mut self, channel: &mut Channel, ledger: &mut Ledger) {
        while let Some(&answer) = self.answers_due.front() {
            let answer = match answer {
                Answer::Proof(proof) => Message::Prf(proof),
                Answer::Reject(hash) => Message::Rcl(hash),
            };
            if channel.send_capacity() < sealed_len(answer.encoded_len())
                || wire::send(channel, &answer).is_err()
            {
                return;
            }
            self.answers_due.pop_front();
        }
        while let Some(&(entry, attempt)) = ledger.retries_due.front() {
            if wire::send(channel, &Message::Retry { entry, attempt }).is_err() {
                return;
            }
            ledger.retries_due.pop_front();
        }
    }

    /// True once the batch is done here: every file resolved, every segment written and
    /// proven.
    pub(super) fn is_done(&self, ledger: &Ledger) -> bool {
        ledger.unresolved == 0
            && self.answers_due.is_empty()
            && self.slots.iter().all(|s| s.state == SlotState::Free)
    }

    /// The Resources to cancel if the session ends now.
    pub(super) fn in_flight(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.slots
            .iter()
            .filter(|s| {
                matches!(
                    s.state,
                    SlotState::Receiving
                        | SlotState::Complete
                        | SlotState::Hashing
                        | SlotState::Hashed
                )
            })
            .map(|s| &s.hash)
    }

    /// One line for traces.
    pub(super) fn describe(&self) -> String {
        let slots: Vec<String> = self.slots.iter().map(RecvSlot::describe).collect();
        format!(
            "next_process {} window {} granted {} outstanding {} done {} slots [{}]",
            self.next_process,
            self.window.size(),
            self.granted,
            self.window.outstanding(),
            self.bytes_done,
            slots.join(", ")
        )
    }
}

/// The slot receiving the segment `hash`, which a part names.
fn receiving(slots: &mut [RecvSlot], hash: [u8; 32]) -> Result<&mut RecvSlot, TransferError> {
    slots
        .iter_mut()
        .find(|s| s.state == SlotState::Receiving && s.hash == hash)
        .ok_or(out_of_order(
            "a part for a resource that is not being received",
        ))
}
