//! The cleartext hello and the key schedule (PROTOCOL.md §2–§3).

use sha2::{Digest, Sha256};

use crate::config::{MAX_RECORD_PAYLOAD_LIMIT, MIN_RECORD_PAYLOAD};
use crate::crypto::{self, DirectionKeys, EphemeralKey, PUBLIC_KEY_LEN};
use crate::error::Error;
use crate::token::Token;

/// The first bytes on the wire in each direction.
pub const MAGIC: [u8; 5] = *b"FERRY";
/// The protocol version this build speaks.
pub const VERSION: u16 = 4;
/// Where the version sits in a hello.
const VERSION_AT: usize = MAGIC.len();
/// Where the role byte sits.
const ROLE_AT: usize = VERSION_AT + 2;
/// Where the sender of the hello states its largest accepted record payload.
const RECORD_LIMIT_AT: usize = ROLE_AT + 1;
/// Where the ephemeral public key starts.
const PUBLIC_KEY_AT: usize = RECORD_LIMIT_AT + 4;
/// Bytes in a hello: magic, version, role, record limit, public key.
pub const HELLO_LEN: usize = PUBLIC_KEY_AT + PUBLIC_KEY_LEN;
/// HKDF `info` prefix; the transcript hash follows it.
pub const KEY_INFO_LABEL: &[u8] = b"ferry/1 record keys";
/// Prefix of the transcript hash input.
pub const TRANSCRIPT_LABEL: &[u8] = b"ferry/1 transcript";

/// Which side of a transfer an endpoint is. The sender listens and serves files; the
/// receiver connects and writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Serves the batch.
    Sender,
    /// Fetches the batch.
    Receiver,
}

impl Role {
    const fn wire(self) -> u8 {
        match self {
            Role::Sender => 1,
            Role::Receiver => 2,
        }
    }

    /// The other side.
    pub const fn peer(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        })
    }
}

/// Our hello for `role`, announcing the largest record payload we accept, with `public`
/// as the ephemeral key.
pub(crate) fn encode_hello(
    role: Role,
    record_limit: u32,
    public: &[u8; PUBLIC_KEY_LEN],
) -> [u8; HELLO_LEN] {
    let mut hello = [0u8; HELLO_LEN];
    hello[..VERSION_AT].copy_from_slice(&MAGIC);
    hello[VERSION_AT..ROLE_AT].copy_from_slice(&VERSION.to_be_bytes());
    hello[ROLE_AT] = role.wire();
    hello[RECORD_LIMIT_AT..PUBLIC_KEY_AT].copy_from_slice(&record_limit.to_be_bytes());
    hello[PUBLIC_KEY_AT..].copy_from_slice(public);
    hello
}

/// Checks a prefix of the peer's hello as soon as its bytes arrive, so that a stranger
/// (an HTTP client, a port scanner, an old Ferry) is told apart at once.
pub(crate) fn check_hello_prefix(prefix: &[u8], our_role: Role) -> Result<(), Error> {
    let magic_seen = prefix.len().min(MAGIC.len());
    if prefix[..magic_seen] != MAGIC[..magic_seen] {
        return Err(Error::NotFerryPeer);
    }
    if prefix.len() >= ROLE_AT {
        let theirs = u16::from_be_bytes([prefix[VERSION_AT], prefix[VERSION_AT + 1]]);
        if theirs != VERSION {
            return Err(Error::VersionMismatch {
                ours: VERSION,
                theirs,
            });
        }
    }
    if let Some(&role) = prefix.get(ROLE_AT) {
        if role == our_role.wire() {
            return Err(Error::RoleConflict(our_role));
        }
        if role != our_role.peer().wire() {
            return Err(Error::MalformedHello("unknown role byte"));
        }
    }
    if prefix.len() >= PUBLIC_KEY_AT {
        let limit = hello_record_limit(prefix);
        if !(MIN_RECORD_PAYLOAD..=MAX_RECORD_PAYLOAD_LIMIT).contains(&limit) {
            return Err(Error::MalformedHello("record limit outside 2 KiB..16 MiB"));
        }
    }
    Ok(())
}

/// The largest record payload the hello's sender accepts (the hello is at least
/// `PUBLIC_KEY_AT` bytes long).
pub(crate) fn hello_record_limit(hello: &[u8]) -> usize {
    let mut limit = [0u8; 4];
    limit.copy_from_slice(&hello[RECORD_LIMIT_AT..PUBLIC_KEY_AT]);
    u32::from_be_bytes(limit) as usize
}

/// The peer's public key from a complete, prefix-checked hello.
pub(crate) fn hello_public_key(hello: &[u8; HELLO_LEN]) -> [u8; PUBLIC_KEY_LEN] {
    let mut public = [0u8; PUBLIC_KEY_LEN];
    public.copy_from_slice(&hello[PUBLIC_KEY_AT..]);
    public
}

/// SHA-256 over both hellos, the sender's first, so both sides agree whoever spoke first.
pub fn transcript_hash(sender_hello: &[u8], receiver_hello: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(TRANSCRIPT_LABEL);
    hasher.update(sender_hello);
    hasher.update(receiver_hello);
    hasher.finalize().into()
}

/// Everything the key schedule produced.
pub(crate) struct Schedule {
    pub(crate) shared_secret: [u8; 32],
    pub(crate) transcript: [u8; 32],
    pub(crate) keys: DirectionKeys,
}

/// Runs the key schedule once both hellos are known.
pub(crate) fn key_schedule(
    ours: &EphemeralKey,
    role: Role,
    our_hello: &[u8; HELLO_LEN],
    peer_hello: &[u8; HELLO_LEN],
    token: &Token,
) -> Result<Schedule, Error> {
    let shared = ours
        .agree(&hello_public_key(peer_hello))
        .ok_or(Error::NonContributoryKey)?;
    let (sender_hello, receiver_hello) = match role {
        Role::Sender => (our_hello, peer_hello),
        Role::Receiver => (peer_hello, our_hello),
    };
    let transcript = transcript_hash(sender_hello, receiver_hello);
    let keys = crypto::derive_keys(token.as_bytes(), &shared, &[KEY_INFO_LABEL, &transcript])
        .ok_or(Error::Internal("HKDF refused to expand 64 bytes"))?;
    Ok(Schedule {
        shared_secret: shared,
        transcript,
        keys,
    })
}

/// The values one handshake derives, exposed for test vectors and for checking an
/// independent implementation against this one. Secret: never log them.
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakeSecrets {
    /// The X25519 shared secret.
    pub shared_secret: [u8; 32],
    /// [`transcript_hash`] of both hellos.
    pub transcript_hash: [u8; 32],
    /// The key of records the sender seals.
    pub sender_to_receiver: [u8; 32],
    /// The key of records the receiver seals.
    pub receiver_to_sender: [u8; 32],
}

impl core::fmt::Debug for HandshakeSecrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HandshakeSecrets(<redacted>)")
    }
}

/// Runs the key schedule from an ephemeral secret and both hellos, exactly as a
/// [`crate::Channel`] does. `our_hello` and `peer_hello` are checked the way the channel
/// checks a peer's hello, and `our_hello` must carry the secret's public key.
pub fn derive_secrets(
    ephemeral_secret: [u8; 32],
    role: Role,
    our_hello: &[u8; HELLO_LEN],
    peer_hello: &[u8; HELLO_LEN],
    token: &Token,
) -> Result<HandshakeSecrets, Error> {
    check_hello_prefix(peer_hello, role)?;
    check_hello_prefix(our_hello, role.peer())?;
    let key = EphemeralKey::from_secret(ephemeral_secret);
    if hello_public_key(our_hello) != *key.public() {
        return Err(Error::MalformedHello(
            "our hello does not carry this secret's public key",
        ));
    }
    let schedule = key_schedule(&key, role, our_hello, peer_hello, token)?;
    Ok(HandshakeSecrets {
        shared_secret: schedule.shared_secret,
        transcript_hash: schedule.transcript,
        sender_to_receiver: schedule.keys.sender_to_receiver,
        receiver_to_sender: schedule.keys.receiver_to_sender,
    })
}
