//! GetFlows requests off the wire: filter compilation and matching.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowd::fuzzing::filter(data));
