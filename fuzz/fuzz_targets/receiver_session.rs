#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferry_core::fuzz::session_script(data, ferry_core::fuzz::Focus::Receiver);
});
