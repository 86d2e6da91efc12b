//! The resume check and plan: re-reads what the driver says is already here, claims what
//! hashes right, and learns which claims the sender accepts.

use crate::channel::Channel;
use crate::time::Timestamp;
use crate::transfer::hashes::FileHashes;
use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::outputs::Outputs;
use crate::transfer::resume::{Verifier, reread_allowance};
use crate::transfer::violation::{out_of_order, plan_rule};
use crate::transfer::wire::bodies::CLAIM_MAX_LEN;
use crate::transfer::wire::{self, Claim, Message, Plan, PlanResult, ReceiverLimits};
use crate::transfer::{DiskError, TransferConfig, TransferError};

use super::stream::grant_for;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Re-reading and hashing what is here.
    Checking,
    /// Sending the claims.
    Claiming,
    /// The claims are out: granting the sender its first segments.
    Granting,
    /// Waiting for the sender's answer.
    Answering,
}

/// The resume phase's data: what the driver holds, the claims made of it, and the hash
/// states after each claimed prefix (the stream continues them).
pub(super) struct ResumeCheck {
    stage: Stage,
    /// Entries of which the driver holds the first bytes, in entry order.
    local: Vec<(u32, u64)>,
    next: usize,
    verifier: Verifier,
    claims: Vec<Claim>,
    claims_sent: usize,
    hashes: FileHashes,
}

/// What the plan settled: each accepted claim, and the hash states to continue from.
pub(super) struct Settled {
    pub(super) claims: Vec<Claim>,
    pub(super) hashes: FileHashes,
}

impl ResumeCheck {
    /// A check of `local`: entries of which the driver already holds the first `bytes`
    /// bytes. Entries that are not files, or claims beyond a file's size, are dropped.
    pub(super) fn new(
        manifest: &Manifest,
        local: &[(usize, u64)],
        config: &TransferConfig,
    ) -> Self {
        let mut held: Vec<(u32, u64)> = Vec::with_capacity(local.len().min(manifest.len()));
        for &(entry, bytes) in local {
            let Some(item) = manifest.get(entry) else {
                continue;
            };
            if item.kind == EntryKind::File && bytes > 0 && bytes <= item.size {
                held.push((entry as u32, bytes));
            }
        }
        // In entry order, once each: claims are then found by binary search.
        held.sort_unstable_by_key(|(entry, _)| *entry);
        held.dedup_by_key(|(entry, _)| *entry);
        let mut verifier = Verifier::new(config.segment_size);
        verifier.expect(held.iter().map(|(_, bytes)| bytes).sum());
        ResumeCheck {
            stage: Stage::Checking,
            claims: Vec::with_capacity(held.len()),
            local: held,
            next: 0,
            verifier,
            claims_sent: 0,
            hashes: FileHashes::default(),
        }
    }

    /// Hashes what is here, one read at a time, as the driver's reads complete.
    pub(super) fn check(&mut self, manifest: &Manifest, out: &mut Outputs) {
        while self.stage == Stage::Checking {
            if self.verifier.is_busy() {
                let Some(done) = self.verifier.poll(out) else {
                    return;
                };
                if let Some((hasher, prefix)) = done.result {
                    self.claims.push(Claim {
                        entry: done.entry,
                        offset: done.target,
                        prefix,
                    });
                    let size = manifest.get(done.entry as usize).map_or(0, |e| e.size);
                    if done.target < size {
                        self.hashes.resume_from(done.entry, hasher);
                    }
                }
                self.next += 1;
            }
            match self.local.get(self.next) {
                Some(&(entry, bytes)) => self.verifier.start(entry, bytes),
                None => self.stage = Stage::Claiming,
            }
        }
    }

    /// Where the driver puts the bytes of the outstanding read.
    pub(super) fn read_buffer(&mut self) -> &mut [u8] {
        self.verifier.buffer()
    }

    /// The outstanding read finished; returns the progress event of the check.
    pub(super) fn read_done(
        &mut self,
        result: Result<usize, DiskError>,
    ) -> Result<crate::transfer::TransferEvent, TransferError> {
        self.verifier.read_done(result)?;
        Ok(self.verifier.progress())
    }

    /// Sends the claims as the channel has room; once the last is out, returns how
    /// long the sender may take to answer (it re-reads what was claimed).
    pub(super) fn send_claims(
        &mut self,
        channel: &mut Channel,
        config: &TransferConfig,
        now: Timestamp,
    ) -> Option<Timestamp> {
        while self.stage == Stage::Claiming {
            let room = channel.send_capacity().min(channel.max_message_len());
            let fits = room.saturating_sub(32) / CLAIM_MAX_LEN;
            let rest = &self.claims[self.claims_sent..];
            let count = rest.len().min(fits);
            let last = count == rest.len();
            if count == 0 && !last {
                return None;
            }
            let plan = Message::Plan(Plan::Claims {
                last,
                limits: ReceiverLimits {
                    segments_in_flight: config.segments_in_flight as u64,
                    max_extents: config.max_extents_per_segment as u64,
                    segment_size: config.segment_size as u64,
                },
                claims: &rest[..count],
            });
            if wire::send(channel, &plan).is_err() {
                return None;
            }
            self.claims_sent += count;
            if last {
                self.stage = Stage::Granting;
            }
        }
        if self.stage == Stage::Granting {
            // The sender may start with the segments of the window's floor: slow start
            // reaches it within the first round trips.
            let grant = Message::Grant {
                segments: grant_for(config.window_floor, 0, config) as u32,
            };
            if wire::send(channel, &grant).is_err() {
                return None;
            }
            // The sender now re-reads whatever we claimed, which can take long: the wait
            // is bounded by the time that re-read takes at the slowest rate we allow for
            // (PROTOCOL.md §6.5).
            self.stage = Stage::Answering;
            let claimed = self.claims.iter().map(|c| c.offset).sum();
            return Some(now.saturating_add(reread_allowance(config.stall_timeout, claimed)));
        }
        None
    }

    /// The sender's answer: the claims it rejected. Once the answer is whole, returns
    /// what the plan settled.
    pub(super) fn on_plan_result(
        &mut self,
        result: &PlanResult<'_>,
    ) -> Result<Option<Settled>, TransferError> {
        if self.stage != Stage::Answering {
            return Err(out_of_order("a plan result the receiver did not ask for"));
        }
        let claims = &mut self.claims;
        let hashes = &mut self.hashes;
        let last = result.read(|entry| {
            // Claims are in entry order; a rejected one keeps its place with nothing held.
            let at = claims
                .binary_search_by_key(&entry, |c| c.entry)
                .ok()
                .filter(|&at| claims[at].offset > 0)
                .ok_or(plan_rule("the sender rejected a claim that was never made"))?;
            claims[at].offset = 0;
            hashes.drop_resumed(entry);
            Ok(())
        })?;
        if !last {
            return Ok(None);
        }
        let mut claims = core::mem::take(&mut self.claims);
        claims.retain(|c| c.offset > 0);
        Ok(Some(Settled {
            claims,
            hashes: core::mem::take(&mut self.hashes),
        }))
    }

    /// A one-word summary for traces.
    pub(super) fn stage(&self) -> &'static str {
        match self.stage {
            Stage::Checking => "checking",
            Stage::Claiming => "claiming",
            Stage::Granting => "granting",
            Stage::Answering => "awaiting the plan result",
        }
    }
}
