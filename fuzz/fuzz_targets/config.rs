//! Settings files.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::config(data));
