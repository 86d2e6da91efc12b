#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_std::fuzz::lock_file(data);
});
