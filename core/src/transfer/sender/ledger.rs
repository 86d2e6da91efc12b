//! Where each entry of the batch stands on the sender.

use crate::transfer::wire::Trouble;

/// One entry's state on the sender.
#[derive(Clone, Debug)]
pub(super) struct EntryState {
    /// Attempt now being sent (1-based).
    pub(super) attempt: u8,
    /// Where this file's data starts in the stream (the verified resume offset).
    pub(super) start: u64,
    /// A read of this attempt came back short (the file changed) or failed: the rest of
    /// the attempt is not sent, and ABANDON tells the receiver why.
    pub(super) trouble: Option<Trouble>,
    /// The ABANDON for this attempt is queued.
    pub(super) abandoned: bool,
    /// Waiting for the driver to reopen the file for this attempt.
    pub(super) reopening: bool,
    /// A resume claim was received for this entry.
    pub(super) claimed: bool,
}

impl EntryState {
    pub(super) const NEW: EntryState = EntryState {
        attempt: 1,
        start: 0,
        trouble: None,
        abandoned: false,
        reopening: false,
        claimed: false,
    };

    /// A read of `attempt` found the file changed or unreadable: the attempt ends at
    /// that read (the first trouble is the one reported).
    pub(super) fn troubled(&mut self, attempt: u8, trouble: Trouble) {
        if attempt == self.attempt && self.trouble.is_none() {
            self.trouble = Some(trouble);
        }
    }

    /// The receiver asked for `attempt`: it starts once the file is reopened.
    pub(super) fn retry(&mut self, attempt: u8) {
        self.attempt = attempt;
        self.trouble = None;
        self.abandoned = false;
        self.reopening = true;
    }
}
