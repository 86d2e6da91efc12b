//! The one seam through which every cryptographic operation passes.
//!
//! The default build uses X25519, HKDF-SHA256 and ChaCha20Poly1305. The
//! `insecure-null-crypto` feature swaps the AEAD and X25519 for transparent stand-ins that
//! provide NO SECURITY, so fuzzers reach the state machines behind the record layer (as
//! rustls and neqo do) without paying for a key exchange per run; HKDF and the rest stay.

#[cfg(not(feature = "insecure-null-crypto"))]
use chacha20::ChaCha20;
#[cfg(not(feature = "insecure-null-crypto"))]
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use hkdf::Hkdf;
#[cfg(not(feature = "insecure-null-crypto"))]
use poly1305::Poly1305;
#[cfg(not(feature = "insecure-null-crypto"))]
use poly1305::universal_hash::{KeyInit, UniversalHash};
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

/// The AEAD for one direction of a connection: ChaCha20Poly1305 (RFC 8439), composed
/// here from the `chacha20` and `poly1305` crates that the `chacha20poly1305` crate is
/// built from, and equal to it bit for bit (tested below against that crate).
///
/// Why not that crate itself: it feeds the associated data to Poly1305 as a block of its
/// own, and the AVX2 Poly1305 takes four blocks straight from the input only while the
/// input is aligned to four; otherwise each block is copied into a cache of four and taken
/// from there, one call each. A record's 4-byte header thus kept every record's MAC on
/// that cached path (12% of the AEAD's time on this project's machine). Here the header's
/// block and the first three blocks of ciphertext go to Poly1305 together, and the rest of
/// the record follows aligned.
#[derive(Clone)]
pub(crate) struct RecordCipher {
    #[cfg_attr(feature = "insecure-null-crypto", allow(dead_code))]
    key: [u8; KEY_LEN],
}

impl RecordCipher {
    /// Whether `other` seals with the same key (a batch of records handed to a driver's
    /// thread comes back to the connection that composed it, not another).
    pub(crate) fn same_key(&self, other: &RecordCipher) -> bool {
        self.key == other.key
    }
}

/// The authentication tag did not match: the record was altered, or the key is wrong.
#[derive(Debug)]
pub(crate) struct OpenError;

/// An authenticated record's decryption, taken front to back in pieces of any size.
pub(crate) struct Decryption {
    #[cfg(not(feature = "insecure-null-crypto"))]
    stream: ChaCha20,
}

impl Decryption {
    /// Decrypts the record's next `ciphertext.len()` bytes into `out`. Refused (nothing
    /// written) only if `out` is not as long (the record's length was checked against its
    /// keystream before it was authenticated).
    pub(crate) fn decrypt_into(
        &mut self,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<(), OpenError> {
        if ciphertext.len() != out.len() {
            return Err(OpenError);
        }
        #[cfg(not(feature = "insecure-null-crypto"))]
        return self
            .stream
            .try_apply_keystream_b2b(ciphertext, out)
            .map_err(|_| OpenError);
        #[cfg(feature = "insecure-null-crypto")]
        {
            out.copy_from_slice(ciphertext);
            Ok(())
        }
    }
}

impl Decryption {
    /// Decrypts the record's next `buf.len()` bytes where they are.
    pub(crate) fn decrypt_in_place(&mut self, buf: &mut [u8]) -> Result<(), OpenError> {
        #[cfg(not(feature = "insecure-null-crypto"))]
        return self.stream.try_apply_keystream(buf).map_err(|_| OpenError);
        #[cfg(feature = "insecure-null-crypto")]
        {
            let _ = buf;
            Ok(())
        }
    }
}

/// The AEAD refused to seal (only possible for inputs far beyond any record).
#[derive(Debug)]
pub(crate) struct SealError;

/// The longest message sealed or opened here: the keystream the `chacha20` crate gives
/// from its second block on, where the message starts (its 32-bit block counter ends one
/// block short of what RFC 8439 allows; about 256 GiB, and records are at most 16 MiB).
/// Checked first, so that the keystream never runs out part way.
#[cfg(not(feature = "insecure-null-crypto"))]
const MAX_MESSAGE: u64 = (u32::MAX as u64 - 1) * 64;

/// Bytes in a Poly1305 block.
#[cfg(not(feature = "insecure-null-crypto"))]
const MAC_BLOCK: usize = 16;

impl RecordCipher {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        RecordCipher { key: *key }
    }

    /// The nonce of record `sequence`: four zero bytes and the number, big-endian.
    #[cfg(not(feature = "insecure-null-crypto"))]
    fn nonce_for(sequence: u64) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&sequence.to_be_bytes());
        nonce
    }

    /// The keystream for `nonce`, positioned at its second block (where the message
    /// starts), and the Poly1305 keyed by the first 32 bytes of its first.
    #[cfg(not(feature = "insecure-null-crypto"))]
    fn start(&self, nonce: [u8; 12], len: usize) -> Option<(ChaCha20, Poly1305)> {
        if len as u64 > MAX_MESSAGE {
            return None;
        }
        let mut stream = ChaCha20::new(&self.key.into(), &nonce.into());
        let mut mac_key = [0u8; 32];
        stream.try_apply_keystream(&mut mac_key).ok()?;
        stream.try_seek(64u64).ok()?;
        Some((stream, Poly1305::new(&mac_key.into())))
    }

    /// Gives `mac` what the tag covers: `aad`, padded, the ciphertext, padded, and both
    /// lengths. The padded `aad` and the ciphertext's first blocks go in together, four
    /// blocks at once, so that the rest stays aligned to four.
    #[cfg(not(feature = "insecure-null-crypto"))]
    fn authenticate(mac: &mut Poly1305, aad: &[u8], ciphertext: &[u8]) {
        const GROUP: usize = 4 * MAC_BLOCK;
        let padded_aad = aad.len().div_ceil(MAC_BLOCK) * MAC_BLOCK;
        let rest = if padded_aad <= GROUP {
            let joined = ((GROUP - padded_aad).min(ciphertext.len()) / MAC_BLOCK) * MAC_BLOCK;
            let mut head = [0u8; GROUP];
            head[..aad.len()].copy_from_slice(aad);
            head[padded_aad..padded_aad + joined].copy_from_slice(&ciphertext[..joined]);
            mac.update_padded(&head[..padded_aad + joined]);
            &ciphertext[joined..]
        } else {
            mac.update_padded(aad);
            ciphertext
        };
        mac.update_padded(rest);
        let mut lengths = [0u8; MAC_BLOCK];
        lengths[..8].copy_from_slice(&(aad.len() as u64).to_le_bytes());
        lengths[8..].copy_from_slice(&(ciphertext.len() as u64).to_le_bytes());
        mac.update_padded(&lengths);
    }

    /// Encrypts `buf` in place and returns the tag. (The record layer seals with
    /// [`RecordCipher::seal_from`]; this whole-message form is for tests and the fuzzing
    /// peer.)
    #[cfg(all(not(feature = "insecure-null-crypto"), any(test, feature = "testing")))]
    pub(crate) fn seal(
        &self,
        sequence: u64,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        self.seal_with_nonce(Self::nonce_for(sequence), aad, buf, &[])
    }

    /// Seals a message whose last `tail.len()` bytes are `tail`, kept elsewhere (a part's
    /// data in its segment): `buf` holds the message's head in place, then room for the
    /// tail, which is encrypted from where it is into that room: the copy and the
    /// encryption in one pass. Returns the tag.
    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn seal_from(
        &self,
        sequence: u64,
        aad: &[u8],
        buf: &mut [u8],
        tail: &[u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        self.seal_with_nonce(Self::nonce_for(sequence), aad, buf, tail)
    }

    /// [`RecordCipher::seal_from`] under any nonce (RFC 8439's test vector uses one that
    /// no record number gives).
    #[cfg(not(feature = "insecure-null-crypto"))]
    fn seal_with_nonce(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tail: &[u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let head_len = buf.len().checked_sub(tail.len()).ok_or(SealError)?;
        let (mut stream, mut mac) = self.start(nonce, buf.len()).ok_or(SealError)?;
        let (head, room) = buf.split_at_mut(head_len);
        stream.try_apply_keystream(head).map_err(|_| SealError)?;
        stream
            .try_apply_keystream_b2b(tail, room)
            .map_err(|_| SealError)?;
        Self::authenticate(&mut mac, aad, buf);
        Ok(mac.finalize().into())
    }

    /// True if `tag` authenticates `ciphertext` under `aad` (compared in constant time).
    #[cfg(not(feature = "insecure-null-crypto"))]
    fn verify(mut mac: Poly1305, aad: &[u8], ciphertext: &[u8], tag: &[u8; TAG_LEN]) -> bool {
        Self::authenticate(&mut mac, aad, ciphertext);
        mac.verify(&(*tag).into()).is_ok()
    }

    /// Decrypts `buf` in place if `tag` authenticates it; on failure `buf` is untouched
    /// and must not be released. (The record reader takes [`RecordCipher::open_verified`]
    /// apart itself; this whole-record form opens records on a driver's threads, and for
    /// tests and the fuzzing peer.)
    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn open(
        &self,
        sequence: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let (mut stream, mac) = self
            .start(Self::nonce_for(sequence), buf.len())
            .ok_or(OpenError)?;
        if !Self::verify(mac, aad, buf, tag) {
            return Err(OpenError);
        }
        stream.try_apply_keystream(buf).map_err(|_| OpenError)
    }

    /// Decrypts `ciphertext` into `out` (of the same length) if `tag` authenticates it:
    /// the copy and the decryption in one pass. On failure nothing is written to `out`.
    /// (The record reader takes [`RecordCipher::open_verified`] apart itself.)
    #[cfg(test)]
    pub(crate) fn open_into(
        &self,
        sequence: u64,
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        if ciphertext.len() != out.len() {
            return Err(OpenError);
        }
        self.open_verified(sequence, aad, ciphertext, tag)?
            .decrypt_into(ciphertext, out)
    }

    /// Checks that `tag` authenticates `ciphertext` under `aad`, and only then hands out
    /// its decryption, to be taken in pieces that may go to different places (a part's
    /// header to the record buffer, its data straight into its segment).
    #[cfg(not(feature = "insecure-null-crypto"))]
    pub(crate) fn open_verified(
        &self,
        sequence: u64,
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<Decryption, OpenError> {
        let (stream, mac) = self
            .start(Self::nonce_for(sequence), ciphertext.len())
            .ok_or(OpenError)?;
        if !Self::verify(mac, aad, ciphertext, tag) {
            return Err(OpenError);
        }
        Ok(Decryption { stream })
    }

    /// NO SECURITY: leaves the plaintext as it is; the tag is the sequence number.
    #[cfg(all(feature = "insecure-null-crypto", any(test, feature = "testing")))]
    pub(crate) fn seal(
        &self,
        sequence: u64,
        _aad: &[u8],
        _buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        Ok(null_tag(sequence))
    }

    /// NO SECURITY: copies `tail` to the end of `buf`; the tag is the sequence number.
    #[cfg(feature = "insecure-null-crypto")]
    pub(crate) fn seal_from(
        &self,
        sequence: u64,
        _aad: &[u8],
        buf: &mut [u8],
        tail: &[u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let head_len = buf.len().checked_sub(tail.len()).ok_or(SealError)?;
        buf[head_len..].copy_from_slice(tail);
        Ok(null_tag(sequence))
    }

    /// NO SECURITY: accepts a record whose tag is its sequence number, to be copied.
    #[cfg(feature = "insecure-null-crypto")]
    pub(crate) fn open_verified(
        &self,
        sequence: u64,
        _aad: &[u8],
        _ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<Decryption, OpenError> {
        if *tag != null_tag(sequence) {
            return Err(OpenError);
        }
        Ok(Decryption {})
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

#[cfg(all(test, not(feature = "insecure-null-crypto")))]
mod tests {
    use chacha20poly1305::aead::{AeadInOut, KeyInit as _};
    use chacha20poly1305::{ChaCha20Poly1305, Nonce};

    use super::*;

    /// Bytes that differ from test to test without a generator: a xorshift stream.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// The `chacha20poly1305` crate's seal of the same record: the reference.
    fn reference_seal(
        key: &[u8; 32],
        sequence: u64,
        aad: &[u8],
        message: &[u8],
    ) -> (Vec<u8>, [u8; 16]) {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&sequence.to_be_bytes());
        let mut out = message.to_vec();
        let tag = ChaCha20Poly1305::new(&(*key).into())
            .encrypt_inout_detached(&Nonce::from(nonce), aad, out.as_mut_slice().into())
            .expect("reference seal");
        (out, tag.into())
    }

    /// Message lengths around every boundary of the four-block grouping and the
    /// keystream's 64-byte blocks, and a record's worth.
    fn lengths() -> impl Iterator<Item = usize> {
        (0..=200).chain([255, 256, 257, 1023, 1024, 1025, 65_536 + 20, 262_144 + 5])
    }

    #[test]
    fn records_seal_and_open_exactly_as_the_chacha20poly1305_crate_does() {
        let mut case = 0u64;
        for aad_len in [0, 1, 4, 15, 16, 17, 48, 49, 64, 65, 100] {
            for len in lengths() {
                case += 1;
                let key: [u8; 32] = bytes(32, case).try_into().unwrap();
                let sequence = case * 0x1_0001;
                let aad = bytes(aad_len, case + 1);
                let message = bytes(len, case + 2);
                let (expected, expected_tag) = reference_seal(&key, sequence, &aad, &message);
                let cipher = RecordCipher::new(&key);
                let mut sealed = message.clone();
                let tag = cipher.seal(sequence, &aad, &mut sealed).unwrap();
                assert!(
                    sealed == expected && tag == expected_tag,
                    "seal differs: aad {aad_len} bytes, message {len}"
                );
                // Its tail encrypted from elsewhere, split in and between keystream blocks.
                for head_len in [0, 1, 38, 63, 64, 65, len / 2, len]
                    .into_iter()
                    .filter(|&h| h <= len)
                {
                    let mut sealed = message[..head_len].to_vec();
                    sealed.resize(len, 0xAA);
                    let tag = cipher
                        .seal_from(sequence, &aad, &mut sealed, &message[head_len..])
                        .unwrap();
                    assert!(
                        sealed == expected && tag == expected_tag,
                        "seal from a tail differs: aad {aad_len}, message {len}, head {head_len}"
                    );
                }
                let mut opened = expected.clone();
                cipher
                    .open(sequence, &aad, &mut opened, &expected_tag)
                    .unwrap();
                assert!(
                    opened == message,
                    "open differs: aad {aad_len}, message {len}"
                );
                let mut into = vec![0u8; len];
                cipher
                    .open_into(sequence, &aad, &expected, &mut into, &expected_tag)
                    .unwrap();
                assert!(
                    into == message,
                    "open_into differs: aad {aad_len}, message {len}"
                );
            }
        }
    }

    #[test]
    fn a_record_altered_anywhere_or_opened_under_another_number_is_refused_untouched() {
        let key = [7u8; 32];
        let cipher = RecordCipher::new(&key);
        let aad = [0, 1, 0, 21];
        for len in [0, 1, 60, 61, 1000] {
            let message = bytes(len, len as u64);
            let mut sealed = message.clone();
            let tag = cipher.seal(9, &aad, &mut sealed).unwrap();
            let refused = |aad: &[u8], sealed: &[u8], tag: &[u8; 16], sequence: u64| {
                let mut buf = sealed.to_vec();
                let in_place = cipher.open(sequence, aad, &mut buf, tag).is_err() && buf == sealed;
                let mut out = vec![0xAA; sealed.len()];
                let into = cipher
                    .open_into(sequence, aad, sealed, &mut out, tag)
                    .is_err()
                    && out.iter().all(|&b| b == 0xAA);
                in_place && into
            };
            assert!(refused(&aad, &sealed, &tag, 10), "another sequence number");
            assert!(refused(&[0, 1, 0, 22], &sealed, &tag, 9), "another header");
            let mut bad_tag = tag;
            bad_tag[15] ^= 1;
            assert!(refused(&aad, &sealed, &bad_tag, 9), "an altered tag");
            for at in [0, len / 2, len.saturating_sub(1)]
                .into_iter()
                .filter(|_| len > 0)
            {
                let mut altered = sealed.clone();
                altered[at] ^= 0x80;
                assert!(
                    refused(&aad, &altered, &tag, 9),
                    "byte {at} of {len} altered"
                );
            }
        }
        let mut sealed = *b"four";
        let tag = cipher.seal(3, &aad, &mut sealed).unwrap();
        let mut short = [0xAAu8; 3];
        assert!(
            cipher
                .open_into(3, &aad, &sealed, &mut short, &tag)
                .is_err()
                && short == [0xAA; 3],
            "an authentic record opened into an output of another length"
        );
    }

    /// RFC 8439 §2.8.2: a reference that does not come from the crates this is built on.
    #[test]
    fn the_rfc_8439_test_vector_seals_as_published() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [
            0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
        ];
        let aad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let mut buf = b"Ladies and Gentlemen of the class of '99: If I could offer you only one \
tip for the future, sunscreen would be it."
            .to_vec();
        let tag = RecordCipher::new(&key)
            .seal_with_nonce(nonce, &aad, &mut buf, &[])
            .unwrap();
        let expected = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
            3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36\
            92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc\
            3ff4def08e4b7a9de576d26586cec64b6116";
        assert_eq!(hex::encode(&buf), expected);
        assert_eq!(hex::encode(tag), "1ae10b594f09e26a7e902ecbd0600691");
    }

    #[test]
    fn the_tag_matches_the_reference_whatever_the_key_and_number() {
        // The tag alone over many keys and record numbers, including the largest usable.
        for case in 0..200u64 {
            let key: [u8; 32] = bytes(32, 1000 + case).try_into().unwrap();
            let sequence = if case == 0 {
                u64::MAX - 1
            } else {
                case.wrapping_mul(0x9e37_79b9)
            };
            let message = bytes((case as usize * 37) % 700, case);
            let (_, expected) = reference_seal(&key, sequence, b"hdr!", &message);
            let mut buf = message.clone();
            let tag = RecordCipher::new(&key)
                .seal(sequence, b"hdr!", &mut buf)
                .unwrap();
            assert_eq!(tag, expected, "case {case}");
        }
    }
}
