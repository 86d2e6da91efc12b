//! How much the receiver asks for before the parts arrive: a window that sizes itself for
//! the path.

use std::collections::VecDeque;

use crate::time::Timestamp;
use crate::transfer::Connections;

/// Rate samples kept for the maximum (one per round trip).
const RATE_ROUNDS: usize = 10;
/// How long the smallest round trip seen stands before a new one replaces it (a path can
/// change; a queue that filled must not count).
const MIN_RTT_LIFETIME_MICROS: u64 = 10_000_000;
/// The shortest measuring round: loopback's tiny round trips still give a rate, and one
/// that spans many of a driver's reads (parts arrive in bursts, a read's worth at one
/// instant). A round of a millisecond caught single bursts as rates of several GB/s, and
/// the window, sized from the largest rate, grew to its cap on loopback, where the floor
/// is plenty (and each side then held 40 MiB of segments instead of 10).
const MIN_ROUND_MICROS: u64 = 10_000;
/// The window over the bandwidth-delay product while it is still finding the path's rate
/// (each round's rate can then be this many times the last), and once it has found it
/// (room for the rate to rise, and for round trips longer than the shortest).
const STARTUP_GAIN: u128 = 8;
const STEADY_GAIN: u128 = 3;
const GAIN_DIVISOR: u128 = 2;
/// Startup ends after this many rounds in a row whose rate did not rise by a quarter.
const FLAT_ROUNDS: u8 = 3;
/// First answers this slow, but no slower, leave the path's length in doubt: on a busy
/// machine a loopback's first answers took 2.5 to 7 ms, now and then 20 ms or more
/// (each side setting up its first segments while its peer does too, two processes and
/// their threads on two cores), and a path of a few tens of milliseconds is no slower.
/// Such a path measures its round trip again with a probe (see [`Probe`]), at the cost
/// of a round trip once; a longer one is taken at its word.
const DOUBTFUL_PATH_MICROS: u64 = 50_000;

/// The receive window: bytes requested and not yet arrived are kept within it.
///
/// It starts at `initial` and grows by every part received (slow start) up to `floor`.
/// Beyond that it follows the path: from the round trip of its own requests (until the
/// first part that answers each) and the rate at which parts arrive, it aims at a gain ×
/// the bandwidth-delay product (the largest rate of the last rounds × the smallest
/// round trip), up to `max`. While the window limits the rate, each round's rate is the
/// gain × the last (4 while it keeps rising by a quarter a round on a long path, 1.5
/// once it stopped, and on a short path), so it grows until the path, not the window,
/// sets the rate; when the path slows, the rate samples fall and the window follows them
/// down to the floor.
#[derive(Debug)]
pub(super) struct Window {
    size: usize,
    slow_start: usize,
    floor: usize,
    max: usize,
    outstanding: usize,
    /// Requests not wholly answered: when each went out, its bytes still to come, and
    /// whether a part of it has arrived.
    requests: VecDeque<Request>,
    min_rtt: Option<(u64, Timestamp)>,
    /// The measuring round under way: when it began and the bytes delivered before it.
    round: Option<(Timestamp, u64)>,
    delivered: u64,
    /// Rates of the last rounds, bytes per second.
    rates: [u64; RATE_ROUNDS],
    next_rate: usize,
    rounds: u64,
    /// Startup: the best rate so far and the rounds since it last rose by a quarter; over
    /// (`None`) once the rate stopped rising.
    startup: Option<(u64, u8)>,
    /// The path's own round trip, µs: the handshake's, or the shortest of its requests'
    /// if one came back sooner. Round trips measured from requests also hold the time a
    /// busy sender (or receiver) took to get to them, which on a loaded loopback can be
    /// many milliseconds; only the path's decides whether slow start may go past the
    /// floor. But a handshake can be slow too (a sender paged out, a machine busy for a
    /// moment): one of 5 ms or more on loopback made the path look long, and slow start
    /// reached for the window's cap in its first round, segments granted for all of it
    /// (see the tests). A request answered sooner shows the path is no longer than that.
    path_rtt: u64,
    probe: Probe,
}

/// A request sent with (almost) nothing outstanding ahead of it, to measure the path's
/// own round trip: any other request waits behind the window's bytes, and on a short
/// path that wait, not the path, is its round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Not needed, or answered.
    Settled,
    /// Wanted: no request goes out until the window has emptied to
    /// [`Window::probe_room`], then one part alone.
    Wanted,
    /// Sent, not yet answered.
    Out,
}

#[derive(Clone, Copy, Debug)]
struct Request {
    sent: Timestamp,
    remaining: usize,
    answered: bool,
    /// The probe (see [`Probe`]).
    probe: bool,
}

impl Window {
    /// A window from `initial` bytes, kept at least `floor` once slow start has reached
    /// it and at most `max`, on a path whose handshake took `path_rtt` µs.
    pub(super) fn new(initial: usize, floor: usize, max: usize, path_rtt: u64) -> Self {
        let floor = floor.min(max).max(1);
        let start = initial.min(floor);
        Window {
            size: start,
            slow_start: start,
            floor,
            max,
            outstanding: 0,
            requests: VecDeque::new(),
            min_rtt: None,
            round: None,
            delivered: 0,
            rates: [0; RATE_ROUNDS],
            next_rate: 0,
            rounds: 0,
            startup: Some((0, 0)),
            path_rtt,
            probe: Probe::Settled,
        }
    }

    /// Room left ahead of a probe: a part or two (a stray part never answered must not
    /// hold the window shut), well under a short path's round trip at loopback rates.
    fn probe_room(&self) -> usize {
        self.floor / 16
    }

    /// True once the path's round trip is known to be long: the window may then grow by
    /// slow start past its floor and grant ahead of itself.
    fn path_is_long(&self) -> bool {
        self.path_rtt >= Connections::LONG_PATH_MICROS && self.probe == Probe::Settled
    }

    /// True if a part of `len` bytes may join a request already holding `asking` bytes:
    /// within the window, or the first part asked for when nothing is outstanding (so
    /// that a part larger than the window still goes).
    pub(super) fn admits(&self, asking: usize, len: usize) -> bool {
        if self.probe == Probe::Wanted {
            return asking == 0 && self.outstanding <= self.probe_room();
        }
        self.outstanding + asking + len <= self.size || (asking == 0 && self.outstanding == 0)
    }

    /// A request for `bytes` went out at `now`.
    pub(super) fn asked(&mut self, bytes: usize, now: Timestamp) {
        self.outstanding += bytes;
        if bytes > 0 {
            let probe = self.probe == Probe::Wanted;
            if probe {
                self.probe = Probe::Out;
            }
            self.requests.push_back(Request {
                sent: now,
                remaining: bytes,
                answered: false,
                probe,
            });
        }
    }

    /// A part of `len` bytes arrived at `now`. Parts come in the order they were asked
    /// for, so it answers the oldest request: the first part of each gives a round trip.
    pub(super) fn arrived(&mut self, len: usize, now: Timestamp) {
        self.outstanding = self.outstanding.saturating_sub(len);
        if let Some(request) = self.requests.front_mut() {
            if !request.answered {
                request.answered = true;
                let rtt = now.as_micros().saturating_sub(request.sent.as_micros());
                self.path_rtt = self.path_rtt.min(rtt);
                self.probe = match self.probe {
                    // The first answer: a path this long may be a busy short one.
                    _ if self.min_rtt.is_none()
                        && (Connections::LONG_PATH_MICROS..DOUBTFUL_PATH_MICROS)
                            .contains(&self.path_rtt) =>
                    {
                        Probe::Wanted
                    }
                    Probe::Out if request.probe => Probe::Settled,
                    other => other,
                };
                let stale = |(_, at): (u64, Timestamp)| {
                    now.as_micros().saturating_sub(at.as_micros()) > MIN_RTT_LIFETIME_MICROS
                };
                if self.min_rtt.is_none_or(|m| rtt <= m.0 || stale(m)) {
                    self.min_rtt = Some((rtt, now));
                }
            }
            request.remaining = request.remaining.saturating_sub(len);
            if request.remaining == 0 {
                self.requests.pop_front();
            }
        }
        // After the round trip it may have given: a first answer that shows a short
        // path keeps slow start at the floor from this part on.
        let ceiling = if self.long_startup() {
            self.max
        } else {
            self.floor
        };
        self.slow_start = (self.slow_start + len).min(ceiling);
        self.delivered += len as u64;
        self.measure(now);
        self.resize();
    }

    /// Ends the measuring round once it has lasted a round trip: its delivery rate is a
    /// sample.
    fn measure(&mut self, now: Timestamp) {
        let Some((started, delivered_before)) = self.round else {
            self.round = Some((now, self.delivered));
            return;
        };
        let round = self.min_rtt.map_or(0, |(rtt, _)| rtt).max(MIN_ROUND_MICROS);
        let elapsed = now.as_micros().saturating_sub(started.as_micros());
        if elapsed < round {
            return;
        }
        let bytes = self.delivered - delivered_before;
        let rate = u128::from(bytes) * 1_000_000 / u128::from(elapsed);
        let rate = u64::try_from(rate).unwrap_or(u64::MAX);
        self.rates[self.next_rate] = rate;
        self.rounds += 1;
        self.next_rate = (self.next_rate + 1) % RATE_ROUNDS;
        self.round = Some((now, self.delivered));
        if let Some((best, flat)) = self.startup {
            self.startup = if rate > best.saturating_add(best / 4) {
                Some((rate, 0))
            } else if flat + 1 >= FLAT_ROUNDS {
                None
            } else {
                Some((best, flat + 1))
            };
        }
        if !self.long_startup() {
            self.slow_start = self.slow_start.min(self.floor);
        }
    }

    /// True while slow start may take the window past its floor: finding the rate of a
    /// path whose round trip (its handshake's) is long, the last round's rate rising (or
    /// none measured yet), and the bandwidth-delay product (once a round has measured
    /// one) more than the floor holds. Growing by every part that arrives doubles the
    /// window each round trip with no lag, where sizing from the measured rate alone
    /// trails the window by a round trip at every step; stopping at the first flat round
    /// keeps a connection whose send buffer is the limit from taking requests it cannot
    /// carry (they would wait behind it when lanes open).
    fn long_startup(&self) -> bool {
        self.startup.is_some_and(|(_, flat)| flat == 0)
            && self.path_is_long()
            && (self.rounds == 0 || 2 * self.bdp() >= self.floor)
    }

    fn resize(&mut self) {
        let bdp = self.bdp() as u128;
        let gain = if self.startup.is_some() && self.path_is_long() {
            STARTUP_GAIN
        } else {
            STEADY_GAIN
        };
        let target = usize::try_from(bdp * gain / GAIN_DIVISOR).unwrap_or(usize::MAX);
        self.size = self.slow_start.max(target.min(self.max));
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The path's round trip, µs (see `path_rtt`).
    pub(super) fn path_rtt(&self) -> u64 {
        self.path_rtt
    }

    /// True while a probe is wanted or out: the path's round trip is in doubt.
    pub(super) fn probing(&self) -> bool {
        self.probe != Probe::Settled
    }

    /// The path's bandwidth-delay product as measured: the largest rate of the last
    /// rounds × the smallest round trip. On a short path (under
    /// [`Connections::LONG_PATH_MICROS`]) the round trip is the path's own: there a
    /// request's round trip is mostly the time its answer waited behind the window's
    /// bytes, so a product taken from it is about the window itself, and the startup gain
    /// grew the window on it round after round (to its 40 MiB cap on loopback after a busy
    /// start). The floor already leaves room for the delays of a busy peer.
    pub(super) fn bdp(&self) -> usize {
        let rate = self.rates.iter().copied().max().unwrap_or(0);
        let rtt = self.min_rtt.map_or(0, |(rtt, _)| rtt);
        let rtt = if !self.path_is_long() {
            rtt.min(self.path_rtt)
        } else {
            rtt
        };
        usize::try_from(u128::from(rate) * u128::from(rtt) / 1_000_000).unwrap_or(usize::MAX)
    }

    /// The window it may grow to within the next round trip: while it is still finding
    /// a long path's rate, and the path needs more than the floor, the startup gain over
    /// what it is now; else what it is. Segments are granted for this, so that a window
    /// that grows finds them already advertised.
    ///
    /// Not before a request has been answered: until then only the handshake speaks for
    /// the path, and a handshake is slow whenever a side is busy for a moment. Granted on
    /// its word, the sender read 48 segments more before it answered a request; the
    /// receiver took that wait for the path's round trip, and the window on loopback went
    /// to its cap. Nor on a short path: there the window moves little in a round trip, and
    /// a grant sent when it has moved arrives in time.
    pub(super) fn reach(&self) -> usize {
        if self.min_rtt.is_none() || !self.path_is_long() {
            return self.size;
        }
        if self.long_startup() || (self.startup.is_some() && 2 * self.bdp() >= self.floor) {
            let grown = self.size as u128 * STARTUP_GAIN / GAIN_DIVISOR;
            usize::try_from(grown).unwrap_or(usize::MAX).min(self.max)
        } else {
            self.size
        }
    }

    pub(super) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The delivery rate, bytes per second: the largest of the last rounds'.
    pub(super) fn rate(&self) -> u64 {
        self.rates.iter().copied().max().unwrap_or(0)
    }

    /// The path may carry more now (the receiver opened lanes, which lift a cap per
    /// connection): the window grows as in startup again until the rate stops rising.
    /// Without this a window that found one connection's rate grows by the steady gain
    /// only, and new lanes wait rounds for the bytes to fill them.
    pub(super) fn find_rate_again(&mut self) {
        self.startup = Some((self.rate(), 0));
    }

    /// Measuring rounds ended so far.
    pub(super) fn rounds(&self) -> u64 {
        self.rounds
    }
}

#[cfg(test)]
mod tests {
    use super::Window;
    use crate::time::Timestamp;

    fn at(micros: u64) -> Timestamp {
        Timestamp::from_micros(micros)
    }

    #[test]
    fn slow_start_grows_by_what_arrives_up_to_the_floor() {
        let mut window = Window::new(4, 10, 100, 0);
        assert!(window.admits(0, 4) && !window.admits(4, 1));
        window.asked(4, at(0));
        window.arrived(4, at(0));
        assert_eq!((window.size(), window.outstanding()), (8, 0));
        window.asked(8, at(0));
        window.arrived(8, at(0));
        assert_eq!(
            window.size(),
            10,
            "time stood still: no rate, so the floor holds"
        );
    }

    #[test]
    fn a_part_larger_than_the_window_goes_alone() {
        let mut window = Window::new(4, 4, 100, 0);
        assert!(window.admits(0, 50));
        window.asked(50, at(0));
        assert!(!window.admits(0, 1));
    }

    /// A path of `rate` bytes/s and `rtt` µs, with the receiver asking as the window
    /// allows, one part of `part` bytes per request; returns the window after `rounds`
    /// round trips.
    fn on_a_path(window: &mut Window, rate: u64, rtt: u64, part: usize, rounds: u64) -> usize {
        on_a_path_with_peak(window, rate, rtt, part, rounds, 0).0
    }

    /// As [`on_a_path`], with the most the window reached for (what segments were granted
    /// for) at any point; the sender starts answering only at `stalled` µs (a busy
    /// moment at the start).
    fn on_a_path_with_peak(
        window: &mut Window,
        rate: u64,
        rtt: u64,
        part: usize,
        rounds: u64,
        stalled: u64,
    ) -> (usize, usize) {
        let mut peak = window.reach();
        let mut now = 0u64;
        let mut link_free = stalled;
        let mut in_flight: std::collections::VecDeque<(u64, usize)> = Default::default();
        while now < rounds * rtt {
            while window.admits(0, part) && window.outstanding() + part <= window.size() {
                window.asked(part, at(now));
                // Serialised at the rate behind what is already on the link, then a
                // one-way trip each way.
                link_free = link_free.max(now + rtt / 2) + part as u64 * 1_000_000 / rate;
                in_flight.push_back((link_free + rtt / 2, part));
            }
            let Some((arrives, len)) = in_flight.pop_front() else {
                break;
            };
            now = now.max(arrives);
            window.arrived(len, at(now));
            peak = peak.max(window.reach());
        }
        (window.size(), peak)
    }

    #[test]
    fn grows_to_the_bandwidth_delay_product_of_a_long_fat_path() {
        // 125 MB/s × 100 ms: 12.5 MB in flight fill it.
        let mut window = Window::new(256 << 10, 4 << 20, 64 << 20, 100_000);
        let size = on_a_path(&mut window, 125_000_000, 100_000, 64 << 10, 40);
        assert!(
            (14_000_000..=24_000_000).contains(&size),
            "window {size} for a 12.5 MB bandwidth-delay product"
        );
    }

    #[test]
    fn doubles_each_round_trip_while_a_long_path_keeps_taking_more() {
        // 125 MB/s × 200 ms: 25 MB fill it. Grown only from measured rates, a round
        // behind, the window was still 16 MiB after three round trips (it had reached
        // that in two); slow start doubles it each one.
        let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 200_000);
        let size = on_a_path(&mut window, 125_000_000, 200_000, 64 << 10, 3);
        assert!(size >= 25_000_000, "window {size} after three round trips");
    }

    #[test]
    fn slow_start_stops_where_a_long_path_stops_taking_more() {
        // 21 MB/s × 200 ms (one connection capped at 4 MiB in flight): a bandwidth-delay
        // product of 4.2 MB. The window may reach the startup gain over it (4×, 16.8 MB);
        // slow start that went on past the first flat round took it to 20.9 MB.
        for rounds in 1..=12 {
            let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 200_000);
            let size = on_a_path(&mut window, 21_000_000, 200_000, 64 << 10, rounds);
            assert!(
                size <= 18 << 20,
                "window {size} after {rounds} round trips for a 4.2 MB product"
            );
        }
    }

    #[test]
    fn a_short_handshake_keeps_slow_start_at_the_floor_however_slow_the_answers() {
        // The same answers as on the 200 ms path above, but the handshake took 200 µs:
        // the requests' long round trips are a busy peer's (a loaded loopback), not the
        // path's. Neither slow start nor the rates measured take the window past its
        // floor (once slow start could not, the rates still took it to 16.8 MB after
        // three round trips; slow start alone, to 33 MB).
        let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 200);
        let size = on_a_path(&mut window, 125_000_000, 200_000, 64 << 10, 3);
        assert_eq!(size, 4 << 20, "window {size} after three round trips");
    }

    #[test]
    fn stays_at_its_floor_on_a_short_path_and_within_its_maximum_on_a_long_one() {
        let mut short = Window::new(256 << 10, 4 << 20, 64 << 20, 200);
        assert_eq!(
            on_a_path(&mut short, 1_000_000_000, 200, 64 << 10, 2_000),
            4 << 20
        );
        let mut capped = Window::new(256 << 10, 4 << 20, 8 << 20, 200_000);
        assert_eq!(
            on_a_path(&mut capped, 125_000_000, 200_000, 64 << 10, 40),
            8 << 20
        );
    }

    #[test]
    fn a_slow_handshake_on_a_short_path_does_not_open_the_window_past_its_floor() {
        // Loopback at 1 GB/s and 200 µs, but the handshake took 20 ms (a busy moment):
        // the first request answered in 200 µs shows the path is short. Taken at the
        // handshake's word, slow start reached for the 40 MiB cap in the first round
        // (segments granted for it, held by the sender) before falling back to the floor.
        // Before that first answer only the handshake is known: the startup gain over the
        // floor (16 MiB) is granted then, and never more.
        let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 20_000);
        let (size, peak) = on_a_path_with_peak(&mut window, 1_000_000_000, 200, 64 << 10, 2_000, 0);
        assert_eq!(size, 4 << 20);
        assert!(peak <= 16 << 20, "reached for {peak} bytes");
        assert!(window.path_rtt() < 1_000, "path {} µs", window.path_rtt());
        assert_eq!(window.reach(), 4 << 20);
    }

    #[test]
    fn a_busy_start_on_a_short_path_does_not_open_the_window_past_its_floor() {
        // Loopback at 1 GB/s and 200 µs, its handshake quick, but the first answers came
        // 30 ms late (a sender or receiver busy at the start: a disk after many deletions).
        // The window's 4 MiB then queue on the path, so no request comes back in less than
        // 4 ms: the smallest round trip seen was a queue's, and the bandwidth-delay product
        // taken from it (about the window itself) made the startup gain grow the window
        // round after round to its 40 MiB cap, segments granted for all of it.
        let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 200);
        let (size, peak) =
            on_a_path_with_peak(&mut window, 1_000_000_000, 200, 64 << 10, 2_000, 30_000);
        assert!(peak <= 4 << 20, "reached for {peak} bytes");
        assert_eq!(size, 4 << 20);
    }

    #[test]
    fn a_short_path_measured_slow_at_the_start_grants_no_more_than_its_floor() {
        // Loopback at 600 MB/s, its handshake 30 ms late (a sender busy at the start) and
        // its first answers 4 ms late (both sides busy with their first segments): the
        // path counts as short, but its bandwidth-delay product taken from that first
        // round trip (2.4 MB) made the startup gain take the window to 10 MB and grant
        // segments for four times that (the 40 MiB cap), held by the sender.
        let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 30_000);
        assert_eq!(window.reach(), 4 << 20, "granted on the handshake's word");
        let (size, peak) = on_a_path_with_peak(&mut window, 600_000_000, 4_000, 64 << 10, 500, 0);
        assert!(window.path_rtt() < 5_000, "path {} µs", window.path_rtt());
        assert_eq!(size, 4 << 20);
        assert_eq!(peak, 4 << 20, "reached for {peak} bytes");
    }

    #[test]
    fn a_short_path_answered_late_at_first_measures_again_before_it_opens_the_window() {
        // Loopback at 600 MB/s and 200 µs, its handshake 30 ms late and its first answers
        // 6 ms late (both sides busy setting up): taken at the word of those, the path
        // was long and slow start reached for the cap. No later request can say
        // otherwise, as each waits behind the window's 4 MiB (7 ms here); a probe sent
        // with the window emptied does.
        let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 30_000);
        let (size, peak) =
            on_a_path_with_peak(&mut window, 600_000_000, 200, 64 << 10, 5_000, 6_000);
        assert!(window.path_rtt() < 1_000, "path {} µs", window.path_rtt());
        assert_eq!(size, 4 << 20);
        assert_eq!(peak, 4 << 20, "reached for {peak} bytes");
    }

    #[test]
    fn a_path_of_a_few_milliseconds_confirmed_by_its_probe_still_grows() {
        // 1.25 GB/s × 8 ms: a 10 MB bandwidth-delay product, in doubt after the first
        // answer; the probe finds the same 8 ms, and the window grows past it.
        let mut window = Window::new(4 << 20, 4 << 20, 40 << 20, 8_000);
        let size = on_a_path(&mut window, 1_250_000_000, 8_000, 64 << 10, 30);
        assert!(window.path_rtt() >= 8_000, "path {} µs", window.path_rtt());
        assert!(size >= 12_000_000, "window {size} for a 10 MB product");
    }
}
