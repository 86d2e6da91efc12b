//! Files sent again: the receiver's RETRY, the driver's reopen of the file as it is now,
//! and the UPDATE or ABANDON that must reach the receiver in their place in the stream.

use std::sync::Arc;

use crate::channel::Channel;
use crate::transfer::manifest::EntryKind;
use crate::transfer::violation::{file_rule, misuse};
use crate::transfer::wire::{self, Abandon, Message, Trouble, Update};
use crate::transfer::{DiskCommand, DiskError, FileMeta, TransferError, TransferEvent, Unreadable};

use super::slot::SlotState;
use super::stream::{Books, Stream};

/// A message about one file that must reach the receiver in its place in the stream.
#[derive(Clone, Copy, Debug)]
pub(super) enum Notice {
    Update(Update),
    Abandon(Abandon),
}

impl Stream {
    /// RETRY: the receiver asks for the next attempt of a file.
    pub(super) fn on_retry(
        &mut self,
        entry: u32,
        attempt: u8,
        books: &mut Books<'_>,
    ) -> Result<(), TransferError> {
        let file = books
            .manifest
            .get(entry as usize)
            .ok_or(file_rule("a retry for an unknown entry"))?;
        let state = &mut books.entries[entry as usize];
        if file.kind != EntryKind::File
            || attempt != state.attempt.saturating_add(1)
            || attempt > books.config.max_attempts
        {
            return Err(file_rule(
                "a retry out of order or beyond the attempt limit",
            ));
        }
        state.retry(attempt);
        self.reopens.push_back(entry);
        books.out.event(TransferEvent::FileRetry {
            entry: entry as usize,
            attempt,
        });
        Ok(())
    }

    /// Asks the driver to reopen retried files, as the queues have room.
    pub(super) fn ask_reopens(&mut self, books: &mut Books<'_>) {
        while books.out.has_room(1, 1) {
            let Some(entry) = self.reopens.pop_front() else {
                return;
            };
            books.out.disk(DiskCommand::Reopen {
                entry: entry as usize,
            });
        }
    }

    /// The file of a retried entry as the driver now finds it: the new attempt starts
    /// with an UPDATE, or, if it cannot be read, the file ends with an ABANDON.
    pub(super) fn reopen_done(
        &mut self,
        entry: usize,
        result: Result<FileMeta, DiskError>,
        books: &mut Books<'_>,
    ) -> Result<(), TransferError> {
        let state = books
            .entries
            .get_mut(entry)
            .filter(|s| s.reopening)
            .ok_or(misuse("driver reported an unknown reopen"))?;
        state.reopening = false;
        let attempt = state.attempt;
        let entry_id = entry as u32;
        if let Err(error) = &result {
            books.out.event(TransferEvent::ReadFailed {
                entry,
                error: error.clone(),
            });
        }
        let meta = result.map_err(|error| Trouble::Unreadable(error.kind.into()));
        let meta = meta.and_then(|meta| {
            Arc::make_mut(books.manifest)
                .set_file_meta(entry, meta.size, meta.mtime_ns)
                .map(|()| meta)
                .map_err(|_| Trouble::Unreadable(Unreadable::ReadError))
        });
        match meta {
            Ok(meta) => {
                self.stream_total += meta.size;
                self.notices.push_back((
                    0,
                    Notice::Update(Update {
                        entry: entry_id,
                        attempt,
                        size: meta.size,
                        mtime_ns: meta.mtime_ns,
                    }),
                ));
                self.retry_queue.push_back(entry_id);
            }
            Err(trouble) => {
                let state = &mut books.entries[entry];
                state.trouble = Some(trouble);
                state.abandoned = true;
                self.notices.push_back((
                    0,
                    Notice::Abandon(Abandon {
                        entry: entry_id,
                        attempt,
                        trouble,
                    }),
                ));
            }
        }
        Ok(())
    }

    /// The oldest segment not yet advertised, if any: notices tagged above it wait.
    fn oldest_unadvertised(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| {
                matches!(
                    s.state,
                    SlotState::Reading | SlotState::Hashing | SlotState::Ready
                )
            })
            .map(|s| s.seq)
            .min()
    }

    /// Sends the notices whose place in the stream has come.
    pub(super) fn send_notices(&mut self, channel: &mut Channel) {
        let oldest = self.oldest_unadvertised();
        let mut index = 0;
        while index < self.notices.len() {
            let (tag, notice) = self.notices[index];
            if oldest.is_some_and(|seq| seq < tag) {
                index += 1;
                continue;
            }
            let message = match notice {
                Notice::Update(update) => Message::Update(update),
                Notice::Abandon(abandon) => Message::Abandon(abandon),
            };
            if wire::send(channel, &message).is_err() {
                return;
            }
            self.notices.remove(index);
        }
    }

    /// True while a notice must still go out before the segment numbered `seq`.
    pub(super) fn notice_before(&self, seq: u64) -> bool {
        self.notices.iter().any(|(tag, _)| *tag <= seq)
    }
}
