#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_sim::fuzz_world(data);
});
