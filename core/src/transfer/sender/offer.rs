//! The manifest going out: its header, then as many entries per message as fit.

use crate::channel::Channel;
use crate::transfer::TransferConfig;
use crate::transfer::manifest::Manifest;
use crate::transfer::wire::bodies::entry_len;
use crate::transfer::wire::{self, Entries, ManifestBegin, Message};

/// How far the manifest has gone out.
#[derive(Default)]
pub(super) struct Offering {
    begun: bool,
    next: usize,
}

impl Offering {
    /// Sends what the channel has room for; returns whether anything went out, and
    /// whether the whole manifest has.
    pub(super) fn send(
        &mut self,
        channel: &mut Channel,
        manifest: &Manifest,
        config: &TransferConfig,
    ) -> (bool, bool) {
        let mut sent = false;
        if !self.begun {
            let begin = Message::ManifestBegin(ManifestBegin {
                entries: manifest.len() as u64,
                path_bytes: manifest.path_bytes() as u64,
                total_bytes: manifest.total_bytes(),
                part_size: config.part_size as u64,
            });
            if channel.send_capacity() < begin.encoded_len() || wire::send(channel, &begin).is_err()
            {
                return (false, false);
            }
            self.begun = true;
        }
        let limit = channel.max_message_len();
        while self.next < manifest.len() {
            // As many entries as fit in one message (and in the send buffer now).
            let room = channel.send_capacity().min(limit);
            let mut size = 1 + 5;
            let mut count = 0;
            for entry in manifest.iter().skip(self.next) {
                let len = entry_len(&entry);
                if size + len > room {
                    break;
                }
                size += len;
                count += 1;
            }
            if count == 0 {
                return (sent, false);
            }
            let entries = Entries::listed(manifest, self.next..self.next + count);
            if wire::send(channel, &Message::ManifestEntries(entries)).is_err() {
                return (sent, false);
            }
            self.next += count;
            sent = true;
        }
        (sent, true)
    }
}
