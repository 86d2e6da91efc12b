//! A session's lanes as the transfer sees them (PROTOCOL.md §8): on the sender, which
//! connection each part goes out on and what went with a lane that closed; on the
//! receiver, when to ask the driver for another connection and what each one brought.
//! The keys, hellos and record framing of a lane are [`crate::lane`]'s.

use std::collections::VecDeque;

use crate::channel::Channel;
use crate::lane::{LANE_HELLO_LEN, LaneIn, LaneOut, LaneRefused, LaneSecret, MAX_LANES};
use crate::record::sealed_len;
use crate::sealing::{NotHandedOut, SealWork};
use crate::transfer::TransferError;
use crate::transfer::connection::control_reserve;
use crate::transfer::violation::{misuse, out_of_order};
use crate::transfer::wire::{self, Message};

/// How many connections a session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    /// Start with one and double them (2, 4, 8) while that raises the delivery rate, up
    /// to `max` (only on paths whose round trip is long enough for one connection's send
    /// buffer to be the limit: at least [`Connections::LONG_PATH_MICROS`]).
    Auto {
        /// The most, the session's own connection included (1 to 8).
        max: u8,
    },
    /// Exactly this many from the start of the stream (1 to 8).
    Fixed(u8),
}

impl Connections {
    /// Below this round trip one connection is not the limit (a 4 MiB send buffer per
    /// 5 ms is 800 MB/s), so `Auto` keeps to one.
    pub const LONG_PATH_MICROS: u64 = 5_000;

    /// The most connections it may come to.
    pub fn max(self) -> usize {
        usize::from(match self {
            Connections::Auto { max } | Connections::Fixed(max) => max,
        })
    }
}

impl Default for Connections {
    fn default() -> Self {
        Connections::Auto {
            max: MAX_LANES as u8,
        }
    }
}

/// What a driver asks of either side's lanes.
pub(crate) trait LaneSet {
    /// Bytes for the lane's connection.
    fn pending(&self, lane: u8) -> &[u8];
    /// `n` of them were written.
    fn advance(&mut self, lane: u8, n: usize);
    /// The lane's connection closed, failed or could not be opened.
    fn closed(&mut self, lane: u8);
    /// True while the lane is in use.
    fn is_open(&self, lane: u8) -> bool;
    /// Parts on lanes from now on are composed for a driver's threads to seal
    /// ([`crate::sealing`]).
    fn offload_sealing(&mut self) {}
    /// The next batch of a lane's records to seal.
    fn poll_seal_work(&mut self) -> Option<SealWork> {
        None
    }
    /// A batch from [`LaneSet::poll_seal_work`] is back. One for a lane that closed
    /// meanwhile is let go (its parts are sent again); one never handed out is misuse.
    fn seal_done(&mut self, work: SealWork) -> Result<(), TransferError> {
        let _ = work;
        Err(misuse(
            "sealed records came back for a lane that was never handed out",
        ))
    }
    /// Records composed for threads on an open lane and not yet back.
    fn sealing_pending(&self) -> bool {
        false
    }
}

/// A part sent on a lane and not yet known to have arrived: its segment's place in the
/// stream and its index.
type Sent = (u64, u32);

struct OutLane {
    out: LaneOut,
    /// Parts sent on it whose segment is not yet proven, oldest first.
    log: VecDeque<Sent>,
    /// Parts dropped from the front of the log (their segments were proven).
    trimmed: u64,
    /// False once its connection closed (the log stays until the receiver counts it).
    open: bool,
}

/// The sender's lanes.
pub(crate) struct SenderLanes {
    lanes: Vec<Option<OutLane>>,
    /// Lane numbers used so far: each joins once.
    used: [bool; MAX_LANES],
    /// Lanes whose closing the receiver is still to be told of (`LANE_DOWN`).
    down: VecDeque<u8>,
    buffer: usize,
    log_capacity: usize,
    /// Lanes seal their parts on a driver's threads ([`LaneSet::offload_sealing`]).
    offload_sealing: bool,
}

impl SenderLanes {
    /// `buffer`: bytes of sealed records a lane may hold; `log_capacity`: parts a lane
    /// may have unproven (the segments in flight's worth).
    pub(crate) fn new(buffer: usize, log_capacity: usize) -> Self {
        SenderLanes {
            lanes: (0..MAX_LANES).map(|_| None).collect(),
            used: [false; MAX_LANES],
            down: VecDeque::new(),
            buffer,
            log_capacity,
            offload_sealing: false,
        }
    }

    /// A receiver's lane hello: the lane it opens, if it proves it belongs here.
    pub(crate) fn join(
        &mut self,
        secret: &LaneSecret,
        hello: &[u8; LANE_HELLO_LEN],
    ) -> Result<u8, LaneRefused> {
        let lane = secret.check(hello)?;
        if core::mem::replace(&mut self.used[usize::from(lane)], true) {
            return Err(LaneRefused::Number(lane));
        }
        let mut out = LaneOut::new(secret, lane, self.buffer);
        if self.offload_sealing {
            out.offload_sealing();
        }
        self.lanes[usize::from(lane)] = Some(OutLane {
            out,
            log: VecDeque::with_capacity(self.log_capacity),
            trimmed: 0,
            open: true,
        });
        Ok(lane)
    }

    fn lane(&self, lane: u8) -> Option<&OutLane> {
        self.lanes.get(usize::from(lane)).and_then(Option::as_ref)
    }

    /// Sends the `LANE_DOWN`s due, as the channel has room.
    pub(crate) fn send_notices(&mut self, channel: &mut Channel) {
        while let Some(&lane) = self.down.front() {
            if wire::send(channel, &Message::LaneDown { lane }).is_err() {
                return;
            }
            self.down.pop_front();
        }
    }

    /// `LANE_LOST`: the receiver took `parts` parts from the lane before it closed; the
    /// ones after them are lost and come back to be sent again. A lane that never joined
    /// here (refused, or its connection never arrived) carried nothing: with 0 parts its
    /// loss is let be.
    pub(crate) fn lost(&mut self, lane: u8, parts: u64) -> Result<Vec<Sent>, TransferError> {
        let gone = self.lanes.get_mut(usize::from(lane)).and_then(Option::take);
        self.down.retain(|&l| l != lane);
        let Some(gone) = gone else {
            return if parts == 0 {
                Ok(Vec::new())
            } else {
                Err(out_of_order(
                    "a lane loss counting parts on a lane that never joined",
                ))
            };
        };
        let kept = parts
            .checked_sub(gone.trimmed)
            .filter(|&k| k <= gone.log.len() as u64)
            .ok_or(out_of_order(
                "a lane loss counting parts the lane did not carry",
            ))?;
        Ok(gone.log.into_iter().skip(kept as usize).collect())
    }

    /// Forgets the logged parts of segments no longer in flight (proven or given up).
    pub(crate) fn trim(&mut self, in_flight: impl Fn(u64) -> bool) {
        for lane in self.lanes.iter_mut().flatten() {
            while lane.log.front().is_some_and(|&(seq, _)| !in_flight(seq)) {
                lane.log.pop_front();
                lane.trimmed += 1;
            }
        }
    }

    /// Sends one part: on the open lane with the most room for it, or, while no lane is
    /// open, on the session's own connection (keeping room for control messages there).
    /// Once lanes are open the session's own connection carries control messages only:
    /// a part queued behind it would hold up the requests and proofs, and the round trip
    /// the receiver measures. False if there is no room now.
    pub(crate) fn send_part(
        &mut self,
        channel: &mut Channel,
        sent: Sent,
        message: &Message<'_>,
    ) -> bool {
        let len = message.encoded_len();
        let capacity = self.log_capacity;
        if !self.lanes.iter().flatten().any(|l| l.open) {
            return channel.send_room() >= sealed_len(len) + control_reserve(channel)
                && wire::send(channel, message).is_ok();
        }
        let Some(lane) = self
            .lanes
            .iter_mut()
            .flatten()
            .filter(|l| l.open && l.out.room_for(len) && l.log.len() < capacity)
            .max_by_key(|l| l.out.free())
        else {
            return false;
        };
        let tail = message.tail();
        if !lane
            .out
            .send_with_tail(len - tail.len(), |buf| message.encode_head(buf), tail)
        {
            return false;
        }
        lane.log.push_back(sent);
        true
    }
}

impl LaneSet for SenderLanes {
    fn is_open(&self, lane: u8) -> bool {
        self.lane(lane).is_some_and(|l| l.open)
    }

    fn pending(&self, lane: u8) -> &[u8] {
        match self.lane(lane) {
            Some(l) if l.open => l.out.pending(),
            _ => &[],
        }
    }

    fn advance(&mut self, lane: u8, n: usize) {
        if let Some(Some(l)) = self.lanes.get_mut(usize::from(lane)) {
            l.out.advance(n);
        }
    }

    /// The lane's connection closed here: it carries nothing more, and the receiver is
    /// told, so that it says how many parts it took from it.
    fn closed(&mut self, lane: u8) {
        if let Some(Some(l)) = self.lanes.get_mut(usize::from(lane))
            && core::mem::replace(&mut l.open, false)
        {
            self.down.push_back(lane);
        }
    }

    fn offload_sealing(&mut self) {
        self.offload_sealing = true;
        for lane in self.lanes.iter_mut().flatten() {
            lane.out.offload_sealing();
        }
    }

    fn poll_seal_work(&mut self) -> Option<SealWork> {
        self.lanes
            .iter_mut()
            .zip(0u8..)
            .filter_map(|(lane, number)| Some((lane.as_mut().filter(|l| l.open)?, number)))
            .find_map(|(lane, number)| {
                let mut work = lane.out.poll_seal_work()?;
                work.lane = Some(number);
                Some(work)
            })
    }

    fn seal_done(&mut self, work: SealWork) -> Result<(), TransferError> {
        let never = || misuse("sealed records came back for a lane that was never handed out");
        let number = work.lane.ok_or_else(never)?;
        if !self.used.get(usize::from(number)).copied().unwrap_or(false) {
            return Err(never());
        }
        let Some(Some(lane)) = self.lanes.get_mut(usize::from(number)) else {
            // Lost meanwhile: its parts are sent again elsewhere.
            return Ok(());
        };
        match lane.out.seal_done(work) {
            Ok(true) => Ok(()),
            Err(NotHandedOut) => Err(never()),
            // Closed meanwhile: nothing of it goes out anyway.
            Ok(false) if !lane.open => Ok(()),
            Ok(false) => Err(TransferError::Sealing(
                "a batch of records came back unsealed (not run, or the AEAD refused)",
            )),
        }
    }

    fn sealing_pending(&self) -> bool {
        self.lanes
            .iter()
            .flatten()
            .any(|lane| lane.open && lane.out.sealing_pending())
    }
}

struct InLane {
    lane: LaneIn,
    /// Parts taken from it.
    parts: u64,
    /// The driver connected it (its hello may go out).
    connected: bool,
    open: bool,
}

/// The receiver's lanes, and when to ask for another.
pub(crate) struct ReceiverLanes {
    lanes: Vec<Option<InLane>>,
    policy: Connections,
    /// Lanes asked for so far.
    asked: u8,
    /// Auto: the delivery rate and measuring round when the last step was asked for;
    /// `None` before the first. Growth stops for good once a lane did not help.
    probe: Option<(u64, u64)>,
    /// Lanes of the current step still to ask for.
    step_left: u8,
    stopped: bool,
    /// `LANE_LOST`s still to send: lane and parts taken from it.
    lost: VecDeque<(u8, u64)>,
    max_payload: usize,
}

/// Measuring rounds before the first lane, and rounds a step of lanes gets to show its
/// effect (a new lane needs a round trip to connect, and the window a round or two to
/// grow into it) before the next. Fewer (2 and 3, not 3 and 6) gave more on every long
/// path in the simulator's WAN example, most where each connection is capped: 512 MiB
/// across 1 Gbit/s × 200 ms capped at 4 MiB, 56.4% of the link against 53.4%.
const FIRST_ROUNDS: u64 = 2;
const PROBE_ROUNDS: u64 = 3;

impl ReceiverLanes {
    pub(crate) fn new(policy: Connections, max_payload: usize) -> Self {
        ReceiverLanes {
            lanes: (0..MAX_LANES).map(|_| None).collect(),
            policy,
            asked: 0,
            probe: None,
            step_left: 0,
            stopped: false,
            lost: VecDeque::new(),
            max_payload,
        }
    }

    /// The next lane to ask the driver for, if one is due: `rate` is the delivery rate
    /// now, `rounds` the measuring rounds so far, `rtt_micros` the path's round trip
    /// (the handshake's: requests' round trips also hold a busy peer's delays).
    /// `Auto` tries a first step of two lanes after the first rounds, then doubles the
    /// connections while each step raises the rate by an eighth within its rounds, and
    /// stops at the first that did not. Its lanes stay: closing them throws away what
    /// they carry (sent again on the others) and leaves fewer connections than the path
    /// may need; on the link emulator, capped at 4 MiB per connection × 100 ms, closing
    /// them left 75 MB/s and keeping them 95–100, where one connection was not capped
    /// the same either way (106 MB/s at 100 ms, 92 at 200). (The first step does not wait for
    /// the window to find the rate: where one connection is capped, the rate it finds is
    /// the cap's, and the rounds spent finding it were the most a long transfer lost.
    /// A lane costs the sender no memory, and each step sets the window growing again,
    /// so a path that did not need the lanes loses little: the simulator's WAN example
    /// measures both.)
    pub(crate) fn next_wanted(
        &mut self,
        secret: &LaneSecret,
        rate: u64,
        rounds: u64,
        rtt_micros: u64,
    ) -> Option<u8> {
        let lanes_so_far = 1 + usize::from(self.asked);
        if self.stopped || lanes_so_far >= self.policy.max().min(MAX_LANES) {
            return None;
        }
        if let Connections::Auto { .. } = self.policy
            && self.step_left == 0
        {
            if rtt_micros < Connections::LONG_PATH_MICROS {
                return None;
            }
            match self.probe {
                None if rounds < FIRST_ROUNDS => return None,
                None => {}
                Some((_, at)) if rounds < at + PROBE_ROUNDS => return None,
                // The last step raised the rate by an eighth or more: double again.
                Some((before, _)) if rate > before.saturating_add(before / 8) => {}
                // It did not: growth stops for good (a rate measured as the largest of
                // the last rounds can miss a step that helps: its lanes stay).
                Some(_) => {
                    self.stopped = true;
                    return None;
                }
            }
            self.probe = Some((rate, rounds));
            // Parts leave the session's own connection once a lane is open, so the first
            // step opens two lanes (two connections carry data); each step after doubles.
            self.step_left = (lanes_so_far as u8).max(2);
        }
        self.step_left = self.step_left.saturating_sub(1);
        self.asked += 1;
        let lane = self.asked;
        self.lanes[usize::from(lane)] = Some(InLane {
            lane: LaneIn::new(secret, lane, self.max_payload),
            parts: 0,
            connected: false,
            open: true,
        });
        Some(lane)
    }

    fn lane_mut(&mut self, lane: u8) -> Option<&mut InLane> {
        self.lanes
            .get_mut(usize::from(lane))
            .and_then(Option::as_mut)
    }

    fn lane(&self, lane: u8) -> Option<&InLane> {
        self.lanes.get(usize::from(lane)).and_then(Option::as_ref)
    }

    /// The driver connected the lane: its hello goes out.
    pub(crate) fn connected(&mut self, lane: u8) -> bool {
        match self.lane_mut(lane) {
            Some(l) if l.open => {
                l.connected = true;
                true
            }
            _ => false,
        }
    }

    /// Sends the `LANE_LOST`s due, as the channel has room.
    pub(crate) fn send_notices(&mut self, channel: &mut Channel) {
        while let Some(&(lane, parts)) = self.lost.front() {
            if wire::send(channel, &Message::LaneLost { lane, parts }).is_err() {
                return;
            }
            self.lost.pop_front();
        }
    }

    /// Takes bytes from the lane's connection up to the end of its next record; returns
    /// how many it took and, once a whole record is in, its message (a part, counted).
    pub(crate) fn push(
        &mut self,
        lane: u8,
        input: &[u8],
    ) -> Result<(usize, Option<&[u8]>), TransferError> {
        let Some(l) = self
            .lanes
            .get_mut(usize::from(lane))
            .and_then(Option::as_mut)
        else {
            return Err(TransferError::Misuse(
                "input for a lane the session never asked for",
            ));
        };
        if !l.open {
            // The lane was given up; what still comes on it is not counted, and the
            // sender sends it again.
            return Ok((input.len(), None));
        }
        let (taken, record) = l.lane.push(input)?;
        if record.is_some() {
            l.parts += 1;
        }
        Ok((taken, record))
    }
}

impl LaneSet for ReceiverLanes {
    fn is_open(&self, lane: u8) -> bool {
        self.lane(lane).is_some_and(|l| l.open)
    }

    fn pending(&self, lane: u8) -> &[u8] {
        match self.lane(lane) {
            Some(l) if l.open && l.connected => l.lane.pending(),
            _ => &[],
        }
    }

    fn advance(&mut self, lane: u8, n: usize) {
        if let Some(l) = self.lane_mut(lane) {
            l.lane.advance(n);
        }
    }

    /// The lane closed (here, or the sender said so): the sender is told how many parts
    /// came on it, and sends the rest again on another connection.
    fn closed(&mut self, lane: u8) {
        if let Some(l) = self.lane_mut(lane)
            && core::mem::replace(&mut l.open, false)
        {
            let parts = l.parts;
            // A lane never connected carried nothing; the sender never saw it.
            if l.connected {
                self.lost.push_back((lane, parts));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> LaneSecret {
        LaneSecret::new(b"token", &[1; 32], &[2; 32])
    }

    /// What `next_wanted` asks for over the rounds given, each with its rate.
    fn asked(lanes: &mut ReceiverLanes, rounds: &[(u64, u64)], rtt: u64) -> Vec<(u64, u8)> {
        let s = secret();
        let mut out = Vec::new();
        for &(round, rate) in rounds {
            while let Some(lane) = lanes.next_wanted(&s, rate, round, rtt) {
                out.push((round, lane));
            }
        }
        out
    }

    /// Sender lanes sealing on threads, lane 1 joined, one part composed on it and its
    /// batch taken out.
    fn lane_batch_out(secret: &LaneSecret) -> (SenderLanes, SealWork) {
        let mut lanes = SenderLanes::new(1 << 20, 64);
        lanes.offload_sealing();
        assert_eq!(lanes.join(secret, &secret.hello(1)), Ok(1));
        let lane = lanes.lanes[1].as_mut().expect("joined");
        assert!(lane.out.send_with_tail(3, |b| b.fill(1), &[2; 100]));
        assert!(lanes.pending(1).is_empty() && lanes.sealing_pending());
        let work = lanes.poll_seal_work().expect("a batch");
        assert_eq!(work.lane, Some(1));
        (lanes, work)
    }

    #[test]
    fn a_lanes_batches_come_back_checked_open_closed_or_lost() {
        let s = secret();
        // Sealed: its record goes out on the lane.
        let (mut lanes, mut work) = lane_batch_out(&s);
        work.run();
        assert_eq!(lanes.seal_done(work), Ok(()));
        assert_eq!(lanes.pending(1).len(), sealed_len(103));
        // Unsealed on an open lane: the session ends (and tells the peer why).
        let (mut lanes, work) = lane_batch_out(&s);
        assert!(matches!(
            lanes.seal_done(work),
            Err(TransferError::Sealing(_))
        ));
        assert!(lanes.pending(1).is_empty());
        // Unsealed, the lane closed meanwhile: let go; nothing of it goes out.
        let (mut lanes, work) = lane_batch_out(&s);
        lanes.closed(1);
        assert_eq!(lanes.seal_done(work), Ok(()));
        assert!(!lanes.sealing_pending());
        // Another session's batch for the same lane: misuse, refused.
        let other = LaneSecret::new(b"other", &[3; 32], &[4; 32]);
        let (mut lanes, _) = lane_batch_out(&s);
        let (_, mut foreign) = lane_batch_out(&other);
        foreign.run();
        assert!(matches!(
            lanes.seal_done(foreign),
            Err(TransferError::Misuse(_))
        ));
        // A lane that never joined: misuse; one lost meanwhile: let go.
        let (mut lanes, mut work) = lane_batch_out(&s);
        work.run();
        work.lane = Some(2);
        assert!(matches!(
            lanes.seal_done(work),
            Err(TransferError::Misuse(_))
        ));
        let (mut lanes, work) = lane_batch_out(&s);
        assert_eq!(lanes.lost(1, 0).map(|lost| lost.len()), Ok(0));
        assert_eq!(lanes.seal_done(work), Ok(()));
    }

    #[test]
    fn auto_doubles_while_the_rate_rises_and_stops_when_it_does_not() {
        let mut lanes = ReceiverLanes::new(Connections::default(), 1024);
        let (f, p) = (FIRST_ROUNDS, PROBE_ROUNDS);
        // The first step after FIRST_ROUNDS; each after it judged PROBE_ROUNDS later, not
        // a round before.
        let rounds = [
            (f - 1, 40),
            (f, 40),
            (f + p - 1, 60),
            (f + p, 60),
            (f + 2 * p - 1, 150),
            (f + 2 * p, 150),
            (f + 3 * p, 400),
        ];
        assert_eq!(
            asked(&mut lanes, &rounds, 100_000),
            [
                (f, 1),
                (f, 2),
                (f + p, 3),
                (f + p, 4),
                (f + p, 5),
                (f + 2 * p, 6),
                (f + 2 * p, 7)
            ]
        );
        // A step that brings nothing ends the growth for good.
        let mut flat = ReceiverLanes::new(Connections::default(), 1024);
        let rounds = [(f, 40), (f + p, 80), (f + 2 * p, 82), (30, 500)];
        assert_eq!(
            asked(&mut flat, &rounds, 100_000),
            [(f, 1), (f, 2), (f + p, 3), (f + p, 4), (f + p, 5)]
        );
        // Its lanes stay, with the ones before.
        let open: Vec<u8> = (1..8).filter(|&l| flat.is_open(l)).collect();
        assert_eq!(open, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_short_path_gets_no_lanes_and_a_fixed_number_gets_them_at_once() {
        let mut auto = ReceiverLanes::new(Connections::default(), 1024);
        assert!(asked(&mut auto, &[(3, 40), (9, 400)], 4_999).is_empty());
        let mut early = ReceiverLanes::new(Connections::default(), 1024);
        let s = secret();
        assert_eq!(early.next_wanted(&s, 40, FIRST_ROUNDS - 1, 100_000), None);
        let mut fixed = ReceiverLanes::new(Connections::Fixed(3), 1024);
        assert_eq!(asked(&mut fixed, &[(0, 0)], 0), [(0, 1), (0, 2)]);
        let mut capped = ReceiverLanes::new(Connections::Auto { max: 2 }, 1024);
        assert_eq!(asked(&mut capped, &[(3, 40), (9, 400)], 100_000), [(3, 1)]);
        let mut three = ReceiverLanes::new(Connections::Auto { max: 3 }, 1024);
        assert_eq!(
            asked(&mut three, &[(3, 40), (9, 400)], 100_000),
            [(3, 1), (3, 2)]
        );
    }
}
