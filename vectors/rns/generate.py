#!/usr/bin/env python3
"""Generates Reticulum (RNS) Resource interoperability vectors: vectors/rns/resources.json.

It drives the REAL rns 1.2.4 Resource / ResourceAdvertisement code: a sending Resource and
the receiving Resource created by Resource.accept() exchange packets in-process through two
stub links (one per end, sharing a link id and a fixed 64-byte link key). Every packet is
really packed by RNS.Packet.pack() (so ADV/REQ/HMU are encrypted with the real link Token and
parts are slices of the real encrypted stream), then parsed again with RNS.Packet.unpack() and
routed the way RNS.Link.receive() routes resource contexts. The plaintext of every
RESOURCE_ADV, RESOURCE_REQ, RESOURCE_HMU and RESOURCE_PRF is recorded.

Determinism (see README.md):
  * randomness: RNS.Identity.get_random_hash and the os.urandom used by RNS.Cryptography.Token
    (IVs) both draw from a SHA-256 counter DRBG seeded per resource;
  * time: RNS.Resource's time.time()/sleep() read a simulated clock that only advances when a
    packet is delivered (1 ms + len(raw)*8/1 Mbit/s per packet);
  * threads: threading.Thread inside RNS.Resource runs its target inline, except the watchdog
    jobs, which are not started (nothing times out, nothing is retransmitted);
  * RNS.Transport.cache (proof caching) is a no-op; RNS.Reticulum.resourcepath is a temporary
    directory (the receiver assembles into it); no Reticulum instance or config dir is created.

Run: python3 vectors/rns/generate.py   (needs `pip install rns==1.2.4`)
"""
import bz2
import collections
import hashlib
import json
import os
import sys
import tempfile
import threading
import types
from pathlib import Path

import RNS
from RNS.vendor import umsgpack

RNS_VERSION = "1.2.4"
OUT = Path(__file__).resolve().parent / "resources.json"

RES_MOD = sys.modules["RNS.Resource"]
TOKEN_MOD = sys.modules["RNS.Cryptography.Token"]
Resource = RNS.Resource
ResourceAdvertisement = RNS.ResourceAdvertisement
Packet = RNS.Packet

LINK_ID = hashlib.sha256(b"ferry rns resource vectors: link id").digest()[:16]
LINK_KEY = hashlib.sha512(b"ferry rns resource vectors: link key").digest()  # 64 bytes: AES-256-CBC Token
LINK_RTT = 0.05
LINK_ESTABLISHMENT_COST = 297
CLOCK_START = 1_800_000_000.0
PER_PACKET_DELAY = 0.001
BITRATE = 1_000_000.0
HASHLEN = RNS.Identity.HASHLENGTH // 8


# ---------------------------------------------------------------------------
# deterministic sources

class Drbg:
    """SHA-256(seed || counter as 8-byte big-endian), counter = 0, 1, 2, ..., as one byte stream."""

    def __init__(self, seed):
        self.seed, self.counter, self.buf = seed, 0, b""

    def read(self, n):
        while len(self.buf) < n:
            self.buf += hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


class State:
    pass


S = State()


def reset_state(name):
    S.drbg = Drbg(b"ferry rns resource vectors: rng/" + name.encode())
    S.now = CLOCK_START
    S.queue = collections.deque()
    S.captured = []            # (context, plaintext) in send order
    S.part_packets_sent = 0
    S.part_resends = 0
    S.random_hash_calls = 0
    S.skipped_watchdogs = 0
    S.inline_threads = collections.Counter()
    S.problems = []
    S.debug_log = []
    S.sender_snapshots = []
    S.receivers = []
    S.received_data = None
    S.sender_concluded = []
    S.sleeps = 0


def det_get_random_hash():
    S.random_hash_calls += 1
    return RNS.Identity.truncated_hash(S.drbg.read(RNS.Identity.TRUNCATED_HASHLENGTH // 8))


class OsProxy:
    """Stands in for the `os` module inside RNS.Cryptography.Token: only urandom is replaced."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def urandom(n):
        return S.drbg.read(n)


def fake_time():
    return S.now


def fake_sleep(seconds):
    S.sleeps += 1
    if S.sleeps > 100:
        raise RuntimeError("RNS.Resource kept sleeping: the in-process transfer is stuck")
    S.now += seconds


class InlineThread:
    def __init__(self, group=None, target=None, name=None, args=(), kwargs=None, daemon=None):
        self.target, self.args, self.kwargs = target, args, kwargs or {}

    def start(self):
        name = getattr(self.target, "__name__", "?")
        if "watchdog_job" in name:
            S.skipped_watchdogs += 1
            return
        S.inline_threads[name] += 1
        self.target(*self.args, **self.kwargs)


def fake_log(msg, level=3, _override_destination=False, pt=False):
    if level <= RNS.LOG_WARNING:
        S.problems.append(str(msg))
    else:
        S.debug_log.append(str(msg))


# ---------------------------------------------------------------------------
# in-process network

def fake_send(self):
    if self.sent:
        raise IOError("Packet was already sent")
    if self.destination.status == RNS.Link.CLOSED:
        raise IOError("link closed")
    if not self.packed:
        self.pack()
    self.sent = True
    self.sent_at = S.now
    transmit(self)
    return None


def fake_resend(self):
    if not self.sent:
        raise IOError("Packet was not sent yet")
    self.pack()
    if self.context == Packet.RESOURCE:
        S.part_resends += 1
    transmit(self)
    return None


def transmit(packet):
    ctx = packet.context
    if ctx in (Packet.RESOURCE_ADV, Packet.RESOURCE_REQ, Packet.RESOURCE_HMU, Packet.RESOURCE_PRF):
        S.captured.append((ctx, bytes(packet.data)))
    elif ctx == Packet.RESOURCE:
        S.part_packets_sent += 1
    else:
        raise AssertionError(f"unexpected packet context {ctx:#04x}")
    S.queue.append((packet.destination.peer, bytes(packet.raw)))


def deliver(link, raw):
    """Mirror of what RNS.Link.receive does for the resource contexts."""
    S.now += PER_PACKET_DELAY + len(raw) * 8 / BITRATE
    p = Packet(None, raw)
    assert p.unpack(), "packet failed to unpack"
    assert p.destination_hash == link.link_id
    p.link = link
    ctx = p.context
    if p.packet_type == Packet.DATA:
        if ctx == Packet.RESOURCE_ADV:
            p.plaintext = link.decrypt(p.data)
            assert p.plaintext is not None, "ADV failed to decrypt"
            assert not ResourceAdvertisement.is_request(p) and not ResourceAdvertisement.is_response(p)
            r = Resource.accept(p, callback=receiver_concluded)
            assert r is not None, "Resource.accept refused the advertisement"
            S.receivers.append(r)
        elif ctx == Packet.RESOURCE_REQ:
            plaintext = link.decrypt(p.data)
            assert plaintext is not None, "REQ failed to decrypt"
            if plaintext[0] == Resource.HASHMAP_IS_EXHAUSTED:
                rh = plaintext[1 + Resource.MAPHASH_LEN:HASHLEN + 1 + Resource.MAPHASH_LEN]
            else:
                rh = plaintext[1:HASHLEN + 1]
            for r in list(link.outgoing_resources):
                if r.hash == rh and p.packet_hash not in r.req_hashlist:
                    r.req_hashlist.append(p.packet_hash)
                    r.request(plaintext)
        elif ctx == Packet.RESOURCE_HMU:
            plaintext = link.decrypt(p.data)
            assert plaintext is not None, "HMU failed to decrypt"
            for r in list(link.incoming_resources):
                if plaintext[:HASHLEN] == r.hash:
                    r.hashmap_update_packet(plaintext)
        elif ctx == Packet.RESOURCE:
            for r in list(link.incoming_resources):
                r.receive_part(p)
        else:
            raise AssertionError(f"unexpected data context {ctx:#04x}")
    elif p.packet_type == Packet.PROOF and ctx == Packet.RESOURCE_PRF:
        for r in list(link.outgoing_resources):
            if p.data[:HASHLEN] == r.hash:
                r.validate_proof(p.data)
    else:
        raise AssertionError("unexpected packet type")


def receiver_concluded(resource):
    S.received_data = resource.data.read()


def sender_concluded(resource):
    S.sender_concluded.append(resource.status)


class StubLink:
    """The parts of RNS.Link that Resource touches. The resource bookkeeping and the
    encryption are RNS.Link's own methods (encrypt/decrypt use a real RNS Token)."""

    encrypt = RNS.Link.encrypt
    decrypt = RNS.Link.decrypt
    resource_concluded = RNS.Link.resource_concluded
    register_outgoing_resource = RNS.Link.register_outgoing_resource
    register_incoming_resource = RNS.Link.register_incoming_resource
    has_incoming_resource = RNS.Link.has_incoming_resource
    get_last_resource_window = RNS.Link.get_last_resource_window
    get_last_resource_eifr = RNS.Link.get_last_resource_eifr
    cancel_outgoing_resource = RNS.Link.cancel_outgoing_resource
    cancel_incoming_resource = RNS.Link.cancel_incoming_resource
    ready_for_new_resource = RNS.Link.ready_for_new_resource

    def __init__(self, role):
        self.role = role
        self.type = RNS.Destination.LINK
        self.status = RNS.Link.ACTIVE
        self.link_id = LINK_ID
        self.hash = LINK_ID
        self.derived_key = LINK_KEY
        self.token = None
        self.mtu = RNS.Reticulum.MTU
        self.mdu = RNS.Link.MDU
        self.rtt = LINK_RTT
        self.establishment_cost = LINK_ESTABLISHMENT_COST
        self.traffic_timeout_factor = RNS.Link.TRAFFIC_TIMEOUT_FACTOR
        self.expected_rate = None
        self.callbacks = types.SimpleNamespace(resource=None, resource_started=None, resource_concluded=None)
        self.last_resource_window = None
        self.last_resource_eifr = None
        self.outgoing_resources = []
        self.incoming_resources = []
        self.last_outbound = 0
        self.tx = 0
        self.txbytes = 0
        self.peer = None

    def teardown(self):
        raise AssertionError("link teardown requested")

    def __str__(self):
        return f"<stub link {self.role}>"


_orig_advertise = Resource.advertise


def snapshot_advertise(self):
    # Called on the sending Resource right before its advertisement job runs: the hashmap,
    # parts and hashes are complete here (and are cleared later once a segment is proven).
    S.sender_snapshots.append({
        "resource": self,
        "segment_index": self.segment_index,
        "total_segments": self.total_segments,
        "hash": self.hash,
        "random_hash": self.random_hash,
        "original_hash": self.original_hash,
        "expected_proof": self.expected_proof,
        "hashmap": self.hashmap,
        "parts": [bytes(p.data) for p in self.parts],
        "compressed": self.compressed,
        "size": self.size,
        "total_size": self.total_size,
        "random_hash_calls": S.random_hash_calls,
    })
    _orig_advertise(self)


def install_patches():
    RNS.loglevel = RNS.LOG_DEBUG  # every message goes to fake_log, nothing is printed
    RNS.log = fake_log
    RNS.Identity.get_random_hash = staticmethod(det_get_random_hash)
    TOKEN_MOD.os = OsProxy()
    RES_MOD.time = types.SimpleNamespace(time=fake_time, sleep=fake_sleep)
    RES_MOD.sleep = fake_sleep
    RES_MOD.threading = types.SimpleNamespace(Thread=InlineThread, Lock=threading.Lock)
    RNS.Transport.cache = staticmethod(lambda *a, **k: None)
    RNS.Packet.send = fake_send
    RNS.Packet.resend = fake_resend
    Resource.advertise = snapshot_advertise


# ---------------------------------------------------------------------------
# payload recipes (reproducible in Rust)

TEXT_LINE_DESCRIPTION = (
    "line k for k = 0, 1, 2, ... is the ASCII string "
    "'2026-11-22T04:00:' + (k mod 60 as 2 decimal digits, zero-padded) + 'Z INFO ferry: request ' "
    "+ (k in decimal) + ' served in ' + (k mod 97 in decimal) + ' ms' + '\\n'; the lines are "
    "concatenated until at least `length` bytes exist, then truncated to exactly `length` bytes"
)


def text_payload(length):
    out, k = [], 0
    total = 0
    while total < length:
        line = f"2026-11-22T04:00:{k % 60:02d}Z INFO ferry: request {k} served in {k % 97} ms\n".encode()
        out.append(line)
        total += len(line)
        k += 1
    return b"".join(out)[:length]


SHA256_COUNTER_DESCRIPTION = (
    "SHA-256(seed || i as 4-byte big-endian) for i = 0, 1, 2, ..., concatenated and truncated "
    "to exactly `length` bytes"
)


def sha256_counter_payload(seed, length):
    out = bytearray()
    i = 0
    while len(out) < length:
        out += hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:length])


CASES = [
    {
        "name": "compressible text",
        "recipe": "ascii-log-lines",
        "params": {"length": 6144, "line_format": TEXT_LINE_DESCRIPTION,
                   "python": "f\"2026-11-22T04:00:{k%60:02d}Z INFO ferry: request {k} served in {k%97} ms\\n\""},
        "make": lambda: text_payload(6144),
        "auto_compress": True,
        "include_stream": True,
    },
    {
        "name": "random, needs HMU",
        "recipe": "sha256-counter",
        "params": {"seed_ascii": "ferry-rns-resource-random", "seed_hex": b"ferry-rns-resource-random".hex(),
                   "length": 40000, "definition": SHA256_COUNTER_DESCRIPTION},
        "make": lambda: sha256_counter_payload(b"ferry-rns-resource-random", 40000),
        "auto_compress": True,
        "include_stream": True,
    },
    {
        "name": "multi-segment",
        "recipe": "sha256-counter",
        "params": {"seed_ascii": "ferry-rns-resource-multi", "seed_hex": b"ferry-rns-resource-multi".hex(),
                   "length": 1100000, "definition": SHA256_COUNTER_DESCRIPTION},
        "make": lambda: sha256_counter_payload(b"ferry-rns-resource-multi", 1100000),
        "auto_compress": False,
        "include_stream": False,
    },
]


def segment_range(index, total_len):
    # No metadata in these vectors, so segment i covers [ (i-1)*MAX, min(i*MAX, len) ).
    m = Resource.MAX_EFFICIENT_SIZE
    return (index - 1) * m, min(index * m, total_len)


def sha256(b):
    return hashlib.sha256(b).digest()


def run_case(case, resource_dir):
    reset_state(case["name"])
    RNS.Reticulum.resourcepath = resource_dir
    payload = case["make"]()
    assert len(payload) == case["params"]["length"]

    sender_link, receiver_link = StubLink("sender"), StubLink("receiver")
    sender_link.peer, receiver_link.peer = receiver_link, sender_link

    first = Resource(payload, sender_link, advertise=True, auto_compress=case["auto_compress"],
                     callback=sender_concluded)
    while S.queue:
        link, raw = S.queue.popleft()
        deliver(link, raw)

    # ---- the transfer must really have completed
    assert not S.problems, f"RNS logged warnings/errors: {S.problems}"
    assert S.received_data == payload, "receiver did not assemble the payload"
    assert S.sender_concluded == [Resource.COMPLETE], f"sender callback: {S.sender_concluded}"
    assert all(r.status == Resource.COMPLETE for r in S.receivers)
    assert all(s["resource"].status == Resource.COMPLETE for s in S.sender_snapshots)
    assert S.part_resends == 0 and S.sleeps == 0
    total_segments = first.total_segments
    assert len(S.sender_snapshots) == total_segments == len(S.receivers)
    remap_messages = [m for m in S.debug_log if "collision" in m.lower()]

    # ---- sort the captured control packets by resource hash
    by_hash = collections.defaultdict(lambda: {"adv": [], "req": [], "hmu": [], "prf": []})
    for ctx, pt in S.captured:
        if ctx == Packet.RESOURCE_ADV:
            by_hash[umsgpack.unpackb(pt)["h"]]["adv"].append(pt)
        elif ctx == Packet.RESOURCE_REQ:
            off = 1 + Resource.MAPHASH_LEN if pt[0] == Resource.HASHMAP_IS_EXHAUSTED else 1
            by_hash[pt[off:off + HASHLEN]]["req"].append(pt)
        elif ctx == Packet.RESOURCE_HMU:
            by_hash[pt[:HASHLEN]]["hmu"].append(pt)
        elif ctx == Packet.RESOURCE_PRF:
            by_hash[pt[:HASHLEN]]["prf"].append(pt)
    assert len(by_hash) == total_segments

    segments = []
    token = RNS.Cryptography.Token(LINK_KEY)
    for snap, receiver in zip(S.sender_snapshots, S.receivers):
        idx = snap["segment_index"]
        start, end = segment_range(idx, len(payload))
        seg_data = payload[start:end]
        h, r = snap["hash"], snap["random_hash"]
        got = by_hash[h]
        assert len(got["adv"]) == 1 and len(got["prf"]) == 1
        adv_pt, prf_pt = got["adv"][0], got["prf"][0]
        fields = umsgpack.unpackb(adv_pt)
        assert list(fields.keys()) == ["t", "d", "n", "h", "r", "o", "i", "l", "q", "f", "m"]

        stream = b"".join(snap["parts"])
        assert stream == b"".join(receiver.parts), "receiver parts differ from sender parts"
        part_lengths = [len(p) for p in snap["parts"]]
        n = len(part_lengths)
        sdu = Resource.SDU
        assert all(l == sdu for l in part_lengths[:-1]) and 0 < part_lengths[-1] <= sdu

        # hash, proof, hashmap relations (these fail if a collision-guard remap happened)
        assert snap["random_hash_calls"] == 2 * idx, "collision-guard remap happened"
        assert not remap_messages
        assert h == sha256(seg_data + r), "h != SHA-256(segment data || r)"
        assert snap["expected_proof"] == sha256(seg_data + h)
        assert prf_pt == h + snap["expected_proof"]
        hashmap = snap["hashmap"]
        assert hashmap == b"".join(sha256(p + r)[:Resource.MAPHASH_LEN] for p in snap["parts"])
        assert fields["m"] == hashmap[:ResourceAdvertisement.HASHMAP_MAX_LEN * Resource.MAPHASH_LEN]
        assert fields["t"] == len(stream) == snap["size"] and fields["n"] == n
        assert fields["d"] == len(payload) and fields["h"] == h and fields["r"] == r
        assert fields["o"] == S.sender_snapshots[0]["hash"] == snap["original_hash"]
        assert fields["i"] == idx and fields["l"] == total_segments and fields["q"] is None
        expected_f = 0x01 | (snap["compressed"] << 1) | ((total_segments > 1) << 2)
        assert fields["f"] == expected_f

        # the stream decrypts (with the link key) to a 4-byte random prefix + (compressed) data
        plain = token.decrypt(stream)
        prefix, body = plain[:Resource.RANDOM_HASH_SIZE], plain[Resource.RANDOM_HASH_SIZE:]
        assert (bz2.decompress(body) if snap["compressed"] else body) == seg_data

        # HMUs: resource hash || msgpack [segment, hashes]; together with m they give the hashmap
        rebuilt = bytearray(fields["m"])
        for hmu in got["hmu"]:
            seg_no, hashes = umsgpack.unpackb(hmu[HASHLEN:])
            lo = seg_no * ResourceAdvertisement.HASHMAP_MAX_LEN * Resource.MAPHASH_LEN
            assert lo == len(rebuilt)
            rebuilt += hashes
        assert bytes(rebuilt) == hashmap
        exhausted = [q for q in got["req"] if q[0] == Resource.HASHMAP_IS_EXHAUSTED]
        assert len(exhausted) == len(got["hmu"])

        segments.append({
            "segment_index": idx,
            "advertisement": adv_pt.hex(),
            "fields": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in fields.items()},
            "hashmap": hashmap.hex(),
            "segment_data_sha256": sha256(seg_data).hex(),
            "segment_data_range": [start, end],
            "compressed": snap["compressed"],
            "stream": stream.hex() if case["include_stream"] else None,
            "stream_sha256": sha256(stream).hex(),
            "stream_iv": stream[:16].hex(),
            "stream_random_prefix": prefix.hex(),
            "part_lengths": part_lengths,
            "resource_hash": h.hex(),
            "random_hash": r.hex(),
            "expected_proof": snap["expected_proof"].hex(),
            "requests": [q.hex() for q in got["req"]],
            "hashmap_updates": [u.hex() for u in got["hmu"]],
            "proof": prf_pt.hex(),
            "collision_remap_occurred": False,
        })

    summary = {
        "segments": total_segments,
        "parts": [len(s["part_lengths"]) for s in segments],
        "requests": [len(s["requests"]) for s in segments],
        "exhausted_requests": [sum(1 for q in s["requests"] if q.startswith("ff")) for s in segments],
        "hashmap_updates": [len(s["hashmap_updates"]) for s in segments],
        "compressed": [s["compressed"] for s in segments],
        "flags": [s["fields"]["f"] for s in segments],
        "part_packets_sent": S.part_packets_sent,
        "skipped_watchdog_jobs": S.skipped_watchdogs,
        "inline_threads": dict(sorted(S.inline_threads.items())),
    }
    return {
        "name": case["name"],
        "payload": {"recipe": case["recipe"], "params": case["params"], "length": len(payload),
                    "sha256": sha256(payload).hex()},
        "auto_compress": case["auto_compress"],
        "segments": segments,
    }, summary


NOTES = (
    "Produced by running the real rns 1.2.4 Resource/ResourceAdvertisement code in-process: a "
    "sending Resource and the receiving Resource made by Resource.accept() talk through two stub "
    "links (same link id, same fixed 64-byte link key, MTU 500, so SDU 464 and HASHMAP_MAX_LEN 74). "
    "Packets are packed with the real RNS.Packet.pack(), parsed back with RNS.Packet.unpack() and "
    "routed like RNS.Link.receive() routes resource contexts. Parts ARE link-encrypted: the stub "
    "link's encrypt/decrypt are RNS.Link.encrypt/decrypt, i.e. a real RNS Token (AES-256-CBC + "
    "HMAC-SHA256, 16-byte IV prefix, 32-byte HMAC suffix) keyed with constants.link_key; the "
    "stream is Token(4-byte random prefix || bz2(data) or data) and parts are its 464-byte slices. "
    "ADV/REQ/HMU plaintexts are recorded before link encryption; PRF is never encrypted. "
    "Patched for determinism: RNS.Identity.get_random_hash and os.urandom inside "
    "RNS.Cryptography.Token draw from a DRBG = SHA-256(seed || 8-byte big-endian counter) stream "
    "with seed 'ferry rns resource vectors: rng/' + resource name; time.time()/sleep() inside "
    "RNS.Resource read a simulated clock starting at 1800000000.0 that advances only when a "
    "packet is delivered (by 0.001 s + len(raw)*8/1e6 s); threading.Thread inside RNS.Resource "
    "runs targets inline and the watchdog jobs are not started (no timeouts, no retries, no "
    "resends); RNS.Transport.cache is a no-op; RNS.Packet.send/resend hand packets to an "
    "in-process FIFO instead of RNS.Transport; RNS.Reticulum.resourcepath is a temp dir. "
    "The window sequence in `requests` therefore reflects a fast, loss-free link. "
    "No collision-guard remap happened in any segment (asserted), so h = SHA-256(segment data || r) "
    "and expected_proof = SHA-256(segment data || h) hold here. 'd' is the total data size of the "
    "whole resource (same value in every segment); 't' is the encrypted size of this segment."
)


def main():
    install_patches()
    resources, summaries = [], []
    with tempfile.TemporaryDirectory(prefix="rns-resource-vectors-") as resource_dir:
        for case in CASES:
            res, summary = run_case(case, resource_dir)
            resources.append(res)
            summaries.append((case["name"], summary))
        leftovers = os.listdir(resource_dir)
        assert not leftovers, f"RNS left files behind: {leftovers}"

    doc = {
        "rns_version": RNS_VERSION,
        "generator": "python3 vectors/rns/generate.py",
        "notes": NOTES,
        "constants": {
            "hashmap_max_len": ResourceAdvertisement.HASHMAP_MAX_LEN,
            "sdu": Resource.SDU,
            "maphash_len": Resource.MAPHASH_LEN,
            "random_hash_size": Resource.RANDOM_HASH_SIZE,
            "collision_guard_size": ResourceAdvertisement.COLLISION_GUARD_SIZE,
            "max_efficient_size": Resource.MAX_EFFICIENT_SIZE,
            "window_initial": Resource.WINDOW,
            "window_max_slow": Resource.WINDOW_MAX_SLOW,
            "window_max_fast": Resource.WINDOW_MAX_FAST,
            "link_mtu": RNS.Reticulum.MTU,
            "link_mdu": RNS.Link.MDU,
            "link_id": LINK_ID.hex(),
            "link_key": LINK_KEY.hex(),
        },
        "resources": resources,
    }
    text = json.dumps(doc, indent=2) + "\n"
    OUT.write_text(text)
    for name, summary in summaries:
        print(f"{name}: {json.dumps(summary)}")
    print(f"wrote {OUT} ({len(text)} bytes, sha256 {hashlib.sha256(text.encode()).hexdigest()})")


if __name__ == "__main__":
    from importlib.metadata import version
    assert version("rns") == RNS_VERSION, f"need rns=={RNS_VERSION}, found {version('rns')}"
    main()
