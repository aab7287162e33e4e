//! rtnetlink notifications as the interface watcher receives them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::rtnetlink(data));
