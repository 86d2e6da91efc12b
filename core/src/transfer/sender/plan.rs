//! The receiver's resume plan: its claims, each checked (by the manifest's hash, or by
//! re-reading the file), and the limits both sides then use.

use sha2::Sha256;

use crate::transfer::hashes::FileHashes;
use crate::transfer::manifest::{EntryKind, Manifest};
use crate::transfer::outputs::Outputs;
use crate::transfer::resume::Verifier;
use crate::transfer::violation::{misuse, out_of_order, plan_rule};
use crate::transfer::wire::{Claim, Plan};
use crate::transfer::{DiskError, TransferConfig, TransferError, TransferEvent};

use super::ledger::EntryState;

/// What both sides use: the smaller of each side's limits.
#[derive(Clone, Copy, Debug)]
pub(super) struct Agreed {
    pub(super) in_flight: usize,
    pub(super) max_extents: usize,
    pub(super) segment_size: usize,
}

/// The plan phase's data: the claims as they arrive, then as they are checked.
#[derive(Default)]
pub(super) struct PlanCheck {
    /// The whole plan is in: the claims are being checked.
    checking: bool,
    claims: Vec<Claim>,
    next: usize,
    verifier: Option<Verifier>,
    /// Entries whose claims were rejected: sent again from the start.
    rejected: Vec<u32>,
    /// Hash states after each accepted partial claim (the stream continues them).
    hashes: FileHashes,
    agreed: Option<Agreed>,
}

/// What the plan settled.
pub(super) struct Settled {
    pub(super) agreed: Agreed,
    pub(super) rejected: Vec<u32>,
    pub(super) hashes: FileHashes,
}

impl PlanCheck {
    /// PLAN: more claims, and with the last message the receiver's limits. Returns true
    /// once the plan is whole.
    pub(super) fn on_plan(
        &mut self,
        plan: &Plan<'_>,
        manifest: &Manifest,
        entries: &mut [EntryState],
        config: &TransferConfig,
    ) -> Result<bool, TransferError> {
        if self.checking {
            return Err(out_of_order("a resume plan outside the planning phase"));
        }
        let claims = &mut self.claims;
        let (last, limits) = plan.read(|claim| {
            let entry = manifest
                .get(claim.entry as usize)
                .ok_or(plan_rule("a claim names an entry that does not exist"))?;
            let state = &mut entries[claim.entry as usize];
            if entry.kind != EntryKind::File || claim.offset > entry.size || state.claimed {
                return Err(plan_rule(
                    "a claim for a directory, beyond the file's size, or repeated",
                ));
            }
            state.claimed = true;
            if claim.offset > 0 {
                if claims.len() == claims.capacity() {
                    claims.reserve(claims.len().max(64).min(manifest.len()));
                }
                claims.push(claim);
            }
            Ok(())
        })?;
        if !last {
            return Ok(false);
        }
        let fit = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        if limits.segments_in_flight == 0
            || limits.max_extents == 0
            || fit(limits.segment_size) < config.part_size
        {
            return Err(plan_rule(
                "the receiver's limits leave no room for a segment",
            ));
        }
        self.agreed = Some(Agreed {
            in_flight: config
                .segments_in_flight
                .min(fit(limits.segments_in_flight)),
            max_extents: config.max_extents_per_segment.min(fit(limits.max_extents)),
            segment_size: config.segment_size.min(fit(limits.segment_size)),
        });
        // What will be re-read: every claim but the complete files the manifest's hash
        // decides without reading.
        let to_read = self
            .claims
            .iter()
            .filter(|claim| {
                manifest
                    .get(claim.entry as usize)
                    .is_none_or(|e| e.sha256.is_none() || claim.offset < e.size)
            })
            .map(|claim| claim.offset)
            .sum();
        let mut verifier = Verifier::new(config.segment_size);
        verifier.expect(to_read);
        self.verifier = Some(verifier);
        self.checking = true;
        Ok(true)
    }

    /// Checks claims one by one: a complete file whose hash matches the manifest's is
    /// taken on trust (the manifest hash is our own); anything else is re-read. Returns
    /// what the plan settled once every claim is checked.
    pub(super) fn check(
        &mut self,
        manifest: &Manifest,
        entries: &mut [EntryState],
        out: &mut Outputs,
    ) -> Option<Settled> {
        let verifier = self.verifier.as_mut()?;
        loop {
            if verifier.is_busy() {
                let done = verifier.poll(out)?;
                let claim = self.claims[self.next];
                let size = manifest.get(done.entry as usize).map_or(0, |e| e.size);
                match done.result {
                    Some((hasher, digest)) if digest == claim.prefix => {
                        accept(entries, &mut self.hashes, claim, size, Some(hasher))
                    }
                    _ => self.rejected.push(claim.entry),
                }
                self.next += 1;
            }
            let Some(&claim) = self.claims.get(self.next) else {
                return Some(Settled {
                    agreed: self.agreed?,
                    rejected: core::mem::take(&mut self.rejected),
                    hashes: core::mem::take(&mut self.hashes),
                });
            };
            let entry = manifest.get(claim.entry as usize);
            let size = entry.map_or(0, |e| e.size);
            match entry.and_then(|e| e.sha256) {
                // Complete and equal to what the manifest promises: nothing to re-read.
                Some(hash) if claim.offset == size && hash == claim.prefix => {
                    accept(entries, &mut self.hashes, claim, size, None);
                    self.next += 1;
                    continue;
                }
                // Complete but not what the manifest promises: send it again.
                Some(_) if claim.offset == size => {
                    self.rejected.push(claim.entry);
                    self.next += 1;
                    continue;
                }
                _ => {}
            }
            verifier.start(claim.entry, claim.offset);
        }
    }

    /// Where the driver puts the bytes of the outstanding read.
    pub(super) fn read_buffer(&mut self) -> &mut [u8] {
        match self.verifier.as_mut() {
            Some(verifier) => verifier.buffer(),
            None => &mut [],
        }
    }

    /// The outstanding read finished; returns the progress event of the check.
    pub(super) fn read_done(
        &mut self,
        result: Result<usize, DiskError>,
    ) -> Result<TransferEvent, TransferError> {
        let verifier = self
            .verifier
            .as_mut()
            .ok_or(misuse("driver reported an unknown read"))?;
        verifier.read_done(result)?;
        Ok(verifier.progress())
    }

    /// True while the claims are being checked (our own work, not a wait on the peer).
    pub(super) fn is_checking(&self) -> bool {
        self.checking
    }
}

/// A claim holds: the file's data starts at its offset, and its hash continues from the
/// state after the prefix.
fn accept(
    entries: &mut [EntryState],
    hashes: &mut FileHashes,
    claim: Claim,
    size: u64,
    hasher: Option<Sha256>,
) {
    entries[claim.entry as usize].start = claim.offset;
    if claim.offset < size
        && let Some(hasher) = hasher
    {
        hashes.resume_from(claim.entry, hasher);
    }
}
