//! The shared secret a user copies from the sender to the receiver, and the `IP:TOKEN`
//! connection string that carries it.

use core::fmt;
use core::net::{IpAddr, Ipv6Addr};
use core::str::FromStr;

use crate::entropy::Entropy;

/// Bytes of randomness in a token: 128 bits, far beyond offline brute force.
pub const TOKEN_BYTES: usize = 16;
/// Characters in a token's text form.
pub const TOKEN_CHARS: usize = 26;

/// Crockford's base32 alphabet: digits and letters without I, L, O and U, so that nothing
/// is ambiguous when read aloud, retyped or pasted.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A 128-bit random secret. It salts the key derivation, so only a peer that knows it can
/// complete the handshake.
///
/// Its text form is 26 lowercase Crockford base32 characters. Parsing is forgiving the way
/// Crockford specifies: case is ignored, `i`/`l` read as `1`, `o` as `0`, and `-` is skipped.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; TOKEN_BYTES]);

impl Token {
    /// A fresh token from the caller's entropy source.
    pub fn generate(entropy: &mut impl Entropy) -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        entropy.fill(&mut bytes);
        Token(bytes)
    }

    /// A token with the given bytes (tests, vectors).
    pub const fn from_bytes(bytes: [u8; TOKEN_BYTES]) -> Self {
        Token(bytes)
    }

    /// The raw secret.
    pub const fn as_bytes(&self) -> &[u8; TOKEN_BYTES] {
        &self.0
    }
}

/// Never print the secret by accident in logs or panics.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 128 bits as big-endian 5-bit groups; the last group has 3 data bits and 2 zero bits.
        let value = u128::from_be_bytes(self.0);
        let mut out = [0u8; TOKEN_CHARS];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 128i32 - 5 * (i as i32 + 1);
            let group = if shift >= 0 {
                (value >> shift) & 0x1f
            } else {
                (value << -shift) & 0x1f
            };
            *slot = ALPHABET[group as usize];
        }
        // The alphabet is ASCII, so this cannot fail.
        f.write_str(core::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Why a token's text is not a valid token. Never echoes the token itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token has the wrong number of characters.
    #[error(
        "the token has {found} characters, expected {TOKEN_CHARS}; copy it again from the sender"
    )]
    Length {
        /// Characters found (ignoring `-`).
        found: usize,
    },
    /// A character outside the token alphabet.
    #[error(
        "the token has an invalid character at position {position}; tokens use only 0-9 and a-z without i, l, o, u"
    )]
    Character {
        /// 1-based position among the token's characters.
        position: usize,
    },
    /// The last character encodes bits that a real token never has: a typo.
    #[error("the token's last character is not one the sender could have produced; copy it again")]
    NonCanonical,
}

fn decode_char(c: u8) -> Option<u8> {
    let c = c.to_ascii_lowercase();
    let c = match c {
        b'i' | b'l' => b'1',
        b'o' => b'0',
        other => other,
    };
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(text: &str) -> Result<Self, TokenError> {
        let chars = text.bytes().filter(|&b| b != b'-');
        let found = chars.clone().count();
        if found != TOKEN_CHARS {
            return Err(TokenError::Length { found });
        }
        let mut value: u128 = 0;
        for (i, c) in chars.enumerate() {
            let group = decode_char(c).ok_or(TokenError::Character { position: i + 1 })?;
            if i + 1 < TOKEN_CHARS {
                value = (value << 5) | u128::from(group);
            } else {
                // Final group: 3 data bits, then 2 bits that must be zero.
                if group & 0b11 != 0 {
                    return Err(TokenError::NonCanonical);
                }
                value = (value << 3) | u128::from(group >> 2);
            }
        }
        Ok(Token(value.to_be_bytes()))
    }
}

/// What a receiver needs to reach a sender: `IP:TOKEN`, with IPv6 in brackets
/// (`[fd7a:115c::1]:TOKEN`). The port is not part of it; the command line sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionString {
    /// The sender's address.
    pub ip: IpAddr,
    /// The shared secret.
    pub token: Token,
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(v4) => write!(f, "{v4}:{}", self.token),
            IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.token),
        }
    }
}

/// Why a connection string could not be parsed; says which part is wrong, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionStringError {
    /// No `:` between address and token.
    #[error("expected IP:TOKEN (for example 100.101.29.44:TOKEN), but found no ':' separator")]
    MissingSeparator,
    /// The part before the token is not an IP address.
    #[error("the address part {0:?} is not an IPv4 address or a bracketed IPv6 address")]
    BadAddress(String),
    /// An IPv6 address without brackets.
    #[error("write an IPv6 address in brackets: [{0}]:TOKEN")]
    UnbracketedIpv6(String),
    /// The address part carries a port.
    #[error("the address part {0:?} includes a port; give only the IP, and the port with --port")]
    PortInAddress(String),
    /// The token part is invalid.
    #[error("the token part is wrong: {0}")]
    BadToken(#[from] TokenError),
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(text: &str) -> Result<Self, ConnectionStringError> {
        let text = text.trim();
        let (address, token) = text
            .rsplit_once(':')
            .ok_or(ConnectionStringError::MissingSeparator)?;
        let ip = parse_address(address)?;
        let token = token.parse::<Token>()?;
        Ok(ConnectionString { ip, token })
    }
}

fn parse_address(address: &str) -> Result<IpAddr, ConnectionStringError> {
    if address.parse::<core::net::SocketAddr>().is_ok() {
        return Err(ConnectionStringError::PortInAddress(address.to_owned()));
    }
    if let Some(inner) = address.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| ConnectionStringError::BadAddress(address.to_owned()))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ConnectionStringError::BadAddress(address.to_owned()));
    }
    if let Ok(ip) = address.parse::<core::net::Ipv4Addr>() {
        return Ok(IpAddr::V4(ip));
    }
    if address.parse::<Ipv6Addr>().is_ok() {
        return Err(ConnectionStringError::UnbracketedIpv6(address.to_owned()));
    }
    Err(ConnectionStringError::BadAddress(address.to_owned()))
}
