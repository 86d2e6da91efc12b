//! The session's output queues, and the ids that tie a disk completion to its command.

use std::collections::VecDeque;

use crate::transfer::{DiskCommand, IoId, TransferEvent};

/// An I/O id for the prefix-verification read (one at a time per session).
pub(crate) const VERIFY_READ: IoId = IoId(1 << 31);

/// The id of a read or write of extent `extent` in segment slot `slot`.
pub(crate) fn slot_io(slot: usize, extent: usize) -> IoId {
    IoId(((slot as u32) << 20) | extent as u32)
}

/// The slot and extent of a slot I/O id, if it is one.
pub(crate) fn split_io(id: IoId) -> Option<(usize, usize)> {
    (id.0 & VERIFY_READ.0 == 0).then_some(((id.0 >> 20) as usize, (id.0 & 0xf_ffff) as usize))
}

/// Events and disk commands for the driver, in queues whose capacities are fixed when the
/// session is built. No event is ever dropped: work that produces output first asks
/// [`Outputs::has_room`] (the one place room is reserved), which also keeps room for the
/// event each disk command given out may bring when it completes. Progress events
/// replace the one queued just before them rather than taking more room.
pub(crate) struct Outputs {
    events: VecDeque<TransferEvent>,
    disk: VecDeque<DiskCommand>,
    event_capacity: usize,
    disk_capacity: usize,
    /// Disk commands given out and not yet completed: each may bring one event.
    pending: usize,
    /// Commits given out and not yet carried out: until they are, no file is in place
    /// for certain, and the batch is not done.
    commits_due: usize,
}

impl Outputs {
    /// Queues for a session of `config`: disk commands for four segments' pieces at a
    /// time (a side stops producing when they are full, and goes on once the driver has
    /// drained them), and room for as many events again, since each may bring one.
    pub(crate) fn for_config(config: &crate::transfer::TransferConfig) -> Self {
        let disk = 4 * config.max_extents_per_segment + 8;
        Outputs::new(disk + 16, disk)
    }

    /// The longer of the two queues of [`Outputs::for_config`].
    pub(crate) fn capacity(config: &crate::transfer::TransferConfig) -> usize {
        4 * config.max_extents_per_segment + 24
    }

    fn new(events: usize, disk: usize) -> Self {
        Outputs {
            events: VecDeque::with_capacity(events),
            disk: VecDeque::with_capacity(disk),
            event_capacity: events,
            disk_capacity: disk,
            pending: 0,
            commits_due: 0,
        }
    }

    /// True if `disk` more commands and `events` more events fit, beside the events the
    /// commands already given out may bring.
    pub(crate) fn has_room(&self, disk: usize, events: usize) -> bool {
        self.disk.len() + disk <= self.disk_capacity
            && self.events.len() + self.pending + events <= self.event_capacity
    }

    pub(crate) fn event(&mut self, event: TransferEvent) {
        use TransferEvent::{Progress, ResumeCheck};
        if let Some(last) = self.events.back_mut()
            && matches!(
                (&*last, &event),
                (Progress { .. }, Progress { .. }) | (ResumeCheck { .. }, ResumeCheck { .. })
            )
        {
            *last = event;
            return;
        }
        debug_assert!(
            self.events.len() < self.event_capacity,
            "event queue over its bound"
        );
        self.events.push_back(event);
    }

    pub(crate) fn disk(&mut self, command: DiskCommand) {
        debug_assert!(
            self.disk.len() < self.disk_capacity,
            "disk queue over its bound"
        );
        if brings_event(&command) {
            self.pending += 1;
        }
        if matches!(command, DiskCommand::Commit { .. }) {
            self.commits_due += 1;
        }
        self.disk.push_back(command);
    }

    /// A disk command that may bring an event (a read, a write, a reopen) was carried
    /// out and its completion taken: the room kept for its event is free again.
    pub(crate) fn completed(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// A commit was carried out (put in place, or failed): its event's room is free.
    pub(crate) fn commit_carried_out(&mut self) {
        self.commits_due = self.commits_due.saturating_sub(1);
        self.completed();
    }

    /// Commits given out that the driver has not carried out yet.
    pub(crate) fn commits_due(&self) -> usize {
        self.commits_due
    }

    pub(crate) fn poll_event(&mut self) -> Option<TransferEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_disk(&mut self) -> Option<DiskCommand> {
        self.disk.pop_front()
    }
}

/// True for the disk commands whose completion may bring an event (a read's progress or
/// failure, a write that finishes a segment, a reopen that fails, a file put in place).
fn brings_event(command: &DiskCommand) -> bool {
    matches!(
        command,
        DiskCommand::Read { .. }
            | DiskCommand::Write { .. }
            | DiskCommand::Reopen { .. }
            | DiskCommand::Commit { .. }
    )
}
