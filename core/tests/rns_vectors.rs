//! Ferry's Resource codecs and hashes against bytes produced by the real RNS 1.2.4
//! (`vectors/rns/resources.json`, made by `vectors/rns/generate.py`).

use std::path::PathBuf;

use ferry_core::resource::{
    Advertisement, HashmapUpdate, Proof, Request, SegmentHasher, map_hash, resource_hash,
    resource_proof,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn load() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors/rns/resources.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors/rns/resources.json"))
        .expect("JSON")
}

fn bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("hex string")).expect("hex")
}

fn array<const N: usize>(value: &Value) -> [u8; N] {
    bytes(value).try_into().expect("length")
}

/// Rebuilds a payload from its recipe, as `generate.py` defines them.
fn payload(spec: &Value) -> Vec<u8> {
    let length = spec["length"].as_u64().unwrap() as usize;
    let mut out = Vec::with_capacity(length);
    match spec["recipe"].as_str().unwrap() {
        "sha256-counter" => {
            let seed = bytes(&spec["params"]["seed_hex"]);
            let mut i = 0u32;
            while out.len() < length {
                let mut hasher = Sha256::new();
                hasher.update(&seed);
                hasher.update(i.to_be_bytes());
                out.extend_from_slice(&hasher.finalize());
                i += 1;
            }
        }
        "ascii-log-lines" => {
            let mut k = 0u64;
            while out.len() < length {
                out.extend(
                    format!(
                        "2026-11-22T04:00:{:02}Z INFO ferry: request {k} served in {} ms\n",
                        k % 60,
                        k % 97
                    )
                    .bytes(),
                );
                k += 1;
            }
        }
        other => panic!("unknown recipe {other}"),
    }
    out.truncate(length);
    assert_eq!(
        hex::encode(Sha256::digest(&out)),
        spec["sha256"].as_str().unwrap()
    );
    out
}

#[test]
fn advertisements_decode_to_the_rns_fields_and_encode_to_the_same_bytes() {
    let v = load();
    let max = v["constants"]["hashmap_max_len"].as_u64().unwrap() as usize;
    let mut checked = 0;
    for resource in v["resources"].as_array().unwrap() {
        for segment in resource["segments"].as_array().unwrap() {
            let wire = bytes(&segment["advertisement"]);
            let adv = Advertisement::decode(&wire, max).unwrap();
            let f = &segment["fields"];
            assert_eq!(adv.transfer_size, f["t"].as_u64().unwrap());
            assert_eq!(adv.data_size, f["d"].as_u64().unwrap());
            assert_eq!(adv.parts, f["n"].as_u64().unwrap());
            assert_eq!(adv.hash, array::<32>(&f["h"]));
            assert_eq!(adv.random_hash, array::<4>(&f["r"]));
            assert_eq!(adv.original_hash, array::<32>(&f["o"]));
            assert_eq!(adv.segment_index, f["i"].as_u64().unwrap());
            assert_eq!(adv.total_segments, f["l"].as_u64().unwrap());
            assert!(f["q"].is_null() && adv.request_id.is_none());
            assert_eq!(u64::from(adv.flags), f["f"].as_u64().unwrap());
            assert_eq!(adv.hashmap, bytes(&f["m"]).as_slice());
            assert_eq!(
                adv.is_compressed(),
                segment["compressed"].as_bool().unwrap()
            );

            let mut out = vec![0u8; adv.encoded_len()];
            assert_eq!(adv.encode(&mut out), Ok(wire.len()));
            assert_eq!(
                out, wire,
                "{}: re-encoded advertisement differs",
                resource["name"]
            );
            // A buffer one byte short is an error, not a panic.
            assert!(adv.encode(&mut out[..wire.len() - 1]).is_err());
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn requests_hashmap_updates_and_proofs_round_trip_byte_for_byte() {
    let v = load();
    let max = 1 << 16;
    let (mut requests, mut exhausted, mut updates) = (0, 0, 0);
    for resource in v["resources"].as_array().unwrap() {
        for segment in resource["segments"].as_array().unwrap() {
            let hash = array::<32>(&segment["resource_hash"]);
            let hashmap = bytes(&segment["hashmap"]);
            for wire in segment["requests"].as_array().unwrap().iter().map(bytes) {
                let request = Request::decode(&wire, max).unwrap();
                assert_eq!(request.resource_hash, hash);
                for wanted in request.map_hashes.chunks(4) {
                    assert!(
                        hashmap.chunks(4).any(|known| known == wanted),
                        "requested an unknown map hash"
                    );
                }
                if let Some(last) = request.exhausted {
                    assert!(hashmap.chunks(4).any(|known| known == last));
                    exhausted += 1;
                }
                let mut out = vec![0u8; request.encoded_len()];
                request.encode(&mut out).unwrap();
                assert_eq!(out, wire);
                requests += 1;
            }
            // The advertisement's hashmap plus the updates rebuild the full hashmap.
            let adv_wire = bytes(&segment["advertisement"]);
            let adv = Advertisement::decode(&adv_wire, max).unwrap();
            let per_message = v["constants"]["hashmap_max_len"].as_u64().unwrap() as usize * 4;
            let mut rebuilt = adv.hashmap.to_vec();
            for wire in segment["hashmap_updates"]
                .as_array()
                .unwrap()
                .iter()
                .map(bytes)
            {
                let update = HashmapUpdate::decode(&wire, max).unwrap();
                assert_eq!(update.resource_hash, hash);
                let at = update.segment as usize * per_message;
                assert_eq!(update.hashmap, &hashmap[at..at + update.hashmap.len()]);
                rebuilt.resize(rebuilt.len().max(at + update.hashmap.len()), 0);
                rebuilt[at..at + update.hashmap.len()].copy_from_slice(update.hashmap);
                let mut out = vec![0u8; update.encoded_len()];
                update.encode(&mut out).unwrap();
                assert_eq!(out, wire);
                updates += 1;
            }
            assert_eq!(rebuilt, hashmap);

            let proof_wire = bytes(&segment["proof"]);
            let proof = Proof::decode(&proof_wire).unwrap();
            assert_eq!(proof.resource_hash, hash);
            assert_eq!(proof.proof, array::<32>(&segment["expected_proof"]));
            assert_eq!(proof.to_bytes().to_vec(), proof_wire);
        }
    }
    assert!(
        requests >= 80 && exhausted >= 2 && updates >= 2,
        "{requests} {exhausted} {updates}"
    );
}

#[test]
fn map_hashes_resource_hashes_and_proofs_match_rns() {
    let v = load();
    let mut streams = 0;
    for resource in v["resources"].as_array().unwrap() {
        let data = payload(&resource["payload"]);
        for segment in resource["segments"].as_array().unwrap() {
            let range = segment["segment_data_range"].as_array().unwrap();
            let (start, end) = (
                range[0].as_u64().unwrap() as usize,
                range[1].as_u64().unwrap() as usize,
            );
            let segment_data = &data[start..end];
            let random = array::<4>(&segment["random_hash"]);
            let hash = array::<32>(&segment["resource_hash"]);
            let proof = array::<32>(&segment["expected_proof"]);
            assert_eq!(resource_hash(segment_data, &random), hash);
            assert_eq!(resource_proof(segment_data, &hash), proof);
            // One pass, split at an awkward place, gives both.
            let mut hasher = SegmentHasher::new();
            let cut = segment_data.len() / 3 + 1;
            hasher.update(&segment_data[..cut]);
            hasher.update(&segment_data[cut..]);
            assert_eq!(hasher.finish(&random), (hash, proof));

            // Map hashes over the parts as RNS cut them.
            if segment["stream"].is_null() {
                continue;
            }
            let stream = bytes(&segment["stream"]);
            let hashmap = bytes(&segment["hashmap"]);
            let mut at = 0;
            for (i, len) in segment["part_lengths"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                let len = len.as_u64().unwrap() as usize;
                assert_eq!(
                    map_hash(&stream[at..at + len], &random),
                    hashmap[4 * i..4 * i + 4],
                    "part {i}"
                );
                at += len;
            }
            assert_eq!(at, stream.len());
            streams += 1;
        }
    }
    assert_eq!(streams, 2);
}

#[test]
fn malformed_resource_messages_are_errors_naming_the_rule() {
    use ferry_core::resource::WireError;
    let v = load();
    let segment = &v["resources"][1]["segments"][0];
    let adv = bytes(&segment["advertisement"]);
    // Every truncation of a real advertisement fails cleanly.
    for len in 0..adv.len() {
        assert!(
            Advertisement::decode(&adv[..len], 1 << 16).is_err(),
            "prefix {len}"
        );
    }
    // The hashmap bound is enforced before anything is used.
    assert!(matches!(
        Advertisement::decode(&adv, 10),
        Err(WireError::TooManyMapHashes {
            count: 74,
            max: 10,
            ..
        })
    ));
    let request = bytes(&segment["requests"][0]);
    assert!(matches!(
        Request::decode(&[0x7f], 8),
        Err(WireError::Invalid { .. })
    ));
    assert!(Request::decode(&request[..request.len() - 1], 1 << 16).is_err());
    assert!(Proof::decode(&[0; 63]).is_err());
}
