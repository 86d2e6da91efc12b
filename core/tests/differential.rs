//! Differential checks of the Resource message codec: RNS's own advertisements and hashmap
//! updates (`vectors/rns/`), and thousands of mutations of them, decoded both by the
//! codec and by a small msgpack reader written here from the msgpack spec, sharing no code
//! with the codec (nor with `rmp`). Whenever the codec accepts a message, the reference
//! reads the same fields from it; whenever the reference reads a well-formed message, the
//! codec accepts it.

use std::collections::BTreeMap;

use ferry_core::resource::wire::{Advertisement, HashmapUpdate};
use ferry_core::{Entropy, SeededEntropy};

/// A msgpack value, as the spec defines them (the kinds a Resource message uses).
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Nil,
    Bool(bool),
    Int(i128),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

/// Reads one value from the front of `bytes`; `None` if it is not well-formed msgpack.
fn read(bytes: &mut &[u8], depth: u32) -> Option<Value> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Some(head)
    }
    fn be(bytes: &mut &[u8], n: usize) -> Option<u64> {
        Some(
            take(bytes, n)?
                .iter()
                .fold(0u64, |v, &b| (v << 8) | u64::from(b)),
        )
    }
    if depth > 8 {
        return None;
    }
    let marker = take(bytes, 1)?[0];
    let items = |bytes: &mut &[u8], n: u64| -> Option<Vec<Value>> {
        (0..n).map(|_| read(bytes, depth + 1)).collect()
    };
    let pairs = |bytes: &mut &[u8], n: u64| -> Option<Vec<(Value, Value)>> {
        (0..n)
            .map(|_| Some((read(bytes, depth + 1)?, read(bytes, depth + 1)?)))
            .collect()
    };
    let text = |bytes: &mut &[u8], n: u64| -> Option<Value> {
        Some(Value::Str(
            String::from_utf8(take(bytes, n as usize)?.to_vec()).ok()?,
        ))
    };
    let bin = |bytes: &mut &[u8], n: u64| Some(Value::Bin(take(bytes, n as usize)?.to_vec()));
    Some(match marker {
        0x00..=0x7f => Value::Int(i128::from(marker)),
        0x80..=0x8f => Value::Map(pairs(bytes, u64::from(marker & 0x0f))?),
        0x90..=0x9f => Value::Array(items(bytes, u64::from(marker & 0x0f))?),
        0xa0..=0xbf => text(bytes, u64::from(marker & 0x1f))?,
        0xc0 => Value::Nil,
        0xc2 => Value::Bool(false),
        0xc3 => Value::Bool(true),
        0xc4 => {
            let n = be(bytes, 1)?;
            bin(bytes, n)?
        }
        0xc5 => {
            let n = be(bytes, 2)?;
            bin(bytes, n)?
        }
        0xc6 => {
            let n = be(bytes, 4)?;
            bin(bytes, n)?
        }
        0xcc => Value::Int(i128::from(be(bytes, 1)?)),
        0xcd => Value::Int(i128::from(be(bytes, 2)?)),
        0xce => Value::Int(i128::from(be(bytes, 4)?)),
        0xcf => Value::Int(i128::from(be(bytes, 8)?)),
        0xd0 => Value::Int(i128::from(be(bytes, 1)? as u8 as i8)),
        0xd1 => Value::Int(i128::from(be(bytes, 2)? as u16 as i16)),
        0xd2 => Value::Int(i128::from(be(bytes, 4)? as u32 as i32)),
        0xd3 => Value::Int(i128::from(be(bytes, 8)? as i64)),
        0xd9 => {
            let n = be(bytes, 1)?;
            text(bytes, n)?
        }
        0xda => {
            let n = be(bytes, 2)?;
            text(bytes, n)?
        }
        0xdb => {
            let n = be(bytes, 4)?;
            text(bytes, n)?
        }
        0xdc => {
            let n = be(bytes, 2)?;
            Value::Array(items(bytes, n)?)
        }
        0xdd => {
            let n = be(bytes, 4)?;
            Value::Array(items(bytes, n)?)
        }
        0xde => {
            let n = be(bytes, 2)?;
            Value::Map(pairs(bytes, n)?)
        }
        0xdf => {
            let n = be(bytes, 4)?;
            Value::Map(pairs(bytes, n)?)
        }
        0xe0..=0xff => Value::Int(i128::from(marker as i8)),
        _ => return None,
    })
}

/// The whole of `bytes` as one value.
fn whole(mut bytes: &[u8]) -> Option<Value> {
    let value = read(&mut bytes, 0)?;
    bytes.is_empty().then_some(value)
}

/// An advertisement as the reference reads it: its keys and values, if it is a map with
/// string keys, none twice.
fn reference_adv(bytes: &[u8]) -> Option<BTreeMap<String, Value>> {
    let Value::Map(pairs) = whole(bytes)? else {
        return None;
    };
    let mut fields = BTreeMap::new();
    for (key, value) in pairs {
        let Value::Str(key) = key else { return None };
        if fields.insert(key, value).is_some() {
            return None;
        }
    }
    Some(fields)
}

fn int(value: Option<&Value>) -> Option<i128> {
    match value? {
        Value::Int(v) => Some(*v),
        _ => None,
    }
}

fn bin(value: Option<&Value>) -> Option<Vec<u8>> {
    match value? {
        Value::Bin(v) => Some(v.clone()),
        _ => None,
    }
}

/// True if the reference finds every field of an advertisement with the type and range
/// the protocol gives it (what a codec must accept).
fn well_formed(fields: &BTreeMap<String, Value>) -> bool {
    let uint =
        |k: &str| int(fields.get(k)).is_some_and(|v| (0..=i128::from(u64::MAX)).contains(&v));
    let sized = |k: &str, n: usize| bin(fields.get(k)).is_some_and(|v| v.len() == n);
    fields.len() == 11
        && ["t", "d", "n", "i", "l"].iter().all(|k| uint(k))
        && int(fields.get("f")).is_some_and(|v| (0..=255).contains(&v))
        && sized("h", 32)
        && sized("o", 32)
        && sized("r", 4)
        && matches!(fields.get("q"), Some(Value::Nil | Value::Bin(_)))
        && bin(fields.get("m")).is_some_and(|m| m.len() % 4 == 0 && m.len() / 4 <= 74)
}

fn rns_vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vectors/rns/resources.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn mutations(seed: &[u8], entropy: &mut SeededEntropy, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|case| {
            let mut input = seed.to_vec();
            let mut b = [0u8; 8];
            entropy.fill(&mut b);
            let edits = 1 + usize::from(b[0] % 3);
            for k in 0..edits {
                let at =
                    usize::from(u16::from_le_bytes([b[1 + 2 * k], b[2 + 2 * k]])) % input.len();
                input[at] ^= b[7] | 1;
            }
            if case % 5 == 0 {
                input.truncate(1 + usize::from(b[6]) % input.len());
            }
            input
        })
        .collect()
}

#[test]
fn the_advertisement_codec_agrees_with_a_reference_reader() {
    let vectors = rns_vectors();
    let mut entropy = SeededEntropy::new(0xD1FF);
    let (mut accepted, mut compared) = (0, 0);
    for resource in vectors["resources"].as_array().unwrap() {
        for segment in resource["segments"].as_array().unwrap() {
            let seed = hex::decode(segment["advertisement"].as_str().unwrap()).unwrap();
            let mut inputs = mutations(&seed, &mut entropy, 2000);
            inputs.push(seed);
            for input in inputs {
                let ours = Advertisement::decode(&input, 74);
                let theirs = reference_adv(&input);
                compared += 1;
                if let Ok(adv) = ours {
                    accepted += 1;
                    let fields = theirs.unwrap_or_else(|| {
                        panic!("the codec accepted what is not msgpack: {input:02x?}")
                    });
                    let u = |k: &str| int(fields.get(k)).map(|v| v as u64);
                    assert_eq!(u("t"), Some(adv.transfer_size), "{input:02x?}");
                    assert_eq!(u("d"), Some(adv.data_size));
                    assert_eq!(u("n"), Some(adv.parts));
                    assert_eq!(u("i"), Some(adv.segment_index));
                    assert_eq!(u("l"), Some(adv.total_segments));
                    assert_eq!(u("f"), Some(u64::from(adv.flags)));
                    assert_eq!(bin(fields.get("h")).as_deref(), Some(&adv.hash[..]));
                    assert_eq!(
                        bin(fields.get("o")).as_deref(),
                        Some(&adv.original_hash[..])
                    );
                    assert_eq!(bin(fields.get("r")).as_deref(), Some(&adv.random_hash[..]));
                    assert_eq!(bin(fields.get("m")).as_deref(), Some(adv.hashmap));
                    match (fields.get("q"), adv.request_id) {
                        (Some(Value::Nil), None) => {}
                        (Some(Value::Bin(id)), Some(ours)) => assert_eq!(id.as_slice(), ours),
                        other => panic!("q differs: {other:?}"),
                    }
                } else if let Some(fields) = theirs {
                    assert!(
                        !well_formed(&fields),
                        "the codec refused a well-formed advertisement: {input:02x?}: {ours:?}"
                    );
                }
            }
        }
    }
    eprintln!("{compared} advertisements compared, {accepted} accepted by the codec");
    assert!(accepted > 10, "the mutations should leave some intact");
}

#[test]
fn the_hashmap_update_codec_agrees_with_a_reference_reader() {
    let vectors = rns_vectors();
    let mut entropy = SeededEntropy::new(0xD1F0);
    let mut accepted = 0;
    for resource in vectors["resources"].as_array().unwrap() {
        for segment in resource["segments"].as_array().unwrap() {
            for update in segment["hashmap_updates"].as_array().into_iter().flatten() {
                let Some(text) = update.as_str().or_else(|| update["bytes"].as_str()) else {
                    continue;
                };
                let seed = hex::decode(text).unwrap();
                let mut inputs = mutations(&seed, &mut entropy, 500);
                inputs.push(seed);
                for input in inputs {
                    let Ok(ours) = HashmapUpdate::decode(&input, 1 << 16) else {
                        continue;
                    };
                    accepted += 1;
                    let Some(Value::Array(items)) = whole(&input[32..]) else {
                        panic!("the codec accepted what is not msgpack: {input:02x?}");
                    };
                    assert_eq!(&input[..32], &ours.resource_hash[..]);
                    assert_eq!(items.len(), 2, "{input:02x?}");
                    assert_eq!(int(items.first()).map(|v| v as u64), Some(ours.segment));
                    assert_eq!(bin(items.get(1)).as_deref(), Some(ours.hashmap));
                }
            }
        }
    }
    assert!(accepted > 0, "no hashmap update in the vectors decoded");
}
