//! Ferry's sans-IO protocol core.
//!
//! The core never touches a socket, a file, a clock or OS randomness: time arrives as a
//! [`Timestamp`] argument, randomness through an [`Entropy`] source the caller supplies,
//! and bytes go in and out through buffers the core sized once from its [`Config`].
//! Drivers (blocking, mio, simulator) do the IO around it.
//!
//! The wire format is specified in `PROTOCOL.md` next to this crate; that document is
//! normative and the code follows it.
//!
//! # A complete in-process handshake
//! ```
//! use ferry_core::{Channel, Config, Event, Role, SeededEntropy, Timestamp, Token};
//!
//! let mut entropy = SeededEntropy::new(7);
//! let token = Token::generate(&mut entropy);
//! let now = Timestamp::ZERO;
//! let mut sender = Channel::new(Role::Sender, token.clone(), Config::default(), &mut entropy, now).unwrap();
//! let mut receiver = Channel::new(Role::Receiver, token, Config::default(), &mut entropy, now).unwrap();
//!
//! // Shuttle bytes until both sides are quiet (a driver would use a socket).
//! fn shuttle(from: &mut Channel, to: &mut Channel) -> bool {
//!     let bytes = from.poll_transmit().to_vec();
//!     from.advance_transmit(bytes.len());
//!     let mut offset = 0;
//!     while offset < bytes.len() {
//!         offset += to.handle_input(Timestamp::ZERO, &bytes[offset..]).unwrap();
//!         if let Some(message) = to.take_message() {
//!             assert_eq!(message, b"hello, receiver");
//!         }
//!     }
//!     !bytes.is_empty()
//! }
//! while shuttle(&mut sender, &mut receiver) | shuttle(&mut receiver, &mut sender) {}
//!
//! assert_eq!(sender.poll_event(), Some(Event::HandshakeComplete));
//! assert_eq!(receiver.poll_event(), Some(Event::HandshakeComplete));
//! sender.send_message(b"hello, receiver").unwrap();
//! shuttle(&mut sender, &mut receiver);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(all(feature = "insecure-null-crypto", not(fuzzing)))]
compile_error!(
    "the insecure-null-crypto feature provides NO SECURITY and builds only for fuzzing \
     (cargo fuzz sets --cfg fuzzing)"
);

pub mod channel;
pub mod config;
mod crypto;
pub mod entropy;
pub mod error;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzz;
pub mod handshake;
pub mod lane;
pub(crate) mod msgpack;
pub mod opening;
pub mod record;
pub mod resource;
pub mod sealing;
// A test harness reports a broken expectation by panicking, as tests do.
#[cfg(feature = "testing")]
#[allow(clippy::panic)]
pub mod testing;
pub mod text;
pub mod time;
pub mod token;
pub mod transfer;

pub use channel::{Channel, Event, SendError};
pub use config::{Config, ConfigError};
pub use entropy::{Entropy, SeededEntropy};
pub use error::{Error, TimeoutPhase};
pub use handshake::Role;
pub use msgpack::{BufferTooSmall, DecodeError};
pub use time::Timestamp;
pub use token::{ConnectionString, ConnectionStringError, Token, TokenError};
