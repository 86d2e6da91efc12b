//! Inputs the `sim_faults` fuzz target found, each kept as a regression test named after
//! what it showed.

/// 10-minute run of 2026-11-30: a world whose fourth session has a bit flipped at byte
/// 226 (inside the manifest). The fuzz build's stand-in AEAD cannot see a flipped bit, so
/// the manifest arrived altered, a file's expected hash was wrong and the file failed
/// "although the source never changed". With the real AEAD the record fails to open and
/// the session ends (to be resumed): the world must finish with every file delivered.
#[test]
fn a_bit_flipped_in_the_manifest_ends_the_session_and_the_rerun_delivers() {
    let input = [
        0xa4, 0xaa, 0x72, 0xe0, 0x56, 0x28, 0xac, 0x6f, 0xe6, 0x8a, 0x73, 0x3d, 0x11, 0x61, 0xa1,
        0xde, 0x71, 0x10, 0xe9, 0x93, 0xae, 0x74, 0x22, 0x92, 0x3d,
    ];
    ferry_sim::fuzz_world(&input);
}
