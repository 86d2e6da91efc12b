//! Lanes (PROTOCOL.md §8): extra TCP connections of one session, opened by the receiver,
//! that carry parts from the sender when one connection cannot fill the path (an
//! untuned host caps one TCP stream at its send buffer per round trip).
//!
//! A lane is bound to its session's keys: it opens with a lane hello that names the
//! session and proves knowledge of its secret, and every record on it is sealed with a
//! key of its own, derived from the same secret, with its own sequence numbers. Only
//! `PART` messages travel on lanes, sender to receiver; everything else stays on the
//! session's own connection (lane 0).

use hkdf::Hkdf;
use sha2::Sha256;

use crate::crypto::RecordCipher;
use crate::error::Error;
use crate::handshake::{MAGIC, VERSION};
use crate::record::{ContentType, Direction, RecordReader, TransmitBuffer, sealed_len};
use crate::sealing::{NotHandedOut, SealWork};

/// The role byte of a lane hello (a session's hellos use 1 and 2).
const LANE_ROLE: u8 = 3;
/// Bytes that name a session in a lane hello (the start of its transcript hash).
pub const SESSION_ID_LEN: usize = 16;
/// Where the session id starts in a lane hello.
const SESSION_ID_AT: usize = MAGIC.len() + 2 + 1;
/// Where the lane number sits.
const LANE_AT: usize = SESSION_ID_AT + SESSION_ID_LEN;
/// Where the proof starts.
const PROOF_AT: usize = LANE_AT + 1;
/// Bytes in a lane hello: magic, version, role 3, session id, lane number, proof.
pub const LANE_HELLO_LEN: usize = PROOF_AT + 32;
/// Bytes a listener reads before it can tell a lane hello from a session's hello.
pub const HELLO_PREFIX_LEN: usize = SESSION_ID_AT;
/// Connections one session may have, its own included: lanes are numbered 1 to 7.
pub const MAX_LANES: usize = 8;
/// HKDF info for the lane secret (with the transcript hash after it).
pub const LANE_SECRET_LABEL: &[u8] = b"ferry/1 lanes";

/// True if `prefix` (at least [`HELLO_PREFIX_LEN`] bytes) starts a lane hello rather
/// than a session's hello: the listener routes the connection by it.
pub fn is_lane_hello(prefix: &[u8]) -> bool {
    prefix.len() >= HELLO_PREFIX_LEN
        && prefix[..MAGIC.len()] == MAGIC
        && prefix[MAGIC.len()..MAGIC.len() + 2] == VERSION.to_be_bytes()
        && prefix[MAGIC.len() + 2] == LANE_ROLE
}

/// The session a lane hello names, for a listener serving several sessions at once.
pub fn lane_hello_session(hello: &[u8; LANE_HELLO_LEN]) -> [u8; SESSION_ID_LEN] {
    let mut id = [0u8; SESSION_ID_LEN];
    id.copy_from_slice(&hello[SESSION_ID_AT..LANE_AT]);
    id
}

/// Why a lane hello was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaneRefused {
    /// It is not a lane hello of this protocol version.
    #[error("not a Ferry lane hello")]
    NotALane,
    /// It names another session.
    #[error("the lane belongs to another session")]
    OtherSession,
    /// Its proof does not match: it does not know the session's secret.
    #[error("the lane could not prove it belongs to the session")]
    BadProof,
    /// Its number is out of range, or was used before in this session.
    #[error("lane number {0} is out of range or already used")]
    Number(u8),
    /// The session is not streaming (not yet keyed, or over).
    #[error("the session takes no lanes now")]
    NotNow,
}

/// The secret lanes derive from, and the session's public name.
#[derive(Clone)]
pub(crate) struct LaneSecret {
    session: [u8; SESSION_ID_LEN],
    prk: [u8; 32],
}

impl LaneSecret {
    /// From the handshake: `HKDF-Expand(PRK, "ferry/1 lanes" ‖ transcript)`, where PRK is
    /// the one the record keys come from (salt: the token; input: the shared secret).
    pub(crate) fn new(token: &[u8], shared_secret: &[u8; 32], transcript: &[u8; 32]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(token), shared_secret);
        let mut prk = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit.
        let _ = hkdf.expand_multi_info(&[LANE_SECRET_LABEL, transcript], &mut prk);
        let mut session = [0u8; SESSION_ID_LEN];
        session.copy_from_slice(&transcript[..SESSION_ID_LEN]);
        LaneSecret { session, prk }
    }

    fn expand(&self, label: &[u8], lane: u8) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Ok(hkdf) = Hkdf::<Sha256>::from_prk(&self.prk) {
            let _ = hkdf.expand_multi_info(&[label, &[lane]], &mut out);
        }
        out
    }

    /// The receiver's hello for lane `lane`.
    pub(crate) fn hello(&self, lane: u8) -> [u8; LANE_HELLO_LEN] {
        let mut hello = [0u8; LANE_HELLO_LEN];
        hello[..MAGIC.len()].copy_from_slice(&MAGIC);
        hello[MAGIC.len()..MAGIC.len() + 2].copy_from_slice(&VERSION.to_be_bytes());
        hello[MAGIC.len() + 2] = LANE_ROLE;
        hello[SESSION_ID_AT..LANE_AT].copy_from_slice(&self.session);
        hello[LANE_AT] = lane;
        hello[PROOF_AT..].copy_from_slice(&self.expand(b"join", lane));
        hello
    }

    /// The lane a hello opens, if it proves it belongs to this session.
    pub(crate) fn check(&self, hello: &[u8; LANE_HELLO_LEN]) -> Result<u8, LaneRefused> {
        if !is_lane_hello(hello) {
            return Err(LaneRefused::NotALane);
        }
        if lane_hello_session(hello) != self.session {
            return Err(LaneRefused::OtherSession);
        }
        let lane = hello[LANE_AT];
        if !(1..MAX_LANES as u8).contains(&lane) {
            return Err(LaneRefused::Number(lane));
        }
        let expected = self.expand(b"join", lane);
        // Constant time: the proof is a secret-derived value.
        let diff = expected
            .iter()
            .zip(&hello[PROOF_AT..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(LaneRefused::BadProof);
        }
        Ok(lane)
    }

    fn cipher(&self, lane: u8) -> RecordCipher {
        RecordCipher::new(&self.expand(b"parts", lane))
    }
}

/// The sender's end of a lane: seals parts into its own buffer.
pub(crate) struct LaneOut {
    direction: Direction,
    out: TransmitBuffer,
}

impl LaneOut {
    pub(crate) fn new(secret: &LaneSecret, lane: u8, capacity: usize) -> Self {
        LaneOut {
            direction: Direction::new(secret.cipher(lane)),
            out: TransmitBuffer::new(capacity),
        }
    }

    /// Room for another record of `payload` bytes.
    pub(crate) fn room_for(&self, payload: usize) -> bool {
        self.out.free() >= sealed_len(payload)
    }

    /// Free bytes in its buffer.
    pub(crate) fn free(&self) -> usize {
        self.out.free()
    }

    /// Seals one message of `len` bytes that `fill` writes.
    #[cfg(test)]
    pub(crate) fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        self.send_with_tail(len, fill, &[])
    }

    /// Seals one message: `head_len` bytes that `fill` writes, then `tail`, encrypted
    /// from where it is.
    pub(crate) fn send_with_tail(
        &mut self,
        head_len: usize,
        fill: impl FnOnce(&mut [u8]),
        tail: &[u8],
    ) -> bool {
        let total = sealed_len(head_len + tail.len());
        if self.out.offloading() && !tail.is_empty() {
            let Some(record) = self.out.append_deferred(total) else {
                return false;
            };
            let filled = |buf: &mut [u8]| {
                fill(buf);
                buf.len()
            };
            let composed = crate::channel::compose_with_tail(
                &mut self.direction,
                ContentType::Data,
                record,
                head_len,
                filled,
                tail,
            );
            let Ok(sequence) = composed else {
                self.out.truncate_last(total);
                return false;
            };
            return self.out.defer_last(total, sequence);
        }
        let Some(record) = self.out.append(total) else {
            return false;
        };
        let head = crate::record::HEADER_LEN + 1;
        fill(&mut record[head..head + head_len]);
        if self
            .direction
            .seal(ContentType::Data, record, tail)
            .is_err()
        {
            self.out.truncate_last(total);
            return false;
        }
        true
    }

    pub(crate) fn pending(&self) -> &[u8] {
        self.out.pending()
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// Parts from now on are composed for a driver's threads to seal
    /// ([`crate::sealing`]).
    pub(crate) fn offload_sealing(&mut self) {
        self.out.offload_sealing(self.direction.cipher());
    }

    /// The next batch of this lane's records to seal.
    pub(crate) fn poll_seal_work(&mut self) -> Option<SealWork> {
        self.out.poll_seal_work()
    }

    /// A batch from [`LaneOut::poll_seal_work`] is back: whether every record in it
    /// sealed.
    pub(crate) fn seal_done(&mut self, work: SealWork) -> Result<bool, NotHandedOut> {
        self.out.seal_done(work)
    }

    /// Records composed for threads and not yet back.
    pub(crate) fn sealing_pending(&self) -> bool {
        self.out.sealing_pending()
    }
}

/// The receiver's end of a lane: its hello to send, then records to open.
pub(crate) struct LaneIn {
    hello: [u8; LANE_HELLO_LEN],
    hello_sent: usize,
    direction: Direction,
    reader: RecordReader,
}

impl LaneIn {
    pub(crate) fn new(secret: &LaneSecret, lane: u8, max_payload: usize) -> Self {
        LaneIn {
            hello: secret.hello(lane),
            hello_sent: 0,
            direction: Direction::new(secret.cipher(lane)),
            reader: RecordReader::new(max_payload),
        }
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.hello[self.hello_sent..]
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.hello_sent = (self.hello_sent + n).min(LANE_HELLO_LEN);
    }

    /// Takes bytes up to the end of the next record; returns how many it took and, once a
    /// whole record is in and authentic, its message.
    pub(crate) fn push(&mut self, input: &[u8]) -> Result<(usize, Option<&[u8]>), Error> {
        let (taken, complete) = self.reader.push(input)?;
        if !complete {
            return Ok((taken, None));
        }
        let opened = self.reader.open(&mut self.direction, None);
        self.reader.clear();
        let opened = opened?;
        if opened.content != ContentType::Data {
            return Err(Error::UnexpectedRecord {
                record: self.direction.sequence() - 1,
                why: "a lane carries data records only",
            });
        }
        Ok((taken, Some(self.reader.bytes(opened.payload))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> LaneSecret {
        LaneSecret::new(b"token", &[byte; 32], &[byte.wrapping_add(1); 32])
    }

    #[test]
    fn a_lane_hello_proves_its_session_and_nothing_else_does() {
        let ours = secret(1);
        let hello = ours.hello(3);
        assert!(is_lane_hello(&hello));
        assert_eq!(ours.check(&hello), Ok(3));
        assert_eq!(secret(2).check(&hello), Err(LaneRefused::OtherSession));
        let mut forged = hello;
        forged[LANE_AT] = 4;
        assert_eq!(ours.check(&forged), Err(LaneRefused::BadProof));
        let mut tampered = hello;
        tampered[LANE_HELLO_LEN - 1] ^= 1;
        assert_eq!(ours.check(&tampered), Err(LaneRefused::BadProof));
        assert_eq!(ours.check(&ours.hello(0)), Err(LaneRefused::Number(0)));
        assert_eq!(ours.check(&ours.hello(8)), Err(LaneRefused::Number(8)));
        let mut session_hello = hello;
        session_hello[MAGIC.len() + 2] = 2;
        assert!(!is_lane_hello(&session_hello));
    }

    #[test]
    fn a_lane_carries_sealed_records_its_receiver_opens_in_order() {
        let s = secret(9);
        let mut out = LaneOut::new(&s, 2, 4096);
        let mut inn = LaneIn::new(&s, 2, 1024);
        for i in 0..3u8 {
            assert!(out.send_with(5, |b| b.fill(i)));
        }
        let bytes = out.pending().to_vec();
        let mut at = 0;
        let mut seen = Vec::new();
        while at < bytes.len() {
            let (n, message) = inn.push(&bytes[at..at + 7.min(bytes.len() - at)]).unwrap();
            if let Some(m) = message {
                seen.push(m.to_vec());
            }
            at += n;
        }
        assert_eq!(seen, vec![vec![0; 5], vec![1; 5], vec![2; 5]]);
        // Another lane's key does not open them.
        let mut other = LaneIn::new(&s, 3, 1024);
        assert!(other.push(&bytes).is_err());
    }
}
