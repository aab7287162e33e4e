//! Frames through the tc program's parser and key builder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::packet(data));
