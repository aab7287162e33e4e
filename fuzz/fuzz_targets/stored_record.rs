//! Records read back from the history, printed as dump and export do.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::stored_record(data));
