#!/usr/bin/env python3
"""Checks vectors/conformance.json with an implementation independent of Ferry's Rust code.

From core/PROTOCOL.md alone (and the handshake helpers of verify_handshake.py): it
rebuilds both hellos and record keys from the secrets, opens every record of both byte
streams and checks they hold exactly the listed messages, then decodes every message and
follows the batch: the manifest against the files, the resume plan against the held
prefix, each segment's layout, advertisement, hashmap, parts (bz2 where compressed), its
hash h over the piece records and its proof, the abandon, retry and update of the changed
file, the grant and DONE's counts; and finally that the files rebuilt from the parts are
the files delivered. Standard library plus pyca/cryptography (as verify_handshake.py).
Run: python3 vectors/verify_conformance.py
"""
import bz2
import hashlib
import json
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from verify_handshake import hello, open_records, schedule, token_from_text  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402


def sha(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


class Msgpack:
    """The msgpack subset Ferry's bodies use (§6): ints, nil, bools, str, bin, arrays, maps."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        out = self.data[self.at:self.at + n]
        assert len(out) == n, "msgpack: truncated"
        self.at += n
        return out

    def int_of(self, fmt, n):
        return struct.unpack(fmt, self.take(n))[0]

    def value(self):
        b = self.take(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return {self.value(): self.value() for _ in range(b & 0x0F)}
        if 0x90 <= b <= 0x9F:
            return [self.value() for _ in range(b & 0x0F)]
        if 0xA0 <= b <= 0xBF:
            return self.take(b & 0x1F).decode()
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        sized = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
                 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
        if b in sized:
            return self.int_of(sized[b], struct.calcsize(sized[b]))
        lengths = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I", 0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}
        if b in lengths:
            n = self.int_of(lengths[b], struct.calcsize(lengths[b]))
            raw = self.take(n)
            return raw if b in (0xC4, 0xC5, 0xC6) else raw.decode()
        if b in (0xDC, 0xDD):
            n = self.int_of(">H" if b == 0xDC else ">I", 2 if b == 0xDC else 4)
            return [self.value() for _ in range(n)]
        if b in (0xDE, 0xDF):
            n = self.int_of(">H" if b == 0xDE else ">I", 2 if b == 0xDE else 4)
            return {self.value(): self.value() for _ in range(n)}
        raise AssertionError(f"msgpack: unexpected byte {b:#x}")


def unpack(body):
    reader = Msgpack(body)
    value = reader.value()
    assert reader.at == len(body), "msgpack: trailing bytes"
    return value


def layout(body):
    """LAYOUT: resource_hash ‖ n extents (entry, attempt, offset, len) ‖ m digests."""
    h = body[:32]
    (n,) = struct.unpack(">I", body[32:36])
    at = 36
    extents = []
    for _ in range(n):
        extents.append(struct.unpack(">IBQI", body[at:at + 17]))
        at += 17
    (m,) = struct.unpack(">I", body[at:at + 4])
    at += 4
    digests = {}
    for _ in range(m):
        entry, attempt, changed = struct.unpack(">IBB", body[at:at + 6])
        digests[(entry, attempt)] = (bool(changed), body[at + 6:at + 38])
        at += 38
    assert at == len(body), "LAYOUT: trailing bytes"
    return h, extents, digests


def main():
    v = json.loads(Path(__file__).with_name("conformance.json").read_text())
    h = bytes.fromhex
    token = token_from_text(v["token"])
    assert token == h(v["token_bytes"])
    s2r, r2s = h(v["sender_to_receiver"]["stream"]), h(v["receiver_to_sender"]["stream"])
    s_secret, r_secret = h(v["sender_ephemeral_secret"]), h(v["receiver_ephemeral_secret"])

    # §2–4: hellos, keys, records.
    version = v["protocol_version"]
    s_limit = struct.unpack(">I", s2r[8:12])[0]
    r_limit = struct.unpack(">I", r2s[8:12])[0]
    assert s2r[:44] == hello("sender", s_secret, version, s_limit), "sender hello"
    assert r2s[:44] == hello("receiver", r_secret, version, r_limit), "receiver hello"
    r_public = X25519PrivateKey.from_private_bytes(r_secret).public_key().public_bytes_raw()
    _, transcript, k_s2r, k_r2s = schedule(s_secret, r_public, token, s2r[:44], r2s[:44])
    assert transcript == h(v["transcript_hash"]) and k_s2r == h(v["key_sender_to_receiver"])
    assert k_r2s == h(v["key_receiver_to_sender"])
    streams = {}
    for name, stream, key in (("sender_to_receiver", s2r, k_s2r), ("receiver_to_sender", r2s, k_r2s)):
        records = [plain for _, plain in open_records(stream, key)]
        assert all(p is not None for p in records), f"{name}: a record does not open"
        assert [p[0] for p in records] == v[name]["content_types"], f"{name}: content types"
        assert records[0] == bytes([0]) + transcript, f"{name}: record 0 is the confirmation"
        assert records[-1] == bytes([3]), f"{name}: the last record is a close"
        messages = [p[1:] for p in records if p[0] == 1]
        assert [m.hex() for m in messages] == v[name]["messages"], f"{name}: messages"
        streams[name] = messages

    batch = v["batch"]
    config = v["config"]
    held = {x["entry"]: x["bytes"] for x in v["receiver_held"]}

    # The receiver's side first: its plan, grants, requests, proofs, retries and DONE.
    proofs, retries, grants, done = {}, [], [], None
    plan_claims = []
    for m in streams["receiver_to_sender"]:
        kind, body = m[0], m[1:]
        if kind == 0x03:
            final, in_flight, extents, segment, claims = unpack(body)
            plan_claims += claims
        elif kind == 0x18:
            (segments,) = struct.unpack(">I", body)
            assert segments >= 1
            grants.append(segments)
        elif kind == 0x15:
            assert len(body) == 64
            proofs[body[:32]] = body[32:]
        elif kind == 0x20:
            retries.append(struct.unpack(">IB", body))
        elif kind == 0x21:
            done = struct.unpack(">QQ", body)
        else:
            assert kind == 0x12, f"receiver sent kind {kind:#x}"
    assert grants, "a GRANT follows the final PLAN"
    # §6.2: the held prefix is claimed with its hash.
    for entry, offset, digest in plan_claims:
        content = h(batch[entry]["content"])
        assert held[entry] == offset and digest == sha(content[:offset]), "claim"

    # The sender's side, in order.
    files = {}  # entry -> (attempt, bytes so far)
    for entry, nbytes in held.items():
        files[entry] = (1, h(batch[entry]["content"])[:nbytes])
    pending = None  # (h, extents, digests) of the last LAYOUT, awaiting its ADV
    segments = {}  # h -> state
    advertised = 0
    first_hash = None
    updates, abandons = [], []
    for m in streams["sender_to_receiver"]:
        kind, body = m[0], m[1:]
        if kind == 0x01:
            entries, path_bytes, total_bytes, part_size = unpack(body)
            assert entries == len(batch) and part_size == config["part_size"]
            assert 1024 <= part_size <= 65536
        elif kind == 0x02:
            listed = unpack(body)
            assert len(listed) == len(batch)
            for item, (path, kind_, size, mode, mtime_ns, digest) in zip(batch, listed):
                content = None if item["content"] is None else h(item["content"])
                assert path == item["path"] and mode == item["mode"] and mtime_ns == item["mtime_ns"]
                assert kind_ == (0 if content is not None else 1)
                assert size == (len(content) if content is not None else 0)
                assert digest == (sha(content) if content is not None else None)
            assert path_bytes == sum(len(e[0].encode()) for e in listed), "§6.1 path_bytes"
            assert total_bytes == sum(e[2] for e in listed), "§6.1 total_bytes"
        elif kind == 0x04:
            final, rejected = unpack(body)
            assert final and rejected == [], "the held prefix is accepted"
        elif kind == 0x10:
            pending = layout(body)
        elif kind == 0x11:
            adv = unpack(body)
            lh, extents, digests = pending
            assert adv["h"] == lh, "§6.3 ADV follows its LAYOUT"
            advertised += 1
            first_hash = first_hash or adv["h"]
            # §7: the advertisement's fields.
            flags = adv["f"]
            assert adv["i"] == advertised and adv["o"] == first_hash and adv["l"] >= adv["i"]
            assert bool(flags & 4) == (adv["l"] > 1) and adv["q"] is None
            assert flags & ~(2 | 4) == 0
            assert adv["n"] == -(-adv["t"] // config["part_size"]) and 1 <= len(adv["m"]) // 4 <= adv["n"]
            segments[adv["h"]] = {"adv": adv, "extents": extents, "digests": digests,
                                  "parts": {}, "map": adv["m"]}
        elif kind == 0x14:
            rh, rest = body[:32], body[32:]
            k, hashmap = unpack(rest)
            seg = segments[rh]
            per = len(seg["adv"]["m"]) // 4
            assert len(seg["map"]) == k * per * 4, "§7 HMU: the next hashmap segment"
            seg["map"] += hashmap
        elif kind == 0x13:
            rh, (index,) = body[:32], struct.unpack(">I", body[32:36])
            segments[rh]["parts"][index] = body[36:]
        elif kind == 0x23:
            entry, attempt, size, mtime_ns = struct.unpack(">IBQq", body)
            assert (entry, attempt) in retries, "§6.4 UPDATE answers a RETRY"
            updates.append((entry, attempt, size))
            files[entry] = (attempt, b"")
        elif kind == 0x24:
            entry, attempt, cause = struct.unpack(">IBB", body)
            abandons.append((entry, attempt, cause))
        else:
            raise AssertionError(f"sender sent kind {kind:#x}")
        # The oldest segments whose parts are all in, in stream order: check and apply
        # them (§6.3).
        while segments:
            rh, seg = min(segments.items(), key=lambda kv: kv[1]["adv"]["i"])
            adv = seg["adv"]
            if len(seg["parts"]) < adv["n"]:
                break
            r = adv["r"]
            for i in range(adv["n"]):
                assert seg["map"][4 * i:4 * i + 4] == sha(struct.pack(">I", i), r)[:4], "§7 map hash"
            wire = b"".join(seg["parts"][i] for i in range(adv["n"]))
            assert len(wire) == adv["t"]
            data = bz2.decompress(wire) if adv["f"] & 2 else wire
            if adv["f"] & 2:
                d = bz2.BZ2Decompressor()
                assert d.decompress(wire) == data and d.eof and d.unused_data == b"", "one bz2 stream"
            assert len(data) == sum(e[3] for e in seg["extents"])
            records, at = b"", 0
            for entry, attempt, offset, length in seg["extents"]:
                piece = data[at:at + length]
                at += length
                got_attempt, so_far = files.get(entry, (attempt, b""))
                if got_attempt != attempt:
                    so_far = b""
                assert offset == len(so_far), f"§6.3 a piece continues its file: {(entry, attempt, offset, len(so_far))}"
                so_far += piece
                files[entry] = (attempt, so_far)
                records += struct.pack(">IBQI", entry, attempt, offset, length) + sha(so_far)
                if len(so_far) == len(h(batch[entry]["content"])) or (entry, attempt) in seg["digests"]:
                    changed, digest = seg["digests"][(entry, attempt)]
                    assert digest == sha(so_far), "§6.4 the file's digest"
            assert sha(records, r) == rh, "§6.3 h = SHA-256(S ‖ r)"
            assert proofs.get(rh) == sha(records, rh), "§7 PRF = SHA-256(S ‖ h)"
            del segments[rh]
    assert not segments, "every segment arrived whole"
    assert abandons and updates and retries, "the changed file was abandoned, retried, updated"
    for (entry, attempt, cause) in abandons:
        assert cause == 0 and (entry, attempt + 1) in retries
    # Every file rebuilt from the parts is the file delivered.
    for entry, item in enumerate(batch):
        if item["kind"] != "file":
            continue
        want = h(item["delivered"])
        got = files.get(entry, (0, b""))[1]
        assert got == want, f"{item['path']}: rebuilt {len(got)} bytes, delivered {len(want)}"
    assert done == (len(batch), 0), f"§6.5 DONE counts every entry: {done}"
    print(f"vectors/conformance.json: {len(streams['sender_to_receiver'])} + "
          f"{len(streams['receiver_to_sender'])} messages decoded and checked independently")


if __name__ == "__main__":
    main()
