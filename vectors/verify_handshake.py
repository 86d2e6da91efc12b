#!/usr/bin/env python3
"""Checks vectors/handshake.json with an implementation independent of Ferry's Rust code.

It rebuilds every value from core/PROTOCOL.md using pyca/cryptography (X25519, HKDF-SHA256,
ChaCha20Poly1305): hellos from the ephemeral secrets, the transcript hash, both record
keys, and every record, and checks that each negative case fails where it should.
Run: python3 vectors/verify_handshake.py  (needs `pip install cryptography`).
"""
import hashlib
import json
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"FERRY"
HELLO_LEN = 44
ROLES = {"sender": 1, "receiver": 2}
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def token_from_text(text):
    text = text.replace("-", "").lower().translate(str.maketrans("ilo", "110"))
    assert len(text) == 26, "token text must be 26 characters"
    value = 0
    for i, ch in enumerate(text):
        group = ALPHABET.index(ch)
        if i < 25:
            value = (value << 5) | group
        else:
            assert group & 3 == 0, "last character must leave its 2 spare bits zero"
            value = (value << 3) | (group >> 2)
    return value.to_bytes(16, "big")


def hello(role, secret, version, record_limit):
    public = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    return MAGIC + struct.pack(">HBI", version, ROLES[role], record_limit) + public


def schedule(secret, peer_public, token, sender_hello, receiver_hello):
    shared = X25519PrivateKey.from_private_bytes(secret).exchange(
        X25519PublicKey.from_public_bytes(peer_public))
    transcript = hashlib.sha256(b"ferry/1 transcript" + sender_hello + receiver_hello).digest()
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=token,
               info=b"ferry/1 record keys" + transcript).derive(shared)
    return shared, transcript, okm[:32], okm[32:]


def open_records(stream, key):
    """Yields (sequence, plaintext or None) for each record after the 44-byte hello."""
    aead = ChaCha20Poly1305(key)
    rest = stream[HELLO_LEN:]
    sequence = 0
    while rest:
        (length,) = struct.unpack(">I", rest[:4])
        header, body, rest = rest[:4], rest[4:4 + length], rest[4 + length:]
        nonce = b"\0\0\0\0" + struct.pack(">Q", sequence)
        try:
            yield sequence, aead.decrypt(nonce, body, header)
        except InvalidTag:
            yield sequence, None
        sequence += 1


def main():
    path = Path(__file__).with_name("handshake.json")
    v = json.loads(path.read_text())
    h = bytes.fromhex
    token = token_from_text(v["token"])
    assert token == h(v["token_bytes"]), "token text does not decode to token_bytes"
    version = v["protocol_version"]
    s_secret, r_secret = h(v["sender_ephemeral_secret"]), h(v["receiver_ephemeral_secret"])
    limit = v["record_limit"]
    s_hello = hello("sender", s_secret, version, limit)
    r_hello = hello("receiver", r_secret, version, limit)
    assert s_hello == h(v["sender_hello"]), "sender hello"
    assert r_hello == h(v["receiver_hello"]), "receiver hello"

    shared, transcript, k_s2r, k_r2s = schedule(s_secret, r_hello[12:], token, s_hello, r_hello)
    assert schedule(r_secret, s_hello[12:], token, s_hello, r_hello)[0] == shared
    assert shared == h(v["shared_secret"]), "shared secret"
    assert transcript == h(v["transcript_hash"]), "transcript hash"
    assert k_s2r == h(v["key_sender_to_receiver"]), "sender-to-receiver key"
    assert k_r2s == h(v["key_receiver_to_sender"]), "receiver-to-sender key"

    for direction, key, own_hello in (("sender_to_receiver", k_s2r, s_hello),
                                      ("receiver_to_sender", k_r2s, r_hello)):
        stream = h(v[direction]["stream"])
        listed = v[direction]["records"]
        assert stream == own_hello + b"".join(h(r["record"]) for r in listed), direction
        opened = list(open_records(stream, key))
        assert len(opened) == len(listed)
        for (sequence, plaintext), record in zip(opened, listed):
            assert sequence == record["sequence"]
            expected = bytes([record["content_type"]]) + h(record["payload"])
            assert plaintext == expected, f"{direction} record {sequence}"
        assert listed[0]["content_type"] == 0 and h(listed[0]["payload"]) == transcript

    checked = 0
    for case in v["negative"]:
        data, error = h(case["input"]), case["expected_error"]
        if error == "AuthenticationFailed":
            wrong = token_from_text(case["victim_token"])
            assert wrong != token
            keys = schedule(h(case["victim_ephemeral_secret"]), data[12:44], wrong, data[:44], r_hello)
            first = next(open_records(data, keys[2]))
            assert first == (0, None), "wrong-token confirmation must not authenticate"
        elif error.startswith("Integrity"):
            record = int(error.split(":")[1].strip(" }"))
            results = dict(open_records(data, k_s2r))
            assert results[record] is None and all(results[i] is not None for i in range(record))
        elif error == "NonContributoryKey":
            try:
                X25519PrivateKey.from_private_bytes(r_secret).exchange(
                    X25519PublicKey.from_public_bytes(data[12:44]))
                raise AssertionError("low-order key was accepted")
            except ValueError:
                pass
        elif error.startswith("VersionMismatch"):
            assert data[:5] == MAGIC and struct.unpack(">H", data[5:7])[0] != version
        elif error == "NotFerryPeer":
            assert not data.startswith(MAGIC[:1]) or data[:5] != MAGIC
        else:
            raise AssertionError(f"unknown expected error {error}")
        checked += 1
    print(f"vectors/handshake.json: all values reproduced independently "
          f"({len(v['negative'])} negative cases, {checked} checked)")


if __name__ == "__main__":
    sys.exit(main())
