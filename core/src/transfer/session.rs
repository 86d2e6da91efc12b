//! The one surface both roles share: a driver feeds a session bytes, timer ticks and disk
//! completions, and drains it with [`Session::poll_output`] until that says to wait.
//!
//! The drain order is the session's: after every input, call `poll_output` until it
//! returns [`Output::Timeout`], carrying out each [`Output::Disk`] command (with
//! [`Session::carry_out`] against the driver's [`Storage`]) and handling each
//! [`Output::Event`]; then write [`Session::poll_transmit`] to the socket, calling
//! [`Session::advance_transmit`] for what it took (the freed room is refilled at once);
//! then wait for input or the timeout. Bytes never go through `poll_output`: they stay in
//! the session's send buffer until the socket takes them.

use crate::opening::OpenWork;
use crate::sealing::SealWork;
use crate::time::Timestamp;
use crate::transfer::manifest::Manifest;
use crate::transfer::storage::Storage;
use crate::transfer::{DiskCommand, HashWork, TransferError, TransferEvent};

/// What a session has for its driver, next.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Something to do on disk: carry it out ([`Session::carry_out`]).
    Disk(DiskCommand),
    /// Something the application should know.
    Event(TransferEvent),
    /// Nothing more for now: transmit, then call [`Session::handle_timeout`] at this time
    /// (if any) unless input comes first.
    Timeout(Option<Timestamp>),
}

/// The verbs of a transfer session, sender or receiver. The verbs only one role has
/// (accepting or declining a batch) are that role's own.
pub trait Session {
    /// Feeds bytes from the socket; returns how many were taken. Fewer than given means
    /// the session's outputs are full: drain them, then offer the rest again.
    fn handle_input(&mut self, now: Timestamp, input: &[u8]) -> Result<usize, TransferError>;

    /// Fires the timers due at `now`.
    fn handle_timeout(&mut self, now: Timestamp) -> Result<(), TransferError>;

    /// The socket reached end of stream.
    fn handle_eof(&mut self, now: Timestamp) -> Result<(), TransferError>;

    /// The next thing for the driver to do (see the module documentation for the order).
    fn poll_output(&mut self) -> Output;

    /// Carries out one disk command `poll_output` gave, against `storage`, and takes its
    /// completion. A failure that ends the session is returned (and told to the peer).
    fn carry_out(
        &mut self,
        now: Timestamp,
        command: DiskCommand,
        storage: &mut dyn Storage,
    ) -> Result<(), TransferError>;

    /// Bytes for the socket.
    fn poll_transmit(&self) -> &[u8];

    /// `n` bytes of `poll_transmit` were written; the freed room is refilled at once.
    fn advance_transmit(&mut self, n: usize);

    /// When to call `handle_timeout` (also what `Output::Timeout` says).
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Bytes for lane `lane`'s connection (PROTOCOL.md §8): the receiver's lane hello,
    /// the sender's parts. Empty for a lane that is not open.
    fn poll_lane_transmit(&self, lane: u8) -> &[u8];

    /// `n` bytes of `poll_lane_transmit(lane)` were written.
    fn advance_lane_transmit(&mut self, lane: u8, n: usize);

    /// Lane `lane`'s connection closed or failed, or could not be opened. The transfer
    /// goes on: what the lane still carried is sent again on the others.
    fn lane_closed(&mut self, now: Timestamp, lane: u8);

    /// True while lane `lane` is in use; a driver closes the lane's connection once it is
    /// not (the peer gave it up).
    fn lane_open(&self, lane: u8) -> bool;

    /// Sender: a connection opened with a lane hello ([`crate::lane::is_lane_hello`]):
    /// the lane it is, if it proves it belongs to this session (a receiver refuses).
    /// Its bytes then come from [`Session::poll_lane_transmit`].
    fn join_lane(
        &mut self,
        hello: &[u8; crate::lane::LANE_HELLO_LEN],
    ) -> Result<u8, crate::lane::LaneRefused>;

    /// Receiver: the driver opened the connection for lane `lane`, as
    /// [`TransferEvent::LaneWanted`](crate::transfer::TransferEvent::LaneWanted) asked;
    /// its hello is now in [`Session::poll_lane_transmit`]. (One that could not be opened:
    /// [`Session::lane_closed`].)
    fn lane_connected(&mut self, lane: u8) -> Result<(), TransferError>;

    /// Receiver: bytes from lane `lane`'s connection; returns how many were taken (fewer
    /// when the outputs are full: drain them, then offer the rest again). A sender takes
    /// nothing on lanes.
    fn handle_lane_input(
        &mut self,
        now: Timestamp,
        lane: u8,
        input: &[u8],
    ) -> Result<usize, TransferError>;

    /// Gives up: tells the peer why and ends the session; returns the error it ends with.
    fn cancel(&mut self, now: Timestamp, reason: &str) -> TransferError;

    /// True once the batch is finished (every entry committed or failed, and agreed).
    fn is_finished(&self) -> bool;

    /// The error the session ended with, if it failed.
    fn error(&self) -> Option<&TransferError>;

    /// The batch (empty on a receiver until it has arrived).
    fn manifest(&self) -> &Manifest;

    /// A one-line summary of the session's state, for traces and bug reports.
    fn describe(&self) -> String;

    /// The driver runs the session's SHA-256 passes (half of its work per byte) instead
    /// of the session running them inline. Call it before the transfer starts. Each pass
    /// comes out of [`Session::poll_work`], to be run ([`HashWork::run`]) on a thread of
    /// the driver's, on one [`HashChain`](crate::transfer::HashChain) kept for this
    /// session and in the order the passes came out, while the session goes on; and
    /// given back with [`Session::work_done`]. A few passes may be out at once. While
    /// one waits to be taken, a receiver takes no more input; and a receiver whose
    /// passes are all out and whose next segment is complete takes none either, until
    /// one comes back (`handle_input` then takes nothing: wait for a pass).
    fn offload_hashing(&mut self);

    /// The next SHA-256 pass to run, if one is waiting (after any input, disk completion
    /// or timer, beside [`Session::poll_output`]). Only with [`Session::offload_hashing`].
    fn poll_work(&mut self) -> Option<HashWork>;

    /// A pass from [`Session::poll_work`] has run (in any order: the session takes the
    /// results in its own). Drain the outputs afterwards: the segments move on.
    fn work_done(&mut self, now: Timestamp, work: HashWork) -> Result<(), TransferError>;

    /// Has the driver seal the parts' records on threads of its own, any number at once
    /// ([`crate::sealing`]): each batch comes out of [`Session::poll_seal_work`], runs
    /// anywhere ([`SealWork::run`]), and goes back with [`Session::seal_done`], in any
    /// order. The bytes on the wire are the same as when sealed inline; a batch's go out
    /// once it and those before it are back. While [`Session::sealing_pending`], an empty
    /// [`Session::poll_transmit`] (or lane transmit) does not mean all went out.
    fn offload_sealing(&mut self);

    /// The next batch of records to seal, if one is waiting (after anything that may
    /// send: input, a disk completion, a timer, a write). Only with
    /// [`Session::offload_sealing`].
    fn poll_seal_work(&mut self) -> Option<SealWork>;

    /// A batch from [`Session::poll_seal_work`] has run. Flush afterwards: its bytes, and
    /// those of any batches behind it already back, are ready.
    fn seal_done(&mut self, work: SealWork) -> Result<(), TransferError>;

    /// Batches wait to be handed out, or are out.
    fn sealing_pending(&self) -> bool;

    /// Has the driver open the session's records on threads of its own, any number at
    /// once ([`crate::opening`]). Only before any input: from then on the driver shows
    /// the session every chunk it reads from the session's own connection, in order,
    /// with [`Session::pre_open`] before it gives any of it to [`Session::handle_input`];
    /// each record wholly inside a chunk comes out of [`Session::poll_open_work`], runs
    /// anywhere ([`OpenWork::run`]), and goes back with [`Session::open_done`]. What the
    /// session does with its input is the same either way. While the record it reads
    /// next is out ([`Session::input_waits`]), `handle_input` takes nothing: wait for
    /// work to come back. Lanes' records are opened inline.
    fn offload_opening(&mut self);

    /// The next chunk of the session's own connection, as read, before any of it goes to
    /// [`Session::handle_input`]. Only with [`Session::offload_opening`].
    fn pre_open(&mut self, input: &[u8]);

    /// The next record to open on a thread, if one waits (after [`Session::pre_open`]).
    fn poll_open_work(&mut self) -> Option<OpenWork>;

    /// A record from [`Session::poll_open_work`] has run (in any order). One from another
    /// session is misuse, refused.
    fn open_done(&mut self, work: OpenWork) -> Result<(), TransferError>;

    /// The record the session reads next is out being opened: wait for it before giving
    /// input.
    fn input_waits(&self) -> bool;
}

/// Implements [`Session`] for a role's session type by forwarding to its connection and to
/// the role's own `carry_out_command`, `work_done_side` and `describe_state`: the one
/// place the surface is
/// written.
macro_rules! impl_session {
    ($session:ty) => {
        impl $crate::transfer::Session for $session {
            fn handle_input(
                &mut self,
                now: $crate::Timestamp,
                input: &[u8],
            ) -> Result<usize, $crate::transfer::TransferError> {
                self.connection.handle_input(now, input)
            }

            fn handle_timeout(
                &mut self,
                now: $crate::Timestamp,
            ) -> Result<(), $crate::transfer::TransferError> {
                self.connection.handle_timeout(now)
            }

            fn handle_eof(
                &mut self,
                now: $crate::Timestamp,
            ) -> Result<(), $crate::transfer::TransferError> {
                self.connection.handle_eof(now)
            }

            fn poll_output(&mut self) -> $crate::transfer::Output {
                self.connection.poll_output()
            }

            fn carry_out(
                &mut self,
                now: $crate::Timestamp,
                command: $crate::transfer::DiskCommand,
                storage: &mut dyn $crate::transfer::Storage,
            ) -> Result<(), $crate::transfer::TransferError> {
                self.carry_out_command(now, command, storage)
            }

            fn poll_transmit(&self) -> &[u8] {
                self.connection.channel.poll_transmit()
            }

            fn advance_transmit(&mut self, n: usize) {
                self.connection.advance_transmit(n);
            }

            fn poll_timeout(&self) -> Option<$crate::Timestamp> {
                self.connection.poll_timeout()
            }

            fn poll_lane_transmit(&self, lane: u8) -> &[u8] {
                self.connection.side.lanes().pending(lane)
            }

            fn advance_lane_transmit(&mut self, lane: u8, n: usize) {
                self.connection.advance_lane_transmit(lane, n);
            }

            fn lane_closed(&mut self, now: $crate::Timestamp, lane: u8) {
                self.connection.lane_closed(now, lane);
            }

            fn lane_open(&self, lane: u8) -> bool {
                self.connection.side.lanes().is_open(lane)
            }

            fn join_lane(
                &mut self,
                hello: &[u8; $crate::lane::LANE_HELLO_LEN],
            ) -> Result<u8, $crate::lane::LaneRefused> {
                self.connection.join_lane(hello)
            }

            fn lane_connected(&mut self, lane: u8) -> Result<(), $crate::transfer::TransferError> {
                self.connection.side.lane_connected(lane)
            }

            fn handle_lane_input(
                &mut self,
                now: $crate::Timestamp,
                lane: u8,
                input: &[u8],
            ) -> Result<usize, $crate::transfer::TransferError> {
                self.connection.handle_lane_input(now, lane, input)
            }

            fn cancel(
                &mut self,
                now: $crate::Timestamp,
                reason: &str,
            ) -> $crate::transfer::TransferError {
                self.connection.cancel(now, reason)
            }

            fn is_finished(&self) -> bool {
                self.connection.finished()
            }

            fn error(&self) -> Option<&$crate::transfer::TransferError> {
                self.connection.error()
            }

            fn manifest(&self) -> &$crate::transfer::Manifest {
                &self.connection.side.manifest
            }

            fn describe(&self) -> String {
                self.describe_state()
            }

            fn offload_hashing(&mut self) {
                use $crate::transfer::connection::Side as _;
                let side = &mut self.connection.side;
                *side.offload_flag() = true;
                if let Some(hashing) = side.hashing() {
                    hashing.offload();
                }
            }

            fn poll_work(&mut self) -> Option<$crate::transfer::HashWork> {
                use $crate::transfer::connection::Side as _;
                self.connection
                    .side
                    .hashing()
                    .and_then($crate::transfer::work::Hashing::poll)
            }

            fn work_done(
                &mut self,
                now: $crate::Timestamp,
                work: $crate::transfer::HashWork,
            ) -> Result<(), $crate::transfer::TransferError> {
                self.work_done_side(now, work)
            }

            fn offload_sealing(&mut self) {
                self.connection.offload_sealing();
            }

            fn poll_seal_work(&mut self) -> Option<$crate::sealing::SealWork> {
                self.connection.poll_seal_work()
            }

            fn seal_done(
                &mut self,
                work: $crate::sealing::SealWork,
            ) -> Result<(), $crate::transfer::TransferError> {
                self.connection.seal_done(work)
            }

            fn sealing_pending(&self) -> bool {
                self.connection.sealing_pending()
            }

            fn offload_opening(&mut self) {
                self.connection.channel.offload_opening();
            }

            fn pre_open(&mut self, input: &[u8]) {
                self.connection.channel.pre_open(input);
            }

            fn poll_open_work(&mut self) -> Option<$crate::opening::OpenWork> {
                self.connection.channel.poll_open_work()
            }

            fn open_done(
                &mut self,
                work: $crate::opening::OpenWork,
            ) -> Result<(), $crate::transfer::TransferError> {
                self.connection.channel.open_done(work).map_err(|_| {
                    $crate::transfer::TransferError::Misuse(
                        "an opened record came back that the session did not hand out",
                    )
                })
            }

            fn input_waits(&self) -> bool {
                self.connection.channel.input_waits()
            }
        }
    };
}
pub(crate) use impl_session;
