//! The one seam through which every cryptographic operation passes.
//!
//! The default build uses X25519, HKDF-SHA256 and ChaCha20Poly1305. The
//! `insecure-null-crypto` feature swaps the AEAD and X25519 for transparent stand-ins that
//! provide NO SECURITY, so fuzzers reach the state machines behind the record layer (as
//! rustls and neqo do) without paying for a key exchange per run; HKDF and the rest stay.

#[cfg(not(feature = "insecure-null-crypto"))]
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{ChaCha20Poly1305, Key};
#[cfg(not(feature = "insecure-null-crypto"))]
use chacha20poly1305::{Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
#[cfg(not(feature = "insecure-null-crypto"))]
use x25519_dalek::{PublicKey, StaticSecret};

use crate::entropy::Entropy;

/// Bytes in an X25519 public key.
pub(crate) const PUBLIC_KEY_LEN: usize = 32;
/// Bytes in a record key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes in an AEAD authentication tag.
pub(crate) const TAG_LEN: usize = 16;

/// An ephemeral X25519 key pair, made from caller-supplied entropy.
pub(crate) struct EphemeralKey {
    #[cfg(not(feature = "insecure-null-crypto"))]
    secret: StaticSecret,
    public: [u8; PUBLIC_KEY_LEN],
}

impl EphemeralKey {
    pub(crate) fn generate(entropy: &mut dyn Entropy) -> Self {
        let mut bytes = [0u8; 32];
        entropy.fill(&mut bytes);
        Self::from_secret(bytes)
    }

    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn from_secret(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret).to_bytes();
        EphemeralKey { secret, public }
    }

    /// NO SECURITY: the public key is the secret.
    #[cfg(feature = "insecure-null-crypto")]
    pub(crate) fn from_secret(bytes: [u8; 32]) -> Self {
        EphemeralKey { public: bytes }
    }

    pub(crate) fn public(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The X25519 shared secret, or `None` when the peer's key has low order: the result
    /// would be all zeros, a value anyone can force without knowing a secret.
    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn agree(&self, peer_public: &[u8; PUBLIC_KEY_LEN]) -> Option<[u8; 32]> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer_public));
        shared.was_contributory().then(|| shared.to_bytes())
    }

    /// NO SECURITY: both sides get the XOR of the two public keys (all zeros, refused as
    /// a real low-order key is, when they are equal).
    #[cfg(feature = "insecure-null-crypto")]
    pub(crate) fn agree(&self, peer_public: &[u8; PUBLIC_KEY_LEN]) -> Option<[u8; 32]> {
        let mut shared = [0u8; 32];
        for (out, (a, b)) in shared.iter_mut().zip(self.public.iter().zip(peer_public)) {
            *out = a ^ b;
        }
        (shared != [0; 32]).then_some(shared)
    }
}

/// One key per direction, from the token (salt), the shared secret and the transcript.
pub(crate) struct DirectionKeys {
    pub(crate) sender_to_receiver: [u8; KEY_LEN],
    pub(crate) receiver_to_sender: [u8; KEY_LEN],
}

pub(crate) fn derive_keys(
    salt: &[u8],
    shared_secret: &[u8; 32],
    info: &[&[u8]],
) -> Option<DirectionKeys> {
    let hkdf = Hkdf::<Sha256>::new(Some(salt), shared_secret);
    let mut okm = [0u8; 2 * KEY_LEN];
    // 64 bytes is far below HKDF-SHA256's 8160-byte limit; a failure would be a bug.
    hkdf.expand_multi_info(info, &mut okm).ok()?;
    let mut keys = DirectionKeys {
        sender_to_receiver: [0; KEY_LEN],
        receiver_to_sender: [0; KEY_LEN],
    };
    keys.sender_to_receiver.copy_from_slice(&okm[..KEY_LEN]);
    keys.receiver_to_sender.copy_from_slice(&okm[KEY_LEN..]);
    Some(keys)
}

/// The AEAD for one direction of a connection.
pub(crate) struct RecordCipher {
    #[cfg_attr(feature = "insecure-null-crypto", allow(dead_code))]
    aead: ChaCha20Poly1305,
}

/// The authentication tag did not match: the record was altered, or the key is wrong.
#[derive(Debug)]
pub(crate) struct OpenError;

/// The AEAD refused to seal (only possible for inputs far beyond any record).
#[derive(Debug)]
pub(crate) struct SealError;

#[cfg(not(feature = "insecure-null-crypto"))]
fn nonce_for(sequence: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&sequence.to_be_bytes());
    Nonce::from(nonce)
}

impl RecordCipher {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        RecordCipher {
            aead: ChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    /// Encrypts `buf` in place and returns the tag. (ChaCha20Poly1305 refuses only
    /// messages over 256 GiB; records are at most 16 MiB.)
    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn seal(
        &self,
        sequence: u64,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        self.aead
            .encrypt_inout_detached(&nonce_for(sequence), aad, buf.into())
            .map(Into::into)
            .map_err(|_| SealError)
    }

    /// Decrypts `buf` in place if `tag` authenticates it; on failure `buf` is garbage and
    /// must not be released.
    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn open(
        &self,
        sequence: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        self.aead
            .decrypt_inout_detached(&nonce_for(sequence), aad, buf.into(), &Tag::from(*tag))
            .map_err(|_| OpenError)
    }

    /// Decrypts `ciphertext` into `out` (of the same length) if `tag` authenticates it:
    /// the copy and the decryption in one pass. On failure nothing is written to `out`.
    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn open_into(
        &self,
        sequence: u64,
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let buf =
            chacha20poly1305::aead::inout::InOutBuf::new(ciphertext, out).map_err(|_| OpenError)?;
        self.aead
            .decrypt_inout_detached(&nonce_for(sequence), aad, buf, &Tag::from(*tag))
            .map_err(|_| OpenError)
    }

    /// NO SECURITY: leaves the plaintext as it is; the tag is the sequence number.
    #[cfg(feature = "insecure-null-crypto")]
    pub(crate) fn seal(
        &self,
        sequence: u64,
        _aad: &[u8],
        _buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        Ok(null_tag(sequence))
    }

    /// NO SECURITY: copies a record whose tag is its sequence number.
    #[cfg(feature = "insecure-null-crypto")]
    pub(crate) fn open_into(
        &self,
        sequence: u64,
        _aad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        if *tag != null_tag(sequence) || ciphertext.len() != out.len() {
            return Err(OpenError);
        }
        out.copy_from_slice(ciphertext);
        Ok(())
    }

    /// NO SECURITY: accepts any record whose tag is its sequence number.
    #[cfg(feature = "insecure-null-crypto")]
    pub(crate) fn open(
        &self,
        sequence: u64,
        _aad: &[u8],
        _buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        if *tag == null_tag(sequence) {
            Ok(())
        } else {
            Err(OpenError)
        }
    }
}

#[cfg(feature = "insecure-null-crypto")]
fn null_tag(sequence: u64) -> [u8; TAG_LEN] {
    let mut tag = [0u8; TAG_LEN];
    tag[8..].copy_from_slice(&sequence.to_be_bytes());
    tag
}
